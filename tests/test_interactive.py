"""Interactive runs through a pseudo-terminal: colours, --pdb, breakpoint(), Ctrl-C.

The client runs as the session leader of a fresh pty (its controlling
terminal), exactly as in a shell: Ctrl-C is the byte ``\\x03`` typed into the
pty, which the line discipline turns into SIGINT for the client alone (the
run worker lives in the daemon's session). Every wait is for expected output
or an exit, with a deadline; nothing sleeps.
"""

from __future__ import annotations

import difflib
import re
import signal
import time
from collections.abc import Iterator

import psutil
import pytest

from helpers import Project, PtyRun, command_pytest, daemon_runs, daemon_status, run_workers

ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
INTERRUPT_AT = re.compile(r"^\S+\.py(?:\x1b\[0m)?:\d+: KeyboardInterrupt$", re.M)


@pytest.fixture
def spawn(equiv_daemon: Project) -> Iterator[object]:
    runs: list[PtyRun] = []
    env = {
        k: v
        for k, v in equiv_daemon.env.items()
        if k not in ("NO_COLOR", "FORCE_COLOR", "PY_COLORS", "PYTHONBREAKPOINT", "COLUMNS")
    }
    env["TERM"] = "xterm-256color"

    def factory(*args: str, cold: bool = False) -> PtyRun:
        cmd = [*command_pytest(), *(["--no-daemon"] if cold else []), *args]
        run = PtyRun(cmd, str(equiv_daemon.root), env)
        runs.append(run)
        return run

    try:
        yield factory
    finally:
        for run in runs:
            run.close()


def same_diff(cold: str, warm: str) -> str:
    lines = difflib.unified_diff(cold.splitlines(), warm.splitlines(), "cold", "warm", lineterm="")
    return "\n".join(repr(line) for line in lines)


def normalise(data: bytes) -> str:
    text = data.decode(errors="replace").replace("\r\n", "\n")
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    text = re.sub(r" in \d+\.\d+s", " in Ns", text)
    return text


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_colours_on_a_tty(equiv_daemon: Project, spawn: object, cold: bool) -> None:
    before = daemon_runs(equiv_daemon)
    run = spawn(
        "scenarios/test_interactive.py::test_ok",
        "scenarios/test_interactive.py::test_fails_for_pdb",
        cold=cold,
    )  # type: ignore[operator]
    code = run.wait()
    assert code == 1, run.text()
    assert b"\x1b[" in run.output, run.text()
    assert b"\x1b[32m" in run.output or b"\x1b[1m\x1b[32m" in run.output, (
        "no green on a tty: " + run.text()
    )
    assert b"pytest-fastcollect:" not in run.output, run.text()
    assert daemon_runs(equiv_daemon) == before + (not cold)


def test_tty_output_same_as_cold(spawn: object) -> None:
    outputs = []
    for cold in (True, False):
        run = spawn(
            "scenarios/test_interactive.py::test_ok",
            "scenarios/test_interactive.py::test_fails_for_pdb",
            cold=cold,
        )  # type: ignore[operator]
        assert run.wait() == 1, run.text()
        outputs.append(normalise(run.output))
    assert outputs[0] == outputs[1], same_diff(outputs[0], outputs[1])


def test_no_colours_without_a_tty(equiv_daemon: Project) -> None:
    env = {"TERM": "xterm-256color"}
    warm = equiv_daemon.pytest("scenarios/test_interactive.py::test_ok", env=env)
    cold = equiv_daemon.cold("scenarios/test_interactive.py::test_ok", env=env)
    assert warm.returncode == cold.returncode == 0
    assert "\x1b[" not in warm.stdout and "\x1b[" not in cold.stdout


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_pdb_on_failure_continue(equiv_daemon: Project, spawn: object, cold: bool) -> None:
    before = daemon_runs(equiv_daemon)
    run = spawn("--pdb", "scenarios/test_interactive.py::test_fails_for_pdb", cold=cold)  # type: ignore[operator]
    at = run.expect(b"(Pdb) ")
    run.send(b"p value + 1000\n")
    at = run.expect(b"1041", start=at)
    run.expect(b"(Pdb) ", start=at)
    run.send(b"c\n")
    assert run.wait() == 1, run.text()
    assert b"1 failed" in run.output, run.text()
    assert daemon_runs(equiv_daemon) == before + (not cold)


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_pdb_quit(spawn: object, cold: bool) -> None:
    run = spawn("--pdb", "scenarios/test_interactive.py::test_fails_for_pdb", cold=cold)  # type: ignore[operator]
    run.expect(b"(Pdb) ")
    run.send(b"q\n")
    assert run.wait() == 2, run.text()
    assert b"Quitting debugger" in run.output, run.text()


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_breakpoint_in_a_test(equiv_daemon: Project, spawn: object, cold: bool) -> None:
    before = daemon_runs(equiv_daemon)
    run = spawn("scenarios/test_interactive.py::test_breakpoint", cold=cold)  # type: ignore[operator]
    at = run.expect(b"(Pdb) ")
    run.send(b"p answer * 2\n")
    at = run.expect(b"84", start=at)
    run.expect(b"(Pdb) ", start=at)
    run.send(b"c\n")
    assert run.wait() == 0, run.text()
    assert b"1 passed" in run.output, run.text()
    assert daemon_runs(equiv_daemon) == before + (not cold)


def test_pdb_session_same_as_cold(spawn: object) -> None:
    outputs = []
    for cold in (True, False):
        run = spawn("--pdb", "scenarios/test_interactive.py::test_fails_for_pdb", cold=cold)  # type: ignore[operator]
        run.expect(b"(Pdb) ")
        run.send(b"c\n")
        assert run.wait() == 1, run.text()
        outputs.append(normalise(run.output))
    assert outputs[0] == outputs[1], same_diff(outputs[0], outputs[1])


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_ctrl_c_interrupts_the_run(equiv_daemon: Project, spawn: object, cold: bool) -> None:
    before = daemon_runs(equiv_daemon)
    run = spawn(
        "-s",
        "scenarios/test_block.py::test_before",
        "scenarios/test_block.py::test_blocks",
        "scenarios/test_block.py::test_after",
        cold=cold,
    )  # type: ignore[operator]
    run.expect(b"BLOCKING-NOW\r\n")  # the whole line: the ^C echo comes after it
    run.send(b"\x03")
    assert run.wait(timeout=30) == 2, run.text()
    text = ANSI.sub(b"", run.output).decode(errors="replace")
    assert "KeyboardInterrupt" in text, text
    assert re.search(r"=+ 1 passed in [\d.]+s =+", text), text
    assert daemon_runs(equiv_daemon) == before + (not cold)


def test_ctrl_c_report_same_as_cold(spawn: object) -> None:
    outputs = []
    for cold in (True, False):
        run = spawn(
            "-s",
            "scenarios/test_block.py::test_before",
            "scenarios/test_block.py::test_blocks",
            cold=cold,
        )  # type: ignore[operator]
        run.expect(b"BLOCKING-NOW\r\n")  # the whole line: the ^C echo comes after it
        run.send(b"\x03")
        assert run.wait(timeout=30) == 2, run.text()
        # Where the interrupt lands (the test's line, or inside its wait loop)
        # depends on when ^C arrives after the print, cold as well as warm.
        text, found = INTERRUPT_AT.subn("<where>: KeyboardInterrupt", normalise(run.output))
        assert found == 1, run.text()
        outputs.append(text)
    assert outputs[0] == outputs[1], same_diff(outputs[0], outputs[1])


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_ctrl_c_kills_a_run_with_default_sigint(
    equiv_daemon: Project, spawn: object, cold: bool
) -> None:
    """A run that dies of SIGINT: the client dies of it too, so a shell loop stops."""
    run = spawn("-s", "scenarios/test_block.py::test_blocks_with_default_sigint", cold=cold)  # type: ignore[operator]
    run.expect(b"DEFAULT-SIGINT-NOW\r\n")
    run.send(b"\x03")
    assert run.wait(timeout=30) == -signal.SIGINT, run.text()
    assert b"passed" not in run.output and b"KeyboardInterrupt" not in run.output, run.text()
    if not cold:
        assert _workers(equiv_daemon) == []


def _workers(equiv_daemon: Project) -> list[psutil.Process]:
    warm_pid = daemon_status(equiv_daemon)["warm_pid"]
    assert isinstance(warm_pid, int)
    return run_workers(warm_pid)


def test_second_ctrl_c_kills_the_run(equiv_daemon: Project, spawn: object) -> None:
    run = spawn("-s", "scenarios/test_block.py::test_blocks_ignoring_sigint")  # type: ignore[operator]
    at = run.expect(b"IGNORING-SIGINT-NOW")
    workers = _workers(equiv_daemon)
    assert len(workers) == 1, workers
    run.send(b"\x03")
    # The first Ctrl-C reached the test (which shrugs it off): the run goes on.
    at = run.expect(b"GOT-SIGINT", start=at)
    assert run.proc.poll() is None
    assert workers[0].is_running()
    started = time.monotonic()
    run.send(b"\x03")
    code = run.wait(timeout=15)
    assert time.monotonic() - started < 10, run.text()
    # Killed at the user's request: the client dies of SIGINT, as a shell expects
    # of a program stopped with Ctrl-C (a loop around it stops too).
    assert code == -signal.SIGINT, run.text()
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, alive
    assert daemon_status(equiv_daemon)["state"] == "ready"
