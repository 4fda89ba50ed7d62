"""No traceback reaches the user: one line that says what happened and what to do (issue 11.10).

Cases found by probing: a directory where the socket should be, a
``DaemonClient.collect`` that outlasts the client's timeout, and the warm
process of a daemon stopped during a replacement (its traceback landed in
the log after "Daemon N stopped").
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from pytest_fastcollect.daemon_client import DaemonClient
from pytest_fastcollect.errors import DaemonError

from helpers import (
    Project,
    command_pytest,
    files_of,
    log_text,
    our_processes,
    record_of,
    wait_for_log,
    wait_until,
)
from transcript import expect

TESTS = {"tests/test_a.py": "def test_a():\n    pass\n"}


def test_a_directory_at_the_socket_path(project: Project) -> None:
    project.write(TESTS)
    socket_dir = files_of(project).socket
    socket_dir.mkdir()
    blocked = f"{socket_dir} is a directory, not a daemon's socket"
    for verb in ("--daemon-status", "--daemon-health", "--daemon-stop", "--daemon-reload"):
        expect(
            project,
            project.pytest(verb),
            6,
            stderr=(
                f"pytest-fastcollect: error: no daemon running for {{root}}; {blocked}; "
                f"remove it (rmdir {socket_dir})\n"
            ),
        )
    expect(
        project,
        project.pytest("--daemon-start", "tests"),
        8,
        stderr=f"pytest-fastcollect: error: {blocked}; remove it (rmdir {socket_dir})\n",
    )
    run = project.pytest("-q", "-p", "no:cacheprovider", "tests")
    assert run.returncode == 0 and "1 passed" in run.stdout, str(run)
    assert run.stderr == (
        f"pytest-fastcollect: {blocked}; running without the daemon (remove it to use one)\n"
    ), str(run)
    assert socket_dir.is_dir(), "a directory that is not ours was removed"


SLOW = {"tests/test_slow.py": "import time\ntime.sleep(3)\n\ndef test_slow():\n    pass\n"}


def test_collect_longer_than_the_client_timeout(project: Project) -> None:
    """collect() waits as long as the collection takes unless given a timeout; a
    timeout that expires says so (the client gave up) and names the parameter."""
    project.write(TESTS)
    assert project.start("tests").returncode == 0
    project.write(SLOW)  # a new module: the collection imports it (3 s)
    client = DaemonClient(files_of(project).socket, timeout=1.0)
    result = client.collect(str(project.root))
    assert result["count"] == 2, result
    (project.root / "tests" / "test_slow.py").write_text(SLOW["tests/test_slow.py"] + "\n# 2\n")
    started = time.monotonic()
    with pytest.raises(DaemonError) as info:
        client.collect(str(project.root), timeout=0.5)
    assert time.monotonic() - started < 2.5
    message = info.value.message
    assert message.startswith("no answer from the daemon within 0.5s; "), message
    assert "timeout=None" in message and "closed the connection" not in message, message
    assert "Traceback" not in log_text(project)


SLOW_CONFTEST = """
import os
import time

# Warm-ups after the flag file appears take a while: long enough to stop
# the daemon in the middle of one.
if os.path.exists(os.path.join(os.path.dirname(__file__), "slow-warmup")):
    time.sleep(2)
"""


def test_stop_during_a_replacement_leaves_no_traceback(project: Project) -> None:
    """A config change starts a replacement; the daemon is stopped while the new
    warm process is still warming up. That process finds its supervisor gone:
    it must leave quietly (it used to print a ConnectionResetError traceback
    into the log, after "Daemon N stopped")."""
    project.write({**TESTS, "tests/conftest.py": SLOW_CONFTEST})
    assert project.start("tests").returncode == 0
    (project.root / "tests" / "slow-warmup").write_text("")
    ini = project.root / "pytest.ini"
    ini.write_text(ini.read_text() + "# a comment\n")
    wait_for_log(project, r"Replacing warm process: pytest\.ini changed")
    assert project.stop().returncode == 0
    wait_until(lambda: not our_processes(project.root), 15, "the warm processes to exit")
    text = log_text(project)
    assert "stopped" in text and "Traceback" not in text, text


def test_ctrl_c_during_start(project: Project) -> None:
    """Ctrl-C while --daemon-start waits for the warm-up: one line, pytest's exit 2."""
    project.write({**TESTS, "tests/conftest.py": SLOW_CONFTEST})
    (project.root / "tests" / "slow-warmup").write_text("")
    proc = subprocess.Popen(
        [*command_pytest(), "--daemon-start", "tests"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_log(project, r"Daemon \d+ starting for ")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    record = wait_until(lambda: record_of(project), 15, "the daemon's record")
    project.started_pids.append(int(record["pid"]))
    assert proc.returncode == 2, (out, err)
    assert err.strip().splitlines() == [
        "pytest-fastcollect: interrupted; the daemon goes on warming up in the background "
        "(pytest --daemon-stop stops it)"
    ], err
