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

from pytest_fastcollect import processes
from pytest_fastcollect.client import discovery, footprint, locate, starting, ui, verbs
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
from pytest_fastcollect.paths import (
    ProjectFiles,
    check_runtime_dir,
    ensure_runtime_dir,
    project_files,
)
from pytest_fastcollect.wire import protocol as p

STOP_TIMEOUT = 10.0


def run_verb(function: Callable[[pytest.Config], int], config: pytest.Config) -> int:
    """Run one verb's function; expected failures become one line and an exit code."""
    try:
        return int(function(config))
    except FastCollectError as exc:
        sys.stderr.write(f"pytest-fastcollect: error: {exc.message}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        # A start that is interrupted leaves a daemon that goes on warming up
        # (it is detached on purpose): say so, and how to stop it.
        starting = function.__name__ in ("start", "restart")
        hint = (
            "; the daemon goes on warming up in the background (pytest --daemon-stop stops it)"
            if starting
            else ""
        )
        sys.stderr.write(f"\npytest-fastcollect: interrupted{hint}\n")
        return int(Exit.INTERRUPTED)


def _files(config: pytest.Config, create: bool = False) -> ProjectFiles:
    directory = ensure_runtime_dir() if create else None
    return project_files(config.rootpath, directory)


def _client(files: ProjectFiles) -> DaemonClient:
    if not os.path.exists(files.socket):
        # A live daemon makes a removed socket again within a second.
        discovery.wait_for_socket(files)
    return DaemonClient(files.socket)


def _target(config: pytest.Config) -> ProjectFiles:
    """The daemon a verb acts on: the rootdir's, else the one started from here."""
    files = _files(config)
    if os.path.lexists(files.directory):
        # Its lock and records are read before any connection (which checks it too).
        check_runtime_dir(files.directory)
    chosen, found = locate.choose(files, str(config.invocation_params.dir))
    if found is not None:
        _note(
            f"no daemon serves {files.root}; acting on the one for {found.record.root} "
            f"(started from {found.record.cwd})"
        )
    return chosen


def _note(message: str) -> None:
    sys.stderr.write(f"pytest-fastcollect: {message}\n")
    sys.stderr.flush()


def _not_a_socket(files: ProjectFiles) -> str | None:
    path = files.socket
    if os.path.isdir(path) and not os.path.islink(path):
        return f"{path} is a directory, not a daemon's socket; remove it (rmdir {path})"
    return None


def _no_daemon(files: ProjectFiles) -> NoDaemon:
    removed = remove_stale_files(files) if lock_is_free(files) else []
    extra = " (removed its stale files)" if removed else ""
    blocked = _not_a_socket(files)
    if blocked is not None:
        return NoDaemon(f"no daemon running for {files.root}; {blocked}")
    return NoDaemon(
        f"no daemon running for {files.root}{extra}; start one with: pytest --daemon-start"
    )


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


def _warm_paths(config: pytest.Config) -> list[str]:
    base = str(config.invocation_params.dir)
    given = getattr(config.known_args_namespace, "file_or_dir", None) or []
    return [os.path.join(base, str(a).split("::", 1)[0]) for a in given] or [base]


def check_footprint(config: pytest.Config) -> None:
    """Refuse (unless confirmed) a rootdir with no ini file and far more files
    than the warm paths: the system temp directory, a home directory."""
    reason = footprint.oversized(
        str(config.rootpath), config.inipath is not None, _warm_paths(config)
    )
    if reason is None:
        return
    if getattr(config.known_args_namespace, "daemon_confirm", False):
        _note(f"warning: {reason}; starting anyway ({verbs.CONFIRM_FLAG})")
        return
    raise UsageError(
        f"{reason}; start it from the project's directory, give the project an ini file "
        f"(pytest.ini), or confirm with {verbs.CONFIRM_FLAG}"
    )


def start(config: pytest.Config) -> int:
    check_paths(config)
    files = _files(config, create=True)
    if not lock_is_free(files):
        return _already_running(files)
    blocked = _not_a_socket(files)
    if blocked is not None:
        raise DaemonError(blocked)
    check_footprint(config)
    # Stale files are left to the supervisor, which replaces them once it
    # holds the lock: removing them here could delete the files of a daemon
    # that a concurrent start has just brought up.
    try:
        ready = starting.spawn_supervisor(config, starting.warm_args_from(config), wait=True)
    except starting.LostStartRace:
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
    return stop_files(_target(config))


def stop_files(files: ProjectFiles) -> int:

    client = _client(files)
    try:
        answer = client.stop()
        pid = int(answer["pid"])
        if answer.get("runs"):
            sys.stdout.write(
                f"pytest-fastcollect: {answer['runs']} run(s) in progress may finish within "
                f"{answer['grace']:g}s (pytest --daemon-stop again stops them now)\n"
            )
            sys.stdout.flush()
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
    stopped = discovery.stop_orphans(files)
    if stopped:
        sys.stdout.write(
            f"pytest-fastcollect: stopped the daemon (pid {', '.join(map(str, stopped))}) for "
            f"{files.root}, which ran without its files\n"
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
        processes.terminate(proc)
    except psutil.NoSuchProcess:
        pass
    return True


def status(config: pytest.Config) -> int:
    files = _target(config)
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
    files = _target(config)
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
    """Stop, then start: with the given paths, else as the previous start did
    (its arguments, in the directory it ran in)."""
    positional = getattr(config.known_args_namespace, "file_or_dir", None) or []
    if positional:
        check_paths(config)
        files = _files(config)
        found = None
    else:
        files = _target(config)
        found = files != _files(config)
    record = read_record(files)
    try:
        stop_files(files)
    except NoDaemon:
        pass
    args, cwd = starting.warm_args_from(config), None
    if found and record is not None:
        # Another rootdir's daemon: start it again as it was started, where it was.
        return _start_again(record)
    if not positional and record is not None:
        args, cwd = record.warm_args, record.cwd or None
    else:
        check_footprint(config)
    ready = starting.spawn_supervisor(config, args, wait=True, cwd=cwd)
    assert ready is not None
    sys.stdout.write(ui.render_started(ready, str(files.root)))
    return int(Exit.OK)


def _start_again(record: p.DaemonRecord) -> int:
    """``pytest --daemon-start ARGS`` in the directory the record's start ran in:
    pytest finds that project's rootdir and ini file from there."""
    import subprocess

    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "__main__.py" or not os.path.isfile(argv0):
        command = [sys.executable, "-m", "pytest"]
    else:
        command = [sys.executable, argv0]  # the pytest script: its directory first on sys.path
    cmd = [*command, "--daemon-start", verbs.CONFIRM_FLAG, *record.warm_args]
    sys.stdout.flush()
    return subprocess.call(cmd, cwd=record.cwd or record.root)


def reload(config: pytest.Config) -> int:
    files = _target(config)
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
