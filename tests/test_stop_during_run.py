"""``--daemon-stop`` while a run is in progress (issue 10.8).

The run may finish within a bound and keeps its own result; past the bound,
or at a second ``--daemon-stop``, it is stopped and its client says that
``--daemon-stop`` stopped it (never "the warm process died").
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_fastcollect.daemon_client import DaemonClient
from pytest_fastcollect.supervisor.core import STOP_GRACE

from helpers import Project, command_pytest, files_of, pid_alive, record_of, wait_until

pytestmark = pytest.mark.timeout(180)

BARRIER_TEST = """\
import os
import time


def test_barrier():
    barrier = os.environ["BARRIER"]
    open(os.path.join(barrier, "entered"), "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(barrier, "go")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
"""


class Run:
    def __init__(self, project: Project, barrier: Path) -> None:
        self.barrier = barrier
        self.proc = subprocess.Popen(
            [*command_pytest(), "-q", "tests/test_barrier.py"],
            cwd=project.root,
            env={**project.env, "BARRIER": str(barrier)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(
            lambda: (barrier / "entered").exists() or self.proc.poll() is not None,
            timeout=60,
            what="the run to reach its barrier",
        )
        assert self.proc.poll() is None, self.proc.communicate()

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        (self.barrier / "go").touch()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def run(project: Project, tmp_path: Path) -> Iterator[tuple[Project, Run]]:
    project.write({"tests/test_barrier.py": BARRIER_TEST})
    assert project.start("tests/test_barrier.py").returncode == 0
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    running = Run(project, barrier)
    try:
        yield project, running
    finally:
        running.kill()


def _stop_in_background(project: Project) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*command_pytest(), "--daemon-stop"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_run_in_progress_finishes_with_its_own_result(run: tuple[Project, Run]) -> None:
    project, running = run
    pid = int(record_of(project)["pid"])  # type: ignore[index]
    stop = _stop_in_background(project)
    wait_until(lambda: _stopping(project), what="the daemon to be stopping")
    (running.barrier / "go").touch()
    code, out, err = running.finish()
    assert code == 0 and "1 passed" in out, out + err
    assert "pytest-fastcollect" not in err, err
    stop_out, stop_err = stop.communicate(timeout=60)
    assert stop.returncode == 0, stop_out + stop_err
    assert "1 run(s) in progress may finish within" in stop_out, stop_out
    assert f"stopped the daemon (pid {pid})" in stop_out, stop_out
    wait_until(lambda: not pid_alive(pid), what="the daemon to exit")


def test_a_run_past_the_bound_is_stopped_and_says_so(run: tuple[Project, Run]) -> None:
    project, running = run
    started = time.monotonic()
    stop = project.stop()
    assert stop.returncode == 0, str(stop)
    code, out, err = running.finish()
    took = time.monotonic() - started
    assert code == 3, out + err
    assert "pytest-fastcollect: the run was stopped by pytest --daemon-stop" in err, err
    assert "died" not in err, err
    assert STOP_GRACE - 1 <= took < STOP_GRACE + 30, took


def test_a_second_stop_stops_the_run_at_once(run: tuple[Project, Run]) -> None:
    project, running = run
    first = _stop_in_background(project)
    wait_until(lambda: _stopping(project), what="the daemon to be stopping")
    started = time.monotonic()
    # The second stop straight through the API: a pytest command takes seconds to start.
    DaemonClient(files_of(project).socket).stop()
    code, out, err = running.finish()
    assert time.monotonic() - started < STOP_GRACE - 1, "the second stop waited out the bound"
    assert code == 3 and "stopped by pytest --daemon-stop" in err, out + err
    first_out, _ = first.communicate(timeout=60)
    assert first.returncode == 0, first_out


def _stopping(project: Project) -> bool:
    status = DaemonClient(files_of(project).socket).get_status()
    return bool(status["state"] == "stopping")
