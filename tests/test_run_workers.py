"""The supervisor's view of runs' xdist processes (supervisor/run_workers.py), unit-tested
with real processes standing in for a fork server and its workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_fastcollect.paths import xdist_record
from pytest_fastcollect.supervisor.run_workers import RunWorkers, read_record


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def write_record(cache: Path, run_id: str, fork_server: int, workers: dict[str, int]) -> Path:
    path = Path(xdist_record(str(cache), run_id))
    data = {
        "fork_server": fork_server,
        "workers": [{"gateway": g, "pid": p} for g, p in workers.items()],
    }
    path.write_text(json.dumps(data))
    return path


def test_live_shows_running_runs_with_their_workers(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    write_record(tmp_path, "r1", os.getpid(), {"gw0": sleeper.pid})
    rw = RunWorkers(str(tmp_path))
    roles = [(p.role, p.pid) for p in rw.live({"r1": os.getpid(), "r2": os.getpid()})]
    assert roles == [
        ("run", os.getpid()),
        ("xdist-fork", os.getpid()),
        ("xdist-gw0", sleeper.pid),
        ("run", os.getpid()),  # r2 has no record: no xdist processes
    ]


def test_a_worker_alive_after_its_run_is_leaked(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    path = write_record(tmp_path, "r1", gone.pid, {"gw0": sleeper.pid, "gw1": gone.pid})
    rw = RunWorkers(str(tmp_path), grace=0)
    assert rw.check().ok
    rw.finished("r1", "req-1")
    assert not path.exists()
    check = rw.check()
    assert not check.ok and check.value == 1 and check.severity == "unhealthy"
    assert f"xdist-gw0 {sleeper.pid} (run req-1)" in check.detail
    sleeper.kill()
    sleeper.wait(10)
    assert rw.check().ok and rw.check().value == 0


def test_the_grace_period_spares_a_dying_worker(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    write_record(tmp_path, "r1", os.getpid(), {"gw0": sleeper.pid})
    rw = RunWorkers(str(tmp_path), grace=3600)
    rw.finished("r1", "req-1")
    assert rw.check().ok


def test_a_bad_record_is_ignored(tmp_path: Path) -> None:
    path = Path(xdist_record(str(tmp_path), "r1"))
    path.write_text('{"fork_server": "x"}')
    assert read_record(str(path)) is None
    rw = RunWorkers(str(tmp_path), grace=0)
    rw.finished("r1", "req-1")
    assert not path.exists() and rw.check().ok
