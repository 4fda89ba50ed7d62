"""Security with real daemons: private files, peer uid check, lockf, pid-reuse safety, roots.

The tests that drop privileges (another uid, another owner) need root; they
are skipped otherwise. Every mode or owner a test changes is restored before
the fixture's teardown stops the daemon.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from pytest_fastcollect.daemon_client import DaemonClient, DaemonError
from pytest_fastcollect.wire import protocol as p

from helpers import (
    Project,
    files_of,
    frame,
    our_processes,
    pid_alive,
    record_of,
    wait_for_log,
    wait_until,
)

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")

ONE_TEST = {"tests/test_a.py": "def test_a():\n    assert True\n"}


def started(project: Project) -> dict[str, object]:
    project.write(ONE_TEST)
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    record = record_of(project)
    assert record is not None
    return record


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- private files ----------------------------------------------------------------------------


def test_files_are_private(project: Project) -> None:
    started(project)
    files = files_of(project)
    assert mode(project.runtime) == 0o700
    assert stat.S_ISSOCK(os.lstat(files.socket).st_mode)
    assert mode(files.socket) == 0o600
    assert mode(files.state) == 0o600
    assert mode(files.lock) == 0o600
    for path in (project.runtime, files.socket, files.state, files.lock, files.log):
        assert os.lstat(path).st_uid == os.getuid(), path
    assert len(os.fsencode(str(files.socket))) < 100


def test_runtime_dir_is_created_private(project: Project) -> None:
    project.runtime.rmdir()
    started(project)
    assert mode(project.runtime) == 0o700


@pytest.fixture
def restore_runtime(project: Project) -> Iterator[None]:
    yield
    os.chown(project.runtime, os.getuid(), os.getgid())
    os.chmod(project.runtime, 0o700)
    sock = files_of(project).socket
    if sock.exists():
        os.chmod(sock, 0o600)


def assert_one_line_error(result: object, *words: str) -> None:
    text = str(result)
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("pytest-fastcollect: error: "), text
    for word in words:
        assert word in lines[0], text


def test_runtime_dir_with_wrong_mode_is_refused(project: Project, restore_runtime: None) -> None:
    project.write(ONE_TEST)
    os.chmod(project.runtime, 0o755)
    result = project.start("tests")
    assert result.returncode == 8, str(result)
    assert_one_line_error(result, str(project.runtime), "mode 0755", "0700")
    assert list(project.runtime.iterdir()) == []
    assert our_processes(project.root) == []


@needs_root
def test_runtime_dir_with_wrong_owner_is_refused(project: Project, restore_runtime: None) -> None:
    project.write(ONE_TEST)
    os.chown(project.runtime, NOBODY, NOBODY)
    result = project.start("tests")
    assert result.returncode == 8, str(result)
    assert_one_line_error(result, str(project.runtime), f"owned by uid {NOBODY}")
    assert list(project.runtime.iterdir()) == []
    assert our_processes(project.root) == []


def test_runtime_dir_that_is_a_symlink_is_refused(project: Project, tmp_path: Path) -> None:
    project.write(ONE_TEST)
    link = tmp_path / "rt-link"
    link.symlink_to(project.runtime)
    result = project.pytest(
        "--daemon-start", "tests", env={"PYTEST_FASTCOLLECT_RUNTIME_DIR": str(link)}
    )
    assert result.returncode == 8, str(result)
    assert_one_line_error(result, "symlink")
    assert our_processes(project.root) == []


@pytest.mark.parametrize("change", ["mode", pytest.param("owner", marks=needs_root)])
def test_clients_do_not_use_a_socket_in_an_untrusted_dir(
    project: Project, restore_runtime: None, change: str
) -> None:
    """A runtime dir someone else could write to may hold an impostor's socket: never talk to it.

    A run hands the daemon the environment and the terminal, so the checks
    ``--daemon-start`` makes must hold for every client.
    """
    record = started(project)
    if change == "mode":
        os.chmod(project.runtime, 0o777)
    else:
        os.chown(project.runtime, NOBODY, NOBODY)
    for verb in ("--daemon-status", "--daemon-health", "--daemon-stop"):
        result = project.pytest(verb)
        assert result.returncode == 8, f"{verb} used a socket in an untrusted directory\n{result}"
        assert_one_line_error(result, str(project.runtime))
    run = project.pytest("-q", "tests")
    assert run.returncode == 0 and "1 passed" in run.stdout, str(run)
    assert "running without the daemon" in run.stderr, f"the run was handed to the socket\n{run}"
    # Restored, the same daemon answers again: it was never the daemon that was wrong.
    os.chown(project.runtime, os.getuid(), os.getgid())
    os.chmod(project.runtime, 0o700)
    assert project.status()["pid"] == record["pid"]
    assert project.status()["metrics"]["runs"] == 0  # type: ignore[index]


# --- another uid ------------------------------------------------------------------------------


def as_nobody(action: Callable[[], str]) -> str:
    """Run ``action`` in a forked child that dropped to uid/gid 65534; return what it reports."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            outcome = action()
        except BaseException as exc:
            outcome = f"exception {type(exc).__name__}: {exc}"
        try:
            os.write(w, outcome.encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as stream:
        chunks.append(stream.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()


def try_status(sock_path: str) -> Callable[[], str]:
    request = frame(p.dump(p.StatusRequest()))

    def action() -> str:
        assert os.getuid() == NOBODY
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(sock_path)
        except OSError as exc:
            return f"connect failed: {exc.__class__.__name__}"
        try:
            s.sendall(request)
        except OSError as exc:
            return f"closed while sending: {exc.__class__.__name__}"
        try:
            data = s.recv(65536)
        except OSError as exc:
            return f"closed: {exc.__class__.__name__}"
        return "closed without an answer" if not data else f"answered: {data[:200]!r}"

    return action


@needs_root
def test_another_uid_cannot_reach_the_socket_through_the_private_dir(project: Project) -> None:
    started(project)
    outcome = as_nobody(try_status(str(files_of(project).socket)))
    assert outcome == "connect failed: PermissionError", outcome
    assert project.status()["metrics"]["by_command"].get("refused") is None  # type: ignore[index,union-attr]


@needs_root
def test_connection_from_another_uid_is_refused_by_the_peer_check(
    project: Project, restore_runtime: None
) -> None:
    record = started(project)
    served_before = project.status()["metrics"]["by_command"].get("status", 0)  # type: ignore[index,union-attr]
    # Open the filesystem path on purpose so that only SO_PEERCRED stands in the way.
    os.chmod(project.runtime, 0o711)
    os.chmod(files_of(project).socket, 0o666)
    outcome = as_nobody(try_status(str(files_of(project).socket)))
    assert outcome.startswith(("closed", "closed while sending")), outcome
    assert "answered" not in outcome
    wait_for_log(project, rf"Refused connection from uid {NOBODY}")
    os.chmod(files_of(project).socket, 0o600)
    os.chmod(project.runtime, 0o700)
    status = project.status()
    assert status["pid"] == record["pid"], "the daemon must keep serving its own user"
    by_command = status["metrics"]["by_command"]  # type: ignore[index]
    assert by_command.get("refused") == 1, by_command  # type: ignore[union-attr]
    # Only our own status request since the first one was served, not the refused peer's.
    assert by_command["status"] == served_before + 1, by_command  # type: ignore[index, operator]


# --- single instance --------------------------------------------------------------------------


def test_lockf_keeps_a_second_supervisor_out(project: Project) -> None:
    record = started(project)
    files = files_of(project)
    r, w = os.pipe()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest_fastcollect.supervisor",
                "--root",
                str(project.root),
                "--cwd",
                str(project.root),
                "--progress-fd",
                str(w),
                "--",
                "tests",
            ],
            check=False,
            env=project.env,
            pass_fds=(w,),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=project.runtime,
        )
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as stream:
            r = -1
            events = [p.start_event_adapter().validate_json(line) for line in stream]
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    assert proc.returncode == 1, proc.stderr
    assert len(events) == 1 and isinstance(events[0], p.StartFailed), events
    assert "already running" in events[0].message
    assert record_of(project) == record
    assert project.status()["pid"] == record["pid"]
    assert files.socket.exists()


def lock_free(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_lock_is_held_by_the_supervisor_and_freed_when_it_dies(project: Project) -> None:
    record = started(project)
    lock = files_of(project).lock
    assert not lock_free(lock)
    os.kill(int(record["pid"]), signal.SIGKILL)
    # The kernel drops the lock once every thread of the killed process has exited.
    wait_until(lambda: lock_free(lock), what="the dead supervisor's lock to be released")
    wait_until(lambda: not pid_alive(int(record["warm_pid"])), what="the warm process to exit")
    again = project.start("tests")
    assert again.returncode == 0 and "daemon started" in again.stdout, str(again)


HOLD_AND_FORK = """
import os, sys, time
from pathlib import Path
from pytest_fastcollect.paths import project_files
from pytest_fastcollect.supervisor.runtime import Runtime

runtime = Runtime(project_files(sys.argv[1], Path(sys.argv[2])))
runtime.acquire()
child = os.fork()
if child == 0:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os._exit(0)  # dies holding the lock, as a killed daemon does
"""


def test_lock_is_not_kept_by_a_forked_child_of_a_dead_holder(project: Project) -> None:
    """The reason for lockf: a flock stayed held by a forked child after the daemon died."""
    proc = subprocess.run(
        [sys.executable, "-c", HOLD_AND_FORK, str(project.root), str(project.runtime)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=project.env,
    )
    assert proc.returncode == 0, proc.stderr
    child = int(proc.stdout)
    try:
        assert pid_alive(child)
        assert lock_free(files_of(project).lock), "the dead holder's forked child keeps the lock"
    finally:
        os.kill(child, signal.SIGKILL)


# --- pid-reuse safety -------------------------------------------------------------------------


@pytest.fixture
def held_lock(project: Project) -> Iterator[Path]:
    """Hold the project's lock from this test process, as a live daemon would."""
    lock = files_of(project).lock
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield lock
    finally:
        os.close(fd)
        files = files_of(project)
        for path in (files.state, files.lock):
            path.unlink(missing_ok=True)


def write_record(project: Project, pid: int, create_time: float) -> None:
    files = files_of(project)
    files.state.write_text(
        p.DaemonRecord(
            pid=pid,
            create_time=create_time,
            root=str(project.root),
            socket_path=str(files.socket),
            log_path=str(files.log),
            version="0.1.0",
        ).model_dump_json()
    )


@pytest.mark.parametrize("impostor", ["sleep", "lookalike"])
def test_stop_never_signals_a_pid_that_is_not_our_daemon(
    project: Project, held_lock: Path, impostor: str
) -> None:
    if impostor == "sleep":
        cmd = ["sleep", "60"]
    else:
        # Same command-line words as our daemon, but not the process the record describes.
        cmd = [
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
            "pytest_fastcollect.supervisor",
            str(project.root),
        ]
    proc = subprocess.Popen(cmd)
    try:
        created = psutil.Process(proc.pid).create_time()
        write_record(project, proc.pid, created if impostor == "sleep" else created - 1000)
        result = project.stop()
        assert proc.poll() is None, (
            f"--daemon-stop signalled pid {proc.pid}, which is not our daemon\n{result}"
        )
        assert result.returncode == 6, str(result)
        assert f"pid {proc.pid} is not this project's daemon; not signalling it" in result.stderr, (
            str(result)
        )
        assert "no daemon running" in result.stderr
        # The lock is held, so the files may belong to a live daemon: they stay.
        assert files_of(project).state.exists()
    finally:
        proc.kill()
        proc.wait(10)


# --- roots ------------------------------------------------------------------------------------


def test_collect_roots_outside_the_project_are_refused(project: Project, tmp_path: Path) -> None:
    started(project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "test_secret.py").write_text("def test_secret():\n    pass\n")
    (project.root / "escape").symlink_to(elsewhere)
    client = DaemonClient(files_of(project).socket)
    cases: list[tuple[str, dict[str, object] | None]] = [
        (str(elsewhere), None),
        (str(project.root / ".." / "elsewhere"), None),
        (str(project.root / "escape"), None),
        (str(project.root), {"paths": [str(elsewhere / "test_secret.py")]}),
        (str(project.root), {"paths": ["../elsewhere"]}),
        (str(project.root), {"paths": ["escape/test_secret.py::test_secret"]}),
    ]
    for root, filters in cases:
        with pytest.raises(DaemonError, match="outside_root") as info:
            client.collect(root, filters=filters)
        assert "outside the project root" in str(info.value)
    ok = client.collect(str(project.root), filters={"paths": ["tests"]})
    assert ok["node_ids"] == ["tests/test_a.py::test_a"]
    assert client.get_status()["metrics"]["collects"] == len(cases) + 1


def test_run_request_from_a_raw_socket_without_fds_is_refused(project: Project) -> None:
    started(project)
    from helpers import raw_exchange

    req = p.RunRequest(
        args=["-q"], cwd=str(project.root), env={}, umask=0o22, python=sys.executable, sys_path=[]
    )
    response = raw_exchange(files_of(project).socket, frame(p.dump(req)))
    assert isinstance(response, p.ErrorResponse), response
    assert response.code is p.ErrorCode.BAD_REQUEST
    assert "file descriptors" in response.message
    assert project.status()["state"] == "ready"
