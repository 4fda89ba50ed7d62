"""Connection limits that must not hurt legitimate users (issue 10.5, 11.8, 10.3).

Idle connections hold no run slot; status, health and stop need no slot at
all; a run past the limit is told ``busy`` within a short bounded wait and
runs cold with a notice; a burst of connects queues in the listen backlog;
a request id still in use is refused with a typed error.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_fastcollect.daemon_client import DaemonClient
from pytest_fastcollect.supervisor.server import IDLE_GRACE, SLOT_WAIT, max_readers
from pytest_fastcollect.wire import protocol as p

from helpers import (
    DEFAULT_INI,
    Project,
    RawConnection,
    command_pytest,
    files_of,
    frame,
    log_text,
    make_project,
    raw_exchange,
    wait_for_log,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)

FAST_TEST = "def test_fast():\n    pass\n"
BARRIER_TEST = """\
import os
import time


def test_waits_for_the_barrier():
    open("run-started", "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists("run-may-finish"):
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.01)
"""
SLOW_WARMUP_CONFTEST = """\
import os
import time

# A reload's warm-up waits here when the test asks for it.
if os.path.exists("warmup-wait"):
    deadline = time.monotonic() + 60
    while not os.path.exists("warmup-may-finish") and time.monotonic() < deadline:
        time.sleep(0.01)
"""


def _project(tmp_path: Path, ini: str = DEFAULT_INI) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    project = make_project(root)
    project.write(
        {
            "pytest.ini": ini,
            "conftest.py": SLOW_WARMUP_CONFTEST,
            "tests/test_fast.py": FAST_TEST,
            "tests/test_barrier.py": BARRIER_TEST,
        }
    )
    return project


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Project]:
    project = _project(tmp_path)
    try:
        result = project.start("tests")
        assert result.returncode == 0, str(result)
        yield project
    finally:
        project.cleanup()
        shutil.rmtree(project.runtime, ignore_errors=True)


def _status(project: Project) -> dict[str, object]:
    return DaemonClient(files_of(project).socket).get_status()


def test_idle_connections_hold_no_run_slot(daemon: Project) -> None:
    """Ten idle connections (the default run limit): runs, status and stop go on at once."""
    sock = files_of(daemon).socket
    idle = [RawConnection(sock) for _ in range(10)]
    try:
        wait_until(
            lambda: _status(daemon)["connections"]["reading"] >= 10,  # type: ignore[index]
            what="ten idle connections reading",
        )
        started = time.monotonic()
        status = _status(daemon)
        assert time.monotonic() - started < 2, "status waited behind idle connections"
        started = time.monotonic()
        result = daemon.pytest("-q", "tests/test_fast.py")
        took = time.monotonic() - started
        assert result.returncode == 0 and "1 passed" in result.stdout, str(result)
        assert "pytest-fastcollect:" not in result.stderr, str(result)
        assert took < 20, f"the run took {took:.1f}s with idle connections open"
        assert _status(daemon)["metrics"]["runs"] == status["metrics"]["runs"] + 1  # type: ignore[index]
        stopped = daemon.stop()
        assert stopped.returncode == 0 and "stopped the daemon" in stopped.stdout, str(stopped)
    finally:
        for conn in idle:
            conn.close()


def test_a_pile_of_idle_connections_cannot_lock_out_a_status(daemon: Project) -> None:
    sock = files_of(daemon).socket
    limit = max_readers(10)
    idle = [RawConnection(sock, timeout=30) for _ in range(limit - 1)]
    try:
        wait_until(
            lambda: _status(daemon)["connections"]["reading"] >= limit - 1,  # type: ignore[index]
            what=f"{limit - 1} idle connections reading",
        )
        idle.append(RawConnection(sock, timeout=30))  # now every reader's place is taken
        # Past the grace period the oldest idle one makes room for a newcomer.
        time.sleep(IDLE_GRACE)
        started = time.monotonic()
        response = raw_exchange(sock, frame(p.dump(p.StatusRequest())))
        assert isinstance(response, p.StatusResponse), response
        assert time.monotonic() - started < 5
        evicted = idle[0].read_response()
        assert isinstance(evicted, p.ErrorResponse), evicted
        assert evicted.code is p.ErrorCode.TIMEOUT and "room" in evicted.message, evicted
        assert response.connections.evicted >= 1, response.connections
    finally:
        for conn in idle:
            conn.close()


def test_a_burst_of_connects_queues_in_the_backlog(daemon: Project) -> None:
    """A plain connect, no retry: with a small listen backlog a burst fails with EAGAIN."""
    sock_path = str(files_of(daemon).socket)
    barrier = threading.Barrier(200)
    failures: list[str] = []
    answered: list[int] = []
    lock = threading.Lock()

    def connect_once() -> None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(60)
        try:
            barrier.wait(30)
            conn.connect(sock_path)
            conn.sendall(frame(p.dump(p.StatusRequest())))
            header = conn.recv(4)
            with lock:
                answered.append(len(header))
        except OSError as exc:
            with lock:
                failures.append(errno.errorcode.get(exc.errno or 0, str(exc)))
        finally:
            conn.close()

    threads = [threading.Thread(target=connect_once) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == [], f"{len(failures)} of 200 connects failed: {sorted(set(failures))}"
    assert len(answered) == 200


def test_a_run_past_the_limit_is_told_busy_and_runs_cold(tmp_path: Path) -> None:
    project = _project(tmp_path, DEFAULT_INI + "daemon_max_connections = 1\n")
    root = project.root
    holder = None
    try:
        assert project.start("tests").returncode == 0
        holder = subprocess.Popen(
            [*command_pytest(), "-q", "tests/test_barrier.py"],
            cwd=root,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        wait_until(
            lambda: (root / "run-started").exists() or holder.poll() is not None,
            timeout=60,
            what="the first run to hold the only slot",
        )
        started = time.monotonic()
        second = project.pytest("-q", "tests/test_fast.py")
        took = time.monotonic() - started
        assert second.returncode == 0 and "1 passed" in second.stdout, str(second)
        assert (
            "pytest-fastcollect: the daemon is busy: 1 runs, collects or reloads in progress; "
            "running without it"
        ) in second.stderr, str(second)
        assert took < SLOT_WAIT + 30, took
        # Verbs never wait for a slot.
        status = project.pytest("--daemon-status")
        assert status.returncode == 0, str(status)
        connections = _status(project)["connections"]
        assert connections["busy"] == 1 and connections["running"] == 1, connections  # type: ignore[index]
    finally:
        (root / "run-may-finish").touch()
        if holder is not None:
            out, err = holder.communicate(timeout=60)
            assert holder.returncode == 0, out + err
        project.cleanup()
        shutil.rmtree(project.runtime, ignore_errors=True)


def test_a_request_id_in_use_is_refused_then_free_again(daemon: Project) -> None:
    """Two requests with one id: the second is refused with a typed error; the first is
    served as if nothing happened, and the id is free once it is done."""
    sock = files_of(daemon).socket
    (daemon.root / "warmup-wait").touch()
    with RawConnection(sock, timeout=60) as reload:
        reload.send(frame(p.dump(p.ReloadRequest(request_id="same-id"))))
        wait_for_log(daemon, r"Processing request \[same-id\] reload")
        twin = raw_exchange(sock, frame(p.dump(p.StatusRequest(request_id="same-id"))))
        assert isinstance(twin, p.ErrorResponse), twin
        assert twin.code is p.ErrorCode.DUPLICATE_ID, twin
        assert "already in use" in twin.message
        (daemon.root / "warmup-may-finish").touch()
        done = reload.read_response()
    assert isinstance(done, p.ReloadResponse), done
    again = raw_exchange(sock, frame(p.dump(p.StatusRequest(request_id="same-id"))))
    assert isinstance(again, p.StatusResponse), again
    assert "rejected: duplicate_id" in log_text(daemon)
    # Earlier connections close on the server's side a moment after their answer.
    wait_until(
        lambda: (
            json.loads(daemon.pytest("--daemon-status", "--daemon-json").stdout)["connections"][
                "open"
            ]
            == 1
        ),
        what="only the status connection open",
    )
