"""The ``--daemon-*`` verbs: one function each, returning an exit code.

Runs in the client, before any conftest is imported. Expected failures are
typed errors printed as one line that names the next step.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_fastcollect import fingerprint, settings
from pytest_fastcollect.client import ui
from pytest_fastcollect.client.connect import (
    DaemonClient,
    lock_is_free,
    read_record,
    remove_stale_files,
)
from pytest_fastcollect.errors import (
    DaemonConnectionError,
    DaemonError,
    Exit,
    FastCollectError,
    NoDaemon,
    UsageError,
)
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
STOP_TIMEOUT = 10.0


class _LostStartRace(DaemonError):
    """Our supervisor found the lock taken: a concurrent start got there first."""


def run_verb(function: Callable[[pytest.Config], int], config: pytest.Config) -> int:
    """Run one verb's function; expected failures become one line and an exit code."""
    try:
        return int(function(config))
    except FastCollectError as exc:
        sys.stderr.write(f"pytest-fastcollect: error: {exc.message}\n")
        return int(exc.exit_code)


def _files(config: pytest.Config, create: bool = False) -> ProjectFiles:
    directory = ensure_runtime_dir() if create else None
    return project_files(config.rootpath, directory)


def _client(files: ProjectFiles) -> DaemonClient:
    return DaemonClient(files.socket)


def _no_daemon(files: ProjectFiles) -> NoDaemon:
    removed = remove_stale_files(files) if lock_is_free(files) else []
    extra = " (removed its stale files)" if removed else ""
    return NoDaemon(
        f"no daemon running for {files.root}{extra}; start one with: pytest --daemon-start"
    )


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


def check_paths(config: pytest.Config) -> None:
    root = Path(config.rootpath).resolve()
    base = Path(config.invocation_params.dir)
    for arg in getattr(config.known_args_namespace, "file_or_dir", None) or []:
        raw = str(arg).split("::", 1)[0]
        path = (base / raw).resolve()
        if not path.exists():
            raise UsageError(f"{raw} does not exist; give --daemon-start the test paths to warm up")
        if path != root and root not in path.parents:
            raise UsageError(f"{raw} is outside the project root {root}")


def spawn_supervisor(
    config: pytest.Config, warm_args: list[str], wait: bool, sys_path: list[str] | None = None
) -> p.StartReady | None:
    """Start the daemon detached (double fork, new session, stdio on /dev/null).

    ``sys_path``: the client's sys.path from before conftests and test modules
    changed it, when called later than ``pytest_load_initial_conftests``.
    """
    try:
        resolved = settings.from_config(config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    files = _files(config, create=True)
    if sys_path is None:
        sys_path = fingerprint.base_sys_path(fingerprint.ini_pythonpath(config))
    cmd = [
        sys.executable,
        "-m",
        "pytest_fastcollect.supervisor",
        "--root",
        str(files.root),
        "--cwd",
        str(config.invocation_params.dir),
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
                        raise _LostStartRace(event.message)
                    raise DaemonError(f"the daemon did not start: {event.message}")
    finally:
        if tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
    raise DaemonError(
        f"the daemon exited during start-up{' after ' + buffer.decode()[:200] if buffer else ''}; "
        "see its log in the runtime directory"
    )


def start(config: pytest.Config) -> int:
    check_paths(config)
    files = _files(config, create=True)
    if not lock_is_free(files):
        return _already_running(files)
    # Stale files are left to the supervisor, which replaces them once it
    # holds the lock: removing them here could delete the files of a daemon
    # that a concurrent start has just brought up.
    try:
        ready = spawn_supervisor(config, warm_args_from(config), wait=True)
    except _LostStartRace:
        return _already_running(files)
    assert ready is not None
    sys.stdout.write(ui.render_started(ready, str(files.root)))
    return int(Exit.OK)


def _already_running(files: ProjectFiles) -> int:
    record = read_record(files)
    pid = f" (pid {record.pid})" if record else ""
    sys.stdout.write(
        f"pytest-fastcollect: a daemon is already running for {files.root}{pid}; "
        "nothing started (pytest --daemon-restart replaces it)\n"
    )
    return int(Exit.OK)


def stop(config: pytest.Config) -> int:
    files = _files(config)
    return stop_files(files)


def stop_files(files: ProjectFiles) -> int:

    client = _client(files)
    try:
        pid = int(client.stop()["pid"])
    except DaemonConnectionError:
        pid = 0
    except DaemonError:
        pid = 0
    if pid:
        if not wait_gone(pid, STOP_TIMEOUT):
            _kill_verified(files, pid)
        sys.stdout.write(f"pytest-fastcollect: stopped the daemon (pid {pid}) for {files.root}\n")
        if lock_is_free(files):
            remove_stale_files(files)
        return int(Exit.OK)
    record = read_record(files)
    if record is not None and not lock_is_free(files) and _kill_verified(files, record.pid):
        remove_stale_files(files)
        sys.stdout.write(
            f"pytest-fastcollect: killed the unresponsive daemon (pid {record.pid}) "
            f"for {files.root}\n"
        )
        return int(Exit.OK)
    raise _no_daemon(files)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited. A zombie counts as exited: the daemon is
    not our child, and its reaper (often PID 1 in containers) may be slow."""
    import psutil

    deadline = time.monotonic() + timeout
    delay = 0.002
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return False


def _kill_verified(files: ProjectFiles, pid: int) -> bool:
    """Signal ``pid`` only if it is this project's daemon (create time and command line)."""
    import psutil

    record = read_record(files)
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        ours = (
            "pytest_fastcollect.supervisor" in cmdline
            and str(files.root) in cmdline
            and (
                record is None
                or record.pid != pid
                or abs(proc.create_time() - record.create_time) < 1.0
            )
        )
        if not ours:
            sys.stderr.write(
                f"pytest-fastcollect: pid {pid} is not this project's daemon; not signalling it\n"
            )
            return False
        proc.terminate()
        try:
            proc.wait(5)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    except psutil.NoSuchProcess:
        pass
    return True


def status(config: pytest.Config) -> int:
    files = _files(config)
    try:
        data = _client(files).get_status()
    except DaemonConnectionError:
        raise _no_daemon(files) from None
    if config.known_args_namespace.daemon_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(ui.render_status(p.StatusResponse.model_validate(data)))
    return int(Exit.OK)


def health(config: pytest.Config) -> int:
    files = _files(config)
    try:
        data = _client(files).get_health()
    except DaemonConnectionError:
        raise _no_daemon(files) from None
    if config.known_args_namespace.daemon_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(ui.render_health(p.HealthResponse.model_validate(data)))
    return (
        int(Exit.OK) if data["status"] == p.HealthVerdict.HEALTHY.value else int(Exit.NOT_HEALTHY)
    )


def restart(config: pytest.Config) -> int:
    files = _files(config)
    record = read_record(files)
    try:
        stop_files(files)
    except NoDaemon:
        pass
    check_paths(config)
    args = warm_args_from(config)
    positional = getattr(config.known_args_namespace, "file_or_dir", None) or []
    if not positional and record is not None:
        args = record.warm_args
    ready = spawn_supervisor(config, args, wait=True)
    assert ready is not None
    sys.stdout.write(ui.render_started(ready, str(files.root)))
    return int(Exit.OK)


def reload(config: pytest.Config) -> int:
    files = _files(config)
    started = time.perf_counter()
    try:
        data = _client(files).reload()
    except DaemonConnectionError:
        raise _no_daemon(files) from None
    sys.stdout.write(
        f"pytest-fastcollect: warm process replaced (generation {data['generation']}) "
        f"in {time.perf_counter() - started:.2f}s\n"
    )
    return int(Exit.OK)


def watch(config: pytest.Config) -> int:
    from pytest_fastcollect.client import watch_cli

    return watch_cli.from_config(config, clear=bool(config.known_args_namespace.daemon_clear))
