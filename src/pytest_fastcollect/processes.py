"""Our processes by name: the titles ``ps`` shows, and finding a project's supervisor.

A leaf module (standard library at import; psutil only inside the functions
that need it, never on the run hand-off path). Every process of a daemon
says what it is and which project it serves, where ``ps aux | grep
pytest-fastcollect`` and ``pgrep -f pytest-fastcollect`` look: the command
line. The supervisor and the warm process carry it as an argument
(``--title``); a run worker, forked from the warm process, has its
inherited command line rewritten in place (Linux), without touching
``sys.argv`` or ``sys.executable``.

Discovery by process, not only by files: a supervisor whose files were
deleted is still found (its command line names its root and runtime
directory), so a start never puts a second daemon beside it and a stop can
still reach it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import psutil

SUPERVISOR_MODULE = "pytest_fastcollect.supervisor"
WARM_MODULE = "pytest_fastcollect.warm.zygote"


def title(role: str, root: str) -> str:
    """``pytest-fastcollect supervisor for /src/shop`` and the like."""
    return f"pytest-fastcollect {role} for {root}"


def supervisor_args(root: str, runtime_dir: str) -> list[str]:
    """The arguments after ``python -m pytest_fastcollect.supervisor`` that name it."""
    return ["--title", title("supervisor", root), "--root", root, "--runtime-dir", runtime_dir]


def supervisor_cmdline(root: str, runtime_dir: str) -> str:
    """What a running supervisor shows as its command line (``set_title``): its
    title first, so a narrow ``ps`` still shows it, then the arguments that
    ``is_supervisor_of`` and a stop look for, NUL-separated as the kernel
    separates arguments."""
    named = [title("supervisor", root), "-m", SUPERVISOR_MODULE]
    return "\0".join([*named, "--root", root, "--runtime-dir", runtime_dir])


def worker_title(
    warm_argv: list[str], argv0: str, args: list[str], role: str = "run worker"
) -> str:
    """A run worker's title (or a standby's prepared for a run); the warm process's
    command line names the project."""
    root = _value(warm_argv, "--root") or "?"
    return " ".join([title(role, root) + ":", argv0, *args])


def _value(cmdline: list[str], option: str) -> str | None:
    try:
        return cmdline[cmdline.index(option) + 1]
    except (ValueError, IndexError):
        return None


def is_supervisor_of(cmdline: list[str], root: str, runtime_dir: str | None = None) -> bool:
    """Whether ``cmdline`` is the supervisor of ``root`` (in ``runtime_dir``, if given)."""
    if SUPERVISOR_MODULE not in cmdline or _value(cmdline, "--root") != root:
        return False
    return runtime_dir is None or _value(cmdline, "--runtime-dir") == runtime_dir


def find_supervisors(root: str, runtime_dir: str) -> list[psutil.Process]:
    """Live supervisors of ``root`` in ``runtime_dir`` (this process excluded)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status", "uids"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            uids = proc.info["uids"]
            if uids is not None and uids.real != os.getuid():
                continue
            if is_supervisor_of(proc.info["cmdline"] or [], root, runtime_dir):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``procs`` still alive after ``timeout`` seconds (zombies count as gone)."""
    import psutil

    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if _alive(p)]


def terminate(proc: psutil.Process, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if ``proc`` is still there after ``timeout``; waits for it."""
    import psutil

    proc.terminate()
    try:
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def _alive(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def set_title(text: str) -> bool:
    """Show ``text`` as this process's command line (Linux); False if it cannot.

    Rewrites the argument area the kernel reports in /proc/PID/cmdline, in
    place and within its length: ``sys.argv`` and ``sys.executable`` are
    Python objects made at start-up and do not change. The area is checked
    to hold exactly the current command line before anything is written.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read()
        # Fields after the command name (which may hold spaces): arg_start and
        # arg_end are fields 48 and 49, the 46th and 47th after it.
        fields = stat[stat.rindex(b")") + 2 :].split()
        start, end = int(fields[45]), int(fields[46])
        with open("/proc/self/cmdline", "rb") as fh:
            current = fh.read()
        size = end - start
        if size <= 1 or ctypes.string_at(start, size) != current[:size]:
            return False
        raw = text.encode(errors="replace")[: size - 1]
        ctypes.memmove(start, raw + b"\0" * (size - len(raw)), size)
    except (OSError, ValueError, IndexError):
        return False
    return True
