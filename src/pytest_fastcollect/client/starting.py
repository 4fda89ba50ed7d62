"""Starting a supervisor: its command line, the detached spawn, its start-up events.

Runs in the client (``--daemon-start``, ``--daemon-restart`` and
``daemon_autostart``). The supervisor inherits one pipe, over which it
reports warm-up progress and then ready or failed; the command follows it.
"""

from __future__ import annotations

import os
import sys

import pytest

from pytest_fastcollect import fingerprint, processes, settings
from pytest_fastcollect.errors import DaemonError, UsageError
from pytest_fastcollect.paths import ProjectFiles, ensure_runtime_dir, project_files
from pytest_fastcollect.wire import protocol as p

OUR_FLAGS = frozenset({"--daemon-start", "--daemon-restart", "--daemon-json", "--no-daemon"})
# Options that only steer a test run; warm-up collects everything regardless.
RUN_ONLY_FLAGS = frozenset(
    {
        "--lf",
        "--last-failed",
        "--ff",
        "--failed-first",
        "--nf",
        "--new-first",
        "--sw",
        "--stepwise",
        "--sw-skip",
        "--stepwise-skip",
        "--pdb",
        "-x",
        "--exitfirst",
        "--co",
        "--collect-only",
        "--cov-append",
        "--cov-branch",
        "--no-cov",
        "--no-cov-on-fail",
    }
)
# Options with a value that write a run's reports or measure it: the warm-up
# (a collect-only session) must not overwrite the user's report with an empty
# one, nor start coverage in the warm process that every run is forked from.
RUN_OUTPUT_OPTIONS = (
    "--junitxml",
    "--junit-xml",
    "--report-log",
    "--cov",
    "--cov-report",
    "--cov-config",
    "--cov-fail-under",
    "--cov-context",
    "--durations",
    "--durations-min",
)


class LostStartRace(DaemonError):
    """Our supervisor found the lock taken: a concurrent start got there first."""


def warm_args_from(config: pytest.Config) -> list[str]:
    out = []
    args = list(config.invocation_params.args)
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            if not arg.startswith("-"):
                continue
        if arg in OUR_FLAGS or arg in RUN_ONLY_FLAGS or arg.startswith("--daemon-"):
            continue
        if arg in RUN_OUTPUT_OPTIONS:
            skip_value = True  # its value is the next argument
            continue
        if arg.startswith(tuple(o + "=" for o in RUN_OUTPUT_OPTIONS)):
            continue
        out.append(arg)
    return out


def _files(config: pytest.Config) -> ProjectFiles:
    return project_files(config.rootpath, ensure_runtime_dir())


def spawn_supervisor(
    config: pytest.Config,
    warm_args: list[str],
    wait: bool,
    sys_path: list[str] | None = None,
    cwd: str | None = None,
) -> p.StartReady | None:
    """Start the daemon detached (double fork, new session, stdio on /dev/null).

    ``sys_path``: the client's sys.path from before conftests and test modules
    changed it, when called later than ``pytest_load_initial_conftests``.
    ``cwd``: where the warm-up runs, which relative ``warm_args`` are taken
    from (a restart passes the directory the previous start ran in).
    """
    try:
        resolved = settings.from_config(config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    files = _files(config)
    if sys_path is None:
        sys_path = fingerprint.interpreter_sys_path(fingerprint.ini_pythonpath(config))
    cmd = [
        sys.executable,
        "-m",
        processes.SUPERVISOR_MODULE,
        *processes.supervisor_args(str(files.root), str(files.directory)),
        "--cwd",
        cwd or str(config.invocation_params.dir),
        "--settings",
        resolved.to_json(),
    ]
    if sys_path:
        cmd += ["--sys-path0", sys_path[0]]
    read_fd, write_fd = os.pipe() if wait else (-1, -1)
    if wait:
        cmd += ["--progress-fd", str(write_fd)]
    cmd += ["--", *warm_args]
    _daemonize(cmd, cwd=str(files.directory), keep_fd=write_fd if wait else None)
    if not wait:
        return None
    os.close(write_fd)
    return _follow_start(read_fd)


def _daemonize(cmd: list[str], cwd: str, keep_fd: int | None) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.chdir(cwd)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            if keep_fd is not None:
                os.set_inheritable(keep_fd, True)
            os.closerange(3, keep_fd if keep_fd is not None else 3)
            if keep_fd is not None:
                os.closerange(keep_fd + 1, 65536)
            else:
                os.closerange(3, 65536)
            os.execv(sys.executable, cmd)
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def _follow_start(read_fd: int) -> p.StartReady:
    tty = sys.stderr.isatty()
    buffer = b""
    try:
        with os.fdopen(read_fd, "rb") as stream:
            for line in stream:
                buffer = line
                event = p.start_event_adapter().validate_json(line)
                if isinstance(event, p.StartProgress):
                    if tty:
                        sys.stderr.write(
                            f"\rpytest-fastcollect: warming up: {event.done}/{event.total} modules"
                        )
                        sys.stderr.flush()
                elif isinstance(event, p.StartReady):
                    return event
                elif isinstance(event, p.StartFailed):
                    if event.already_running:
                        raise LostStartRace(event.message)
                    raise DaemonError(f"the daemon did not start: {event.message}")
    finally:
        if tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
    raise DaemonError(
        f"the daemon exited during start-up{' after ' + buffer.decode()[:200] if buffer else ''}; "
        "see its log in the runtime directory"
    )
