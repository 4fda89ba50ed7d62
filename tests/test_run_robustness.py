"""Runs that end badly harm neither the daemon nor the next run.

A test that calls ``os._exit``, crashes the interpreter, hangs while its
client is killed, starts threads or changes global state: each gives the
client the status a cold run gives, leaves no worker behind, and the next run
(and the warm process) is as good as new.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from helpers import Project, command_pytest, daemon_runs, daemon_status, run_workers

NOTICE = "pytest-fastcollect:"


def warm_pid(proj: Project) -> int:
    pid = daemon_status(proj)["warm_pid"]
    assert isinstance(pid, int)
    return pid


def assert_healthy(proj: Project, expected_warm_pid: int) -> None:
    status = daemon_status(proj)
    assert status["state"] == "ready", status
    # The same warm process: nothing a run did made the daemon replace it.
    assert status["warm_pid"] == expected_warm_pid, status
    health = proj.pytest("--daemon-health")
    assert health.returncode == 0, str(health)
    assert run_workers(expected_warm_pid) == []


@pytest.mark.parametrize(
    "nodeid,expected",
    [
        ("scenarios/test_crash.py::test_exit_7", 7),
        ("scenarios/test_crash.py::test_segfault", -signal.SIGSEGV),
    ],
)
def test_abrupt_exit_gives_the_cold_status(
    equiv_daemon: Project, nodeid: str, expected: int
) -> None:
    wp = warm_pid(equiv_daemon)
    cold = equiv_daemon.cold(nodeid)
    before = daemon_runs(equiv_daemon)
    warm = equiv_daemon.pytest(nodeid)
    assert daemon_runs(equiv_daemon) == before + 1
    assert cold.returncode == expected, str(cold)
    assert warm.returncode == cold.returncode, f"{cold}\n{warm}"
    assert NOTICE not in warm.stderr, str(warm)
    if expected < 0:
        # faulthandler's report reaches the client's stderr, as it does cold.
        assert "Fatal Python error: Segmentation fault" in cold.stderr, str(cold)
        assert "Fatal Python error: Segmentation fault" in warm.stderr, str(warm)
    assert_healthy(equiv_daemon, wp)
    after = equiv_daemon.pytest("-q", "scenarios/test_crash.py", "-k", "not segfault and not exit")
    assert after.returncode == 5, str(after)


def test_shell_sees_the_segfault(equiv_daemon: Project) -> None:
    """Through a shell, the status is 128 + 11 either way."""
    nodeid = "scenarios/test_crash.py::test_segfault"
    codes = []
    for extra in (["--no-daemon"], []):
        cmd = " ".join([*command_pytest(), *extra, nodeid]) + " >/dev/null 2>&1; echo $?"
        out = subprocess.run(
            ["sh", "-c", cmd],
            cwd=equiv_daemon.root,
            env=equiv_daemon.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        codes.append(out.stdout.strip())
    assert codes == ["139", "139"]


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{needle!r} not seen within {timeout}s: {data!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"output closed before {needle!r}: {data!r}"
            data += chunk
    return data


def test_killed_client_takes_its_run_along(equiv_daemon: Project, tmp_path: Path) -> None:
    wp = warm_pid(equiv_daemon)
    pid_file = tmp_path / "child.pid"
    with subprocess.Popen(
        [*command_pytest(), "-s", "scenarios/test_block.py::test_hangs_with_child"],
        cwd=equiv_daemon.root,
        env={**equiv_daemon.env, "EQUIV_CHILD_PID_FILE": str(pid_file)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        _follow_killed_client(proc, wp, pid_file)
    assert_healthy(equiv_daemon, wp)


def _follow_killed_client(proc: subprocess.Popen[bytes], wp: int, pid_file: Path) -> None:
    try:
        _read_until(proc, b"HANGING-NOW", 60)
        workers = run_workers(wp)
        assert len(workers) == 1, workers
        worker = workers[0]
        # The test wrote the file before it printed HANGING-NOW.
        grandchild = psutil.Process(int(pid_file.read_text()))
        assert grandchild.ppid() == worker.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # The worker and what the test spawned in its process group go too.
        _gone, alive = psutil.wait_procs([worker, grandchild], timeout=15)
        assert not alive, alive
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sigterm_to_the_client_ends_the_run_like_cold(equiv_daemon: Project) -> None:
    """SIGTERM is forwarded: the run dies of it and so does the client, as cold."""
    codes = []
    for extra in (["--no-daemon"], []):
        with subprocess.Popen(
            [*command_pytest(), *extra, "-s", "scenarios/test_block.py::test_blocks"],
            cwd=equiv_daemon.root,
            env=equiv_daemon.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as proc:
            try:
                _read_until(proc, b"BLOCKING-NOW", 60)
                proc.send_signal(signal.SIGTERM)
                codes.append(proc.wait(15))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    assert codes == [-signal.SIGTERM, -signal.SIGTERM]
    assert run_workers(warm_pid(equiv_daemon)) == []


def test_global_state_does_not_leak_into_the_next_run(
    equiv_daemon: Project, tmp_path: Path
) -> None:
    wp = warm_pid(equiv_daemon)
    nodeids = [
        "scenarios/test_state.py::test_state_is_pristine_then_dirty_it",
        "scenarios/test_state.py::test_daemon_thread_keeps_running",
    ]
    cold = equiv_daemon.cold("-q", *nodeids)
    assert cold.returncode == 0, str(cold)
    for _ in range(3):
        before = daemon_runs(equiv_daemon)
        warm = equiv_daemon.pytest("-q", *nodeids)
        assert warm.returncode == 0, str(warm)
        assert daemon_runs(equiv_daemon) == before + 1
        assert NOTICE not in warm.stderr
    assert_healthy(equiv_daemon, wp)


def test_non_daemon_thread_finishes_before_the_run_ends(
    equiv_daemon: Project, tmp_path: Path
) -> None:
    """A cold interpreter waits for non-daemon threads at exit; a warm run must too."""
    for extra in (["--no-daemon"], []):
        marker = tmp_path / f"thread-{len(extra)}.txt"
        result = equiv_daemon.pytest(
            *extra,
            "-q",
            "scenarios/test_state.py::test_background_thread_finishes",
            env={"EQUIV_THREAD_FILE": str(marker)},
        )
        assert result.returncode == 0, str(result)
        assert marker.exists(), (
            f"the thread's work was lost ({'cold' if extra else 'warm'})\n{result}"
        )
        assert marker.read_text() == "done"


def test_daemon_survives_a_storm_of_bad_runs(equiv_daemon: Project) -> None:
    """After everything above (and all at once here), runs still match cold."""
    wp = warm_pid(equiv_daemon)
    for nodeid in (
        "scenarios/test_crash.py::test_exit_7",
        "scenarios/test_crash.py::test_segfault",
    ):
        equiv_daemon.pytest(nodeid)
    warm = equiv_daemon.pytest("-q", "tests", "-k", "param")
    cold = equiv_daemon.cold("-q", "tests", "-k", "param")
    assert warm.returncode == cold.returncode == 1
    assert (
        warm.stdout.splitlines()[-1].split(" in ")[0]
        == cold.stdout.splitlines()[-1].split(" in ")[0]
    )
    assert_healthy(equiv_daemon, wp)
