"""A warm process that stops answering without dying (issue 10.6): SIGSTOP, here.

It is found within seconds (stopped, or a ping unanswered), reported, and
replaced; a run that was waiting on it is served elsewhere at once (cold,
or forked from the base process) with a notice instead of hanging; a run
already in progress is told, and gets its result if the process answers
again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Project, command_pytest, log_text, pid_alive, record_of, wait_until

pytestmark = pytest.mark.timeout(180)

TESTS = {
    "tests/test_a.py": "def test_a():\n    pass\n",
    "tests/test_barrier.py": """\
        import os
        import time


        def test_barrier():
            if not os.environ.get("BARRIER"):
                return
            open(os.environ["BARRIER"] + "/entered", "w").close()
            deadline = time.monotonic() + 90
            while not os.path.exists(os.environ["BARRIER"] + "/go"):
                assert time.monotonic() < deadline
                time.sleep(0.01)
    """,
}


def _started(project: Project) -> int:
    project.write(TESTS)
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    record = record_of(project)
    assert record is not None
    return int(record["warm_pid"])


def test_a_stopped_warm_process_sends_the_run_cold_and_is_replaced(project: Project) -> None:
    warm = _started(project)
    os.kill(warm, signal.SIGSTOP)
    try:
        started = time.monotonic()
        run = project.pytest("-q", "tests/test_a.py", timeout=60)
        took = time.monotonic() - started
        assert run.returncode == 0 and "1 passed" in run.stdout, str(run)
        # Told why, and served at once: cold, or forked from the base process while
        # the replacement warms up.
        assert "pytest-fastcollect: the warm process" in run.stderr, str(run)
        assert "it is stopped (process state stopped)" in run.stderr, str(run)
        assert took < 20, f"the run waited {took:.1f}s on a stopped warm process"
        # It held the run's fork order: were it to wake up, it would run it twice.
        wait_until(lambda: not pid_alive(warm), what="the stopped warm process to be killed")

        def replaced() -> dict[str, object] | None:
            status = project.status()
            ok = status["state"] == "ready" and status["warm_pid"] not in (None, warm)
            return status if ok else None

        status = wait_until(replaced, timeout=60, what="a new warm process")
        assert status["reload"]["replacements"] == {"unresponsive": 1}  # type: ignore[index]
        health = project.pytest("--daemon-health")
        assert health.returncode == 0, str(health)
        assert "warm_process_responsive: True" in health.stdout
        again = project.pytest("-q", "tests/test_a.py")
        assert again.returncode == 0 and "pytest-fastcollect" not in again.stderr, str(again)
        log = log_text(project)
        assert f"Warm process {warm} does not answer: it is stopped" in log
    finally:
        if pid_alive(warm):
            os.kill(warm, signal.SIGCONT)


def test_a_run_in_progress_is_told_and_gets_its_result(project: Project, tmp_path: Path) -> None:
    warm = _started(project)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    run = subprocess.Popen(
        [*command_pytest(), "-q", "tests/test_barrier.py"],
        cwd=project.root,
        env={**project.env, "BARRIER": str(barrier)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: (barrier / "entered").exists() or run.poll() is not None, timeout=60)
        assert run.poll() is None, run.communicate()
        os.kill(warm, signal.SIGSTOP)
        wait_for = f"Warm process {warm} does not answer"
        wait_until(lambda: wait_for in log_text(project), timeout=30, what=wait_for)
        # Health reports it until a new warm process serves; then runs use that one.
        wait_until(
            lambda: project.status()["warm_pid"] not in (None, warm),
            timeout=60,
            what="the replacement",
        )
        (barrier / "go").touch()
        time.sleep(0.5)  # the worker (not stopped) finishes; its exit waits on the warm process
        assert run.poll() is None, "the result cannot arrive before the warm process answers"
        os.kill(warm, signal.SIGCONT)
        out, err = run.communicate(timeout=60)
    finally:
        (barrier / "go").touch()
        if pid_alive(warm):
            os.kill(warm, signal.SIGCONT)
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0 and "1 passed" in out, out + err
    assert "the warm process stopped answering (it is stopped" in err, err
    assert "result arrives if it answers again" in err, err
    wait_until(lambda: not pid_alive(warm), what="the retired warm process to exit")
