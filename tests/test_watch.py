"""Watch mode as a user drives it: a pseudo-terminal, real saves, every key, Ctrl-C.

``pytest --daemon-watch`` (and ``pytest-fastcollect watch``) runs as the
session leader of a fresh pty, as in a shell; keys are bytes typed into the
pty, Ctrl-C is ``\\x03``. The project is written fresh for each test and no
daemon runs at first: watch mode starts one. Every wait is for expected
output (a header, a footer) or an exit, with a deadline; nothing sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import (
    THIN,
    Project,
    PtyRun,
    command_pytest,
    make_project,
    run_workers,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)

GATE_TEST = """\
import os
import time


def test_gate():
    gate = os.environ.get("WATCH_GATE", "")
    if not os.path.exists(gate):
        return
    open(gate + ".entered", "w").close()
    deadline = time.monotonic() + 60
    while os.path.exists(gate):
        assert time.monotonic() < deadline, "the test never saw the gate open"
        time.sleep(0.01)
"""
FILES = {
    "pytest.ini": "[pytest]\npythonpath = .\ntestpaths = tests\n"
    "asyncio_default_fixture_loop_scope = function\n",
    "app/__init__.py": "",
    "app/core.py": "def double(x):\n    return x * 2\n",
    "app/other.py": "def name():\n    return 'other'\n",
    "tests/test_core.py": "from app.core import double\n\n\ndef test_double():\n"
    "    assert double(2) == 4\n\n\ndef test_double_zero():\n    assert double(0) == 0\n",
    "tests/test_other.py": "from app.other import name\n\n\ndef test_name():\n"
    "    assert name() == 'other'\n",
    "tests/test_gate.py": GATE_TEST,
}
FOOTER_END = b"q quit"  # the last words of every footer on a tty
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Session:
    """A project, its gate file, and the watch commands started in it."""

    def __init__(self, tmp: Path) -> None:
        self.project: Project = make_project(tmp / "proj")
        self.project.write(FILES)
        self.gate = tmp / "gate"
        self.env = {
            k: v
            for k, v in self.project.env.items()
            if k not in ("NO_COLOR", "FORCE_COLOR", "PY_COLORS", "COLUMNS")
        }
        self.env.update(TERM="xterm-256color", WATCH_GATE=str(self.gate))
        self.runs: list[PtyRun] = []

    def pty(self, *cmd: str) -> PtyRun:
        run = PtyRun(list(cmd), str(self.project.root), self.env)
        self.runs.append(run)
        return run

    def watch(self, *args: str) -> PtyRun:
        return self.pty(*command_pytest(), "--daemon-watch", *args)

    def save(self, rel: str, text: str) -> None:
        self.project.write({rel: text})

    def close(self) -> None:
        for run in self.runs:
            run.close()
        self.project.cleanup()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path)
    try:
        yield s
    finally:
        s.close()


def cycle(run: PtyRun, header: bytes, start: int) -> tuple[str, int]:
    """Wait for a run under ``header`` to finish (its footer); pytest's output and the
    footer without colours or the keys' help."""
    at = run.expect(header, start=start)
    end = run.expect(FOOTER_END, start=at)
    text = ANSI.sub("", run.output[at:end].decode(errors="replace"))
    return text.split(" · Enter rerun")[0], end


def keys_mode(run: PtyRun) -> bool:
    """Whether the pty echoes and reads lines (as a shell leaves it)."""
    lflag = termios.tcgetattr(run.master)[3]
    return bool(lflag & termios.ICANON) and bool(lflag & termios.ECHO)


def test_every_key(session: Session) -> None:
    run = session.watch()
    text, at = cycle(run, b"watch: pytest", 0)
    assert "pytest-fastcollect: daemon started" in ANSI.sub("", run.text()), run.text()
    assert "4 passed" in text, run.text()
    assert not keys_mode(run)  # keys one at a time, not echoed
    session.save("app/other.py", "def name():\n    return 'changed'\n")
    text, at = cycle(run, b"app/other.py changed: 1 test file, 1 test", at)
    assert "1 failed" in text and "test_core" not in text, text
    assert "reload" in text and "exit 1" in text, text

    run.send(b"\r")  # Enter: the same again
    text, at = cycle(run, b"app/other.py changed: 1 test file, 1 test", at)
    assert "1 failed" in text, text
    run.send(b"f")  # failed only
    text, at = cycle(run, b"1 failed test", at)
    assert "1 failed" in text and "passed" not in text, text
    run.send(b"a")  # all
    text, at = cycle(run, b"all tests", at)
    assert "1 failed, 3 passed" in text, text

    run.send(b"p")  # file name filter
    at = run.expect(b"test file pattern", start=at)
    run.send(b"core\n")
    text, at = cycle(run, b"test files matching 'core'", at)
    assert "2 passed" in text and "failed" not in text, text
    run.send(b"t")  # test name filter, with the file filter still on
    at = run.expect(b"test name", start=at)
    run.send(b"zero\n")
    text, at = cycle(run, b"tests matching 'zero'", at)
    assert "1 passed, 1 deselected" in text, text
    # Filters stay on for the next save: only test_core.py, only "zero".
    session.save("app/core.py", "def double(x):\n    return x + x\n")
    text, at = cycle(run, b"app/core.py changed", at)
    assert "1 passed, 1 deselected" in text, text

    run.send(b"q")
    assert run.wait(timeout=30) == 0, run.text()
    assert keys_mode(run), "the terminal was not restored"


def test_ctrl_c_during_a_run(session: Session) -> None:
    session.gate.touch()
    run = session.watch()
    run.expect(b"watch: pytest")
    wait_until(lambda: Path(f"{session.gate}.entered").exists(), 60, "the run to reach the gate")
    run.send(b"\x03")
    code = run.wait(timeout=30)
    text = ANSI.sub("", run.text())
    assert code == 128 + signal.SIGINT, text
    assert "KeyboardInterrupt" in text and "Traceback" not in text.split("KeyboardInterrupt")[-1]
    assert keys_mode(run), "the terminal was not restored"
    status = session.project.status()
    assert status["state"] == "ready"
    warm = status["warm_pid"]
    # The standby worker (a fork waiting for the next run) may be there; no run's is.
    assert isinstance(warm, int) and run_workers(warm) == []


def test_a_save_during_a_run_is_run_next(session: Session) -> None:
    run = session.watch()
    _, at = cycle(run, b"watch: pytest", 0)
    session.gate.touch()
    run.send(b"a")
    wait_until(lambda: Path(f"{session.gate}.entered").exists(), 60, "the run to reach the gate")
    # test_core.py has run already (it comes first); this save lands mid-run.
    session.save("app/core.py", "def double(x):\n    return x * 3\n")
    session.gate.unlink()
    text, at = cycle(run, b"all tests", at)
    assert "4 passed" in text, text
    text, at = cycle(run, b"app/core.py changed: 1 test file, 2 tests", at)
    assert "1 failed, 1 passed" in text, text
    run.send(b"q")
    assert run.wait(timeout=30) == 0


def cold_output(session: Session, *args: str) -> str:
    cold = session.pty(*command_pytest(), "--no-daemon", *args)
    cold.wait(timeout=60)
    return cold.text()


def screen(text: str) -> str:
    """What a terminal shows: a carriage return rewrites its line (pytest's
    "collecting ..." progress, shown or not depending on how long collection
    takes); durations vary."""
    lines = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r" in \d+\.\d+s", " in Ns", "\n".join(lines)).strip()


def pytest_part(text: str) -> str:
    """pytest's own output in a cycle: after the header line, before the footer."""
    body = text.split("\n", 1)[1]
    return body[: body.rindex("\x1b[2m── ")] if "\x1b[2m── " in body else body


def test_a_syntax_error_then_fixed(session: Session) -> None:
    run = session.watch()
    _, at = cycle(run, b"watch: pytest", 0)
    session.save("app/core.py", "def double(x)\n    return x * 2\n")
    header = b"app/core.py changed: 1 test file"
    start = run.expect(header, start=at) - len(header)
    text, at = cycle(run, header, at)
    assert "SyntaxError" in text and "1 error" in text and "exit 2" in text, text
    # Exactly what a cold run of the same selection shows.
    shown = pytest_part(run.output[start:at].decode(errors="replace"))
    cold = cold_output(
        session, "tests/test_core.py", "-p", "pytest_fastcollect.client.watch_report"
    )
    assert screen(shown) == screen(cold)
    # The fix: the file that failed to collect runs again, and watching goes on.
    session.save("app/core.py", "def double(x):\n    return x * 2\n")
    text, at = cycle(run, b"app/core.py changed", at)
    assert "2 passed in" in text and "ERROR" not in text, text
    session.save("app/other.py", "def name():\n    return 'other'  # saved again\n")
    text, at = cycle(run, b"app/other.py changed", at)
    assert "1 passed" in text, text
    run.send(b"q")
    assert run.wait(timeout=30) == 0


def test_without_a_tty(session: Session) -> None:
    proc, reader, text = _watch_without_tty(session)
    try:
        wait_until(lambda: text().count("── run") >= 1, 60, "the first run's footer")
        session.save("app/other.py", "def name():\n    return 'changed'\n")
        wait_until(lambda: text().count("── ") >= 4, 60, "the second run's footer")
        out = text()
        assert "── app/other.py changed: 1 test file, 1 test ──" in out, out
        assert "1 failed" in out
        assert "\x1b[" not in out and "Enter rerun" not in out, out
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 128 + signal.SIGTERM, text()
    assert "Traceback" not in text()


def _watch_without_tty(
    session: Session,
) -> tuple[subprocess.Popen[bytes], threading.Thread, Callable[[], str]]:
    """``pytest --daemon-watch tests`` on pipes; its output so far is ``text()``."""
    proc = subprocess.Popen(
        [*command_pytest(), "--daemon-watch", "tests"],
        cwd=session.project.root,
        env=session.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(_lines(proc)), daemon=True)
    reader.start()
    return proc, reader, lambda: "".join(lines)


def _lines(proc: subprocess.Popen[bytes]) -> Iterator[str]:
    assert proc.stdout is not None
    for raw in proc.stdout:
        yield raw.decode(errors="replace")


def test_thin_client_watch(session: Session) -> None:
    run = session.pty(THIN, "watch", "tests")
    _, at = cycle(run, b"watch: pytest tests", 0)
    session.save("tests/test_other.py", "def test_name():\n    assert True\n")
    text, at = cycle(run, b"tests/test_other.py changed: 1 test file", at)
    assert "1 passed" in text, text
    run.send(b"\x03")  # Ctrl-C while waiting: quits as cleanly as q
    assert run.wait(timeout=30) == 128 + signal.SIGINT, run.text()
    assert "Traceback" not in run.text()
    assert keys_mode(run)


def test_a_restarted_daemon_is_picked_up(session: Session) -> None:
    proc, reader, text = _watch_without_tty(session)
    try:
        wait_until(lambda: "── run" in text(), 60, "the first run's footer")
        restarted = session.project.pytest("--daemon-restart")
        assert restarted.returncode == 0, str(restarted)
        wait_until(lambda: "the daemon restarted" in text(), 60, "a run after the restart")
        wait_until(lambda: text().count("exit 0") >= 2, 60, "its footer")
        assert "lost the daemon; waiting for one to answer" in text()
        session.save("app/other.py", "def name():\n    return 'changed'\n")
        wait_until(lambda: "app/other.py changed: 1 test file" in text(), 60, "a save seen")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_daemon_clear_needs_watch(session: Session) -> None:
    result = session.project.pytest("--daemon-clear")
    assert result.returncode == 4
    assert "--daemon-clear goes with --daemon-watch" in result.stderr


def test_screen_clearing(session: Session) -> None:
    run = session.watch("--daemon-clear")
    cycle(run, b"watch: pytest", 0)
    assert b"\x1b[H\x1b[2J" in run.output
    run.send(b"q")
    assert run.wait(timeout=30) == 0
    assert os.path.exists(session.project.root / "tests")


def test_daemon_client_affected(example: Callable[[str], Project]) -> None:
    from pytest_fastcollect.daemon_client import DaemonClient, DaemonError

    proj = example("basic")
    assert proj.start().returncode == 0
    record = proj.record()
    assert record is not None
    client = DaemonClient(str(record["socket_path"]))
    root = os.path.realpath(proj.root)
    discounts = proj.root / "shop" / "discounts.py"
    found = client.affected([discounts])
    if found["everything"]:
        # Right after the start the registrant scan may still run: that is the one reason.
        assert "which modules register into others is not known yet" in found["reasons"][0]
        found = wait_until(
            lambda: (f := client.affected([discounts]))["everything"] is False and f,
            30,
            "the registrant scan",
        )
    assert found["everything"] is False and found["node_ids"] == {}
    assert found["test_files"] == [os.path.join(root, "tests", "test_discounts.py")]
    # The conftest imports the shop package: every test under it.
    found = client.affected([proj.root / "shop" / "money.py"], collect=True)
    assert len(found["test_files"]) == 4
    assert sum(len(ids) for ids in found["node_ids"].values()) == 40
    found = client.affected([proj.root / "pytest.ini"])
    assert found["everything"] and found["reasons"] == ["pytest.ini changed (configuration)"]
    with pytest.raises(DaemonError, match="outside_root"):
        client.affected(["/etc/hostname"])
