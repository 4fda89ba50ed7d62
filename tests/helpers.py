"""Helpers for tests that drive real daemons: projects, commands, waits, raw frames.

Imported by test modules (``from helpers import ...``); the fixtures that use
them live in conftest.py. Every daemon a test starts lives in its own
private runtime directory (``PYTEST_FASTCOLLECT_RUNTIME_DIR``), and cleanup
stops it (and, if it does not answer, kills the verified pid).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

BIN = Path(sys.executable).parent
PYTEST = str(BIN / "pytest") if (BIN / "pytest").exists() else None
THIN = str(BIN / "pytest-fastcollect")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def command_pytest() -> list[str]:
    return [PYTEST] if PYTEST else [sys.executable, "-m", "pytest"]


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\n[exit {self.returncode}]\n{self.stdout}\n--- stderr ---\n{self.stderr}"


@dataclass
class Project:
    """A throw-away project directory plus a private runtime directory for its daemon."""

    root: Path
    runtime: Path
    env: dict[str, str] = field(default_factory=dict)
    started_pids: list[int] = field(default_factory=list)
    # Another environment (a virtualenv a test made): the pytest command to use.
    pytest_command: list[str] | None = None

    def write(self, files: Mapping[str, str]) -> None:
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))

    def pytest(
        self,
        *args: str,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> Result:
        cmd = self.pytest_command or command_pytest()
        return self.command([*cmd, *args], timeout=timeout, env=env, cwd=cwd, stdin=stdin)

    def command(
        self,
        cmd: list[str],
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> Result:
        """Run ``cmd`` in the project with its environment (plus ``env``)."""
        proc = subprocess.run(
            cmd,
            cwd=cwd or self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=stdin,
        )
        return Result(cmd, proc.returncode, proc.stdout, proc.stderr)

    def cold(self, *args: str, **kw: object) -> Result:
        return self.pytest("--no-daemon", *args, **kw)  # type: ignore[arg-type]

    def thin(self, *args: str, timeout: float = 120) -> Result:
        return self.command([THIN, "run", *args], timeout=timeout)

    def start(self, *args: str, timeout: float = 180) -> Result:
        result = self.pytest("--daemon-start", *args, timeout=timeout)
        record = self.record()
        if record is not None:
            self.started_pids.append(record["pid"])
        return result

    def stop(self) -> Result:
        return self.pytest("--daemon-stop", timeout=60)

    def record(self) -> dict[str, object] | None:
        files = list(self.runtime.glob("*.json"))
        if not files:
            return None
        data: dict[str, object] = json.loads(files[0].read_text())
        return data

    def status(self) -> dict[str, object]:
        result = self.pytest("--daemon-status", "--daemon-json")
        assert result.returncode == 0, str(result)
        data: dict[str, object] = json.loads(result.stdout)
        return data

    def cleanup(self) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            pass
        record = self.record()
        pids = set(self.started_pids)
        if record is not None:
            pids.add(int(record["pid"]))  # type: ignore[call-overload]
        for pid in pids:
            kill_if_ours(pid)


def kill_if_ours(pid: int) -> None:
    """Kill a daemon pid left behind, only if it still is one of ours."""
    try:
        proc = psutil.Process(pid)
        if "pytest_fastcollect.supervisor" not in " ".join(proc.cmdline()):
            return
        for child in proc.children(recursive=True):
            child.kill()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    except psutil.Error:
        pass


def make_project(tmp: Path) -> Project:
    runtime = Path(tempfile.mkdtemp(prefix="fc-rt-", dir="/tmp"))
    os.chmod(runtime, 0o700)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "COV_", "COVERAGE_")) and k not in ("PYTHONWARNINGS",)
    }
    env.update(
        {
            "PYTEST_FASTCOLLECT_RUNTIME_DIR": str(runtime),
            "PYTEST_ADDOPTS": "-p no:randomly",
            "COLUMNS": "120",
        }
    )
    # The daemon's standby mode (auto, off, always), to run the suite through each.
    if STANDBY_ENV in os.environ:
        env[STANDBY_ENV] = os.environ[STANDBY_ENV]
    return Project(root=tmp, runtime=runtime, env=env)


STANDBY_ENV = "PYTEST_FASTCOLLECT_STANDBY"


def standby_mode() -> str:
    """The standby mode daemons started by these tests run with."""
    from pytest_fastcollect.settings import standby_mode as mode

    return mode()


def _stderr_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/2")
    except OSError:
        return None


@contextlib.contextmanager
def serving(proj: Project, *paths: str) -> Iterator[Project]:
    """``proj`` with a daemon started on ``paths``, stopped (and its files gone) after."""
    try:
        started = proj.start(*paths)
        assert started.returncode == 0, str(started)
        yield proj
    finally:
        proj.cleanup()


def run_workers(warm_pid: int) -> list[psutil.Process]:
    """The warm process's children but its standby worker (``standby_workers``) and a
    pyc writer (warm/pyc_writer.py: it ends on its own, within milliseconds)."""
    standby = {c.pid for c in standby_workers(warm_pid)}
    return [
        c
        for c in psutil.Process(warm_pid).children()
        if c.pid not in standby and not _title(c).startswith("pytest-fastcollect pyc writer ")
    ]


def standby_workers(warm_pid: int) -> list[psutil.Process]:
    """The warm process's standby: one preparing ``get_config`` keeps its stderr, one
    prepared for the last run's command (standby_run.py) says so in its title."""
    warm_err = _stderr_of(warm_pid)
    return [
        c
        for c in psutil.Process(warm_pid).children()
        if _stderr_of(c.pid) == warm_err or _title(c).startswith("pytest-fastcollect standby ")
    ]


def _title(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def daemon_metrics(proj: Project) -> dict[str, int]:
    """The daemon's request counters (runs, standby_runs, fresh_runs, collect_cache_hits...)."""
    status = daemon_status(proj)
    metrics = status["metrics"]
    assert isinstance(metrics, dict)
    return {k: v for k, v in metrics.items() if isinstance(v, int)}


# --- the equivalence fixture project (tests/data/equiv_project) ---------------------------

EQUIV_PROJECT = Path(__file__).resolve().parent / "data" / "equiv_project"


def equiv_copy(dest: Path) -> Project:
    """A fresh copy of tests/data/equiv_project at ``dest``, with its own runtime dir."""
    shutil.copytree(
        EQUIV_PROJECT, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc")
    )
    return make_project(dest)


def daemon_runs(proj: Project) -> int:
    """How many run requests the project's daemon has received (read in-process: fast)."""
    from pytest_fastcollect.daemon_client import DaemonClient

    record = proj.record()
    assert record is not None, "no daemon record"
    status = DaemonClient(str(record["socket_path"])).get_status()
    return int(status["metrics"]["runs"])


def daemon_status(proj: Project) -> dict[str, object]:
    from pytest_fastcollect.daemon_client import DaemonClient

    record = proj.record()
    assert record is not None, "no daemon record"
    status: dict[str, object] = DaemonClient(str(record["socket_path"])).get_status()
    return status


def make_venv(where: Path) -> str:
    """A virtualenv at ``where`` that sees this environment's packages; its python.

    No pip of its own (fast, offline): a ``.pth`` line adds this environment's
    site-packages as a site directory (so its ``.pth`` files run too), and
    ``PYTHON -m pip`` is this environment's pip installing into the new one.
    Its ``bin/pytest`` is the script pip would have written.
    """
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = str(where / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(purelib, "_parent_environment.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n"
    )
    script = where / "bin" / "pytest"
    script.write_text(
        f"#!{python}\nimport sys\nfrom pytest import console_main\n\n"
        "if __name__ == '__main__':\n    sys.exit(console_main())\n"
    )
    script.chmod(0o755)
    return python


def pip_install_editable(python: str, project: Path, mode: str | None = None) -> None:
    """``pip install -e project`` offline (setuptools from this environment)."""
    cmd = [python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "--no-index"]
    cmd += ["-e", str(project)]
    if mode is not None:
        cmd += ["--config-settings", f"editable_mode={mode}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip install -e failed:\n{proc.stdout}\n{proc.stderr}"


T = TypeVar("T")
DEFAULT_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 15.0,
    what: str = "a condition",
    interval: float = 0.02,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} (last value: {value!r})"
            )
        time.sleep(interval)


def files_of(project: Project) -> Any:
    """The project's ProjectFiles (socket, lock, state, log) in its private runtime dir."""
    from pytest_fastcollect.paths import project_files

    return project_files(project.root, project.runtime)


def record_of(project: Project) -> dict[str, Any] | None:
    """This project's daemon record (by key, so several projects can share a runtime dir)."""
    try:
        data: dict[str, Any] = json.loads(files_of(project).state.read_text())
    except FileNotFoundError:
        return None
    return data


def log_text(project: Project) -> str:
    path = files_of(project).log
    return path.read_text() if path.exists() else ""


def wait_for_log(project: Project, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    """Wait until the project's daemon log has a line matching ``pattern`` (a regex)."""
    try:
        return wait_until(
            lambda: re.search(pattern, log_text(project), re.MULTILINE),
            timeout,
            f"log line /{pattern}/ in {files_of(project).log}",
        )
    except AssertionError as exc:
        tail = "\n".join(log_text(project).splitlines()[-40:])
        raise AssertionError(f"{exc}\n----- daemon log (tail) -----\n{tail}") from None


def our_processes(root: Path) -> list[psutil.Process]:
    """Live supervisor and warm processes started for ``root`` (any runtime dir)."""
    layer = f"pytest-fastcollect warm process for {root}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status", "ppid"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if (
            "pytest_fastcollect.supervisor" in cmd or "pytest_fastcollect.warm.zygote" in cmd
        ) and str(root) in cmd:
            found.append(proc)
        elif cmd[:1] == [layer] and not _is_layer(proc.info["ppid"], layer):
            # A project layer shows its title in place of its command line (a
            # standby or run forked from it shows the same, under the layer).
            found.append(proc)
    return found


def _is_layer(pid: int, layer: str) -> bool:
    try:
        return psutil.Process(pid).cmdline()[:1] == [layer]
    except psutil.Error:
        return False


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


class RawConnection:
    """A hand-driven client connection, for sending what DaemonClient never would."""

    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(os.fspath(socket_path))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self) -> Any:
        """The next response frame, validated by the protocol models; None if the daemon closed."""
        from pytest_fastcollect.wire import protocol as p

        header = self._exact(4)
        if header is None:
            return None
        (size,) = struct.unpack(">I", header)
        body = self._exact(size)
        assert body is not None, "the daemon closed the connection mid-frame"
        return p.response_adapter().validate_json(body)

    def _exact(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                assert not data, f"connection closed after {len(data)} of {n} bytes"
                return None
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_exchange(socket_path: str | os.PathLike[str], data: bytes, timeout: float = 10.0) -> Any:
    with RawConnection(socket_path, timeout) as conn:
        conn.send(data)
        return conn.read_response()


# --- a command in a pseudo-terminal (tests/test_interactive.py, tests/test_watch.py) -----

# Makes the pty the controlling terminal of the new session, then becomes the command.
# SIGINT back to its default first: a shell's background job (``cmd &``)
# inherits it ignored, and Python then never installs its Ctrl-C handler.
CTTY_EXEC = (
    "import fcntl, os, signal, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class PtyRun:
    """A command whose stdin, stdout and stderr are one pty, read with deadlines."""

    def __init__(self, cmd: list[str], cwd: str, env: Mapping[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CTTY_EXEC, *cmd],
            cwd=cwd,
            env=dict(env),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""
        self.closed = False

    def _read(self, timeout: float) -> None:
        if self.closed:
            return
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every slave end is closed
                chunk = b""
            if chunk:
                self.output += chunk
            else:
                self.closed = True

    def expect(self, needle: bytes, timeout: float = 30, start: int = 0) -> int:
        """Wait until ``needle`` shows up after offset ``start``; return the offset after it."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.output.find(needle, start)
            if at >= 0:
                return at + len(needle)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.closed and self.proc.poll() is not None):
                raise AssertionError(
                    f"{needle!r} not seen within {timeout}s; output so far:\n{self.text()}"
                )
            self._read(min(remaining, 0.5))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 60) -> int:
        """Wait for exit, draining output (a full pty would block the writer)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None or not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self.proc.poll() is None:
                    raise AssertionError(
                        f"still running after {timeout}s; output so far:\n{self.text()}"
                    )
                break  # exited, but something (a stray grandchild) holds the pty open
            self._read(min(remaining, 0.2))
        return int(self.proc.returncode)

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
