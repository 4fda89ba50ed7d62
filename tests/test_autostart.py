"""``daemon_autostart = true``: a cold run starts the daemon for the next runs.

The daemon starts in the background, so the test waits for it to become
ready by polling ``--daemon-status`` against a deadline (a condition, not a
sleep). Where no daemon must start, the client runs under a child subreaper,
so any background process it left behind is adopted and seen at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest

from helpers import Project, command_pytest, daemon_runs

NOTICE = "pytest-fastcollect:"
AUTOSTART_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\ndaemon_autostart = true\n"
TESTS = {
    "tests/test_a.py": """
    def test_ok():
        assert True

    def test_bad():
        assert 1 == 2
"""
}

# Runs a command as a child subreaper and reports the processes it left behind.
SUBREAPER = """
import ctypes, json, subprocess, sys
import psutil
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
left = [{"pid": p.pid, "cmdline": p.cmdline()} for p in psutil.Process().children()]
for p in psutil.Process().children():
    p.kill()
out = {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "left": left}
print(json.dumps(out))
"""


def wait_ready(proj: Project, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = proj.pytest("--daemon-status", "--daemon-json")
        if last.returncode == 0:
            status: dict[str, object] = json.loads(last.stdout)
            if status["state"] == "ready":
                return status
    raise AssertionError(f"the daemon was not ready within {timeout}s: {last}")


@pytest.fixture
def autostart_project(project: Project) -> Project:
    project.write(TESTS)
    (project.root / "pytest.ini").write_text(AUTOSTART_INI)
    return project


def test_cold_run_starts_a_daemon_for_the_next_runs(autostart_project: Project) -> None:
    proj = autostart_project
    assert proj.record() is None
    first = proj.pytest("-q", "tests")
    assert first.returncode == 1, str(first)
    assert "1 failed, 1 passed" in first.stdout
    notices = [ln for ln in first.stderr.splitlines() if ln.startswith(NOTICE)]
    assert len(notices) == 1 and "daemon_autostart" in notices[0], str(first)
    status = wait_ready(proj)
    record = proj.record()
    assert record is not None and record["pid"] == status["pid"]
    proj.started_pids.append(int(status["pid"]))  # type: ignore[call-overload]

    second = proj.pytest("-q", "tests")
    assert second.returncode == 1, str(second)
    assert NOTICE not in second.stderr, str(second)
    assert daemon_runs(proj) == 1
    cold = proj.cold("-q", "tests")
    assert (
        second.stdout.splitlines()[-1].split(" in ")[0]
        == cold.stdout.splitlines()[-1].split(" in ")[0]
    )
    # A served run does not start another daemon.
    third = proj.pytest("-q", "tests")
    assert NOTICE not in third.stderr
    assert proj.record() == record
    stopped = proj.stop()
    assert stopped.returncode == 0, str(stopped)
    try:
        leftover = psutil.Process(int(status["pid"]))  # type: ignore[call-overload]
        # Exited; only its reaping (by init, not by us) may lag behind.
        assert leftover.status() == psutil.STATUS_ZOMBIE, leftover
    except psutil.NoSuchProcess:
        pass


def run_reaped(proj: Project, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", SUBREAPER, *command_pytest(), *args],
        cwd=proj.root,
        env={**proj.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc
    out: dict[str, object] = json.loads(proc.stdout)
    return out


@pytest.mark.parametrize(
    "args,env",
    [
        (("--no-daemon",), {}),
        ((), {"PYTEST_FASTCOLLECT_DISABLE": "1"}),
    ],
    ids=["no-daemon", "disable-env"],
)
def test_no_autostart_when_disabled(
    autostart_project: Project, args: tuple[str, ...], env: dict[str, str]
) -> None:
    out = run_reaped(autostart_project, *args, "-q", "tests", env=env)
    assert out["rc"] == 1, out
    assert NOTICE not in str(out["stderr"]), out
    assert out["left"] == [], out
    assert autostart_project.record() is None


def test_autostart_off_by_default(project: Project) -> None:
    project.write(TESTS)
    out = run_reaped(project, "-q", "tests")
    assert out["rc"] == 1, out
    assert out["left"] == [] and NOTICE not in str(out["stderr"]), out


def test_subreaper_sees_an_autostarted_daemon(autostart_project: Project) -> None:
    """The negative checks above can fail: an autostart is seen (and killed) here."""
    out = run_reaped(autostart_project, "-q", "tests")
    assert out["rc"] == 1, out
    assert "daemon_autostart" in str(out["stderr"]), out
    left = out["left"]
    # The detached daemon, adopted by the subreaper (which killed it).
    assert isinstance(left, list) and len(left) == 1, out


@pytest.mark.parametrize("style", ["joined", "separate"])
def test_autostart_warm_up_leaves_the_runs_report_alone(
    autostart_project: Project, style: str
) -> None:
    """The warm-up is a collect-only session: it must not rewrite the run's --junitxml."""
    proj = autostart_project
    xml = proj.root / "report.xml"
    opt = [f"--junitxml={xml}"] if style == "joined" else ["--junitxml", str(xml)]
    first = proj.pytest("-q", *opt, "tests")
    assert first.returncode == 1, str(first)
    assert "daemon_autostart" in first.stderr, str(first)
    written = xml.read_bytes()
    assert b'tests="2"' in written
    status = wait_ready(proj)
    proj.started_pids.append(int(status["pid"]))  # type: ignore[call-overload]
    # Ready means warmed up: had the warm-up written the report, it would be there now.
    assert xml.read_bytes() == written
    assert status["warm_paths"] == ["tests"], status
