"""A standby prepared for the last run's exact command (``warm/standby_run.py``).

The same command again takes a standby that has already parsed its arguments
and ini file and loaded its plugins; it must print byte for byte what a cold
run prints (on a pipe and on a terminal, colours and ``--pdb`` included). Any
other command is forked afresh and says why; a standby whose preparation
printed is not used; file events the layer need not reload still discard it,
and the supervisor's liveness pings do not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from _pytest import config as pc

from pytest_fastcollect.warm import standby_run
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import recv_frame

from helpers import (
    DEFAULT_INI,
    STANDBY_ENV,
    Project,
    PtyRun,
    command_pytest,
    daemon_metrics,
    daemon_status,
    make_project,
    serving,
    standby_workers,
    wait_until,
)

BASE = wm.ForkOrder(
    id="a", mode="run", args=["-q", "tests"], cwd="/p", env={"A": "1"}, umask=0o22, argv0="pytest"
)


def test_only_the_same_command_fits() -> None:
    same = dataclasses.replace(BASE, id="b", stamps={"received": 1.0})
    assert standby_run.differs(BASE, same) == ""
    cases = {
        "prepared for other arguments": {"args": ["-q", "tests", "-x"]},
        "prepared for another program name": {"argv0": "py.test"},
        "prepared in another working directory": {"cwd": "/q"},
        "prepared with another umask": {"umask": 0o77},
        "prepared with other standard streams closed": {"closed_fds": [0]},
        "A differs from the standby's": {"env": {"A": "2"}},
        "B differs from the standby's": {"env": {"A": "1", "B": ""}},
        "the order is not a run": {"mode": "collect"},
    }
    for why, change in cases.items():
        other = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
        assert standby_run.differs(BASE, other) == why, change


def test_a_session_that_skips_the_pause_ends_the_standby(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the plugin's pause (the plugin not loaded), the standby never goes on to
    configure and run a session of its own: it reports and exits there."""
    ours, theirs = socket.socketpair()
    prepared = standby_run.PreparedRun(ours, None)
    called: list[object] = []
    # The guard wraps whatever is there; the monkeypatch puts pytest's back afterwards.
    monkeypatch.setattr(pc.Config, "_do_configure", called.append)

    def exit_(code: int) -> NoReturn:
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_)
    prepared._guard()
    with pytest.raises(SystemExit):
        pc.Config._do_configure("config")  # type: ignore[arg-type]
    assert called == []
    report = json.loads(recv_frame(theirs, 1 << 16)[0])
    assert report == {
        "ok": False,
        "why": "pytest went past its conftests without the plugin's pause",
    }
    prepared.taken = True  # after the hand-off: pytest's own
    pc.Config._do_configure("config")  # type: ignore[arg-type]
    assert called == ["config"]
    ours.close()
    theirs.close()


# -- through a daemon ------------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj")
    proj.write(
        {
            "pytest.ini": DEFAULT_INI + "pythonpath = .\ndaemon_log_level = DEBUG\n",
            "app/__init__.py": "",
            "app/values.py": "VALUE = 1\n",
            "tests/test_values.py": """
                from app import values

                def test_value():
                    assert values.VALUE == 1

                def test_fails():
                    x = values.VALUE
                    assert x == 2
            """,
        }
    )
    with serving(proj, "tests"):
        yield proj


def _ready(proj: Project) -> bool:
    return len(_standbys(proj)) == 1


def _standbys(proj: Project) -> list[int]:
    pid = daemon_status(proj)["warm_pid"]
    return [c.pid for c in standby_workers(pid)] if isinstance(pid, int) else []


def _served(proj: Project, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run warm once a standby waits: "prepared", "standby" or "fresh", and the output."""
    wait_until(lambda: _ready(proj), what="a standby worker")
    before = daemon_metrics(proj)
    result = proj.pytest(*args, env=env)
    after = daemon_metrics(proj)
    assert after["runs"] == before["runs"] + 1, str(result)
    assert "pytest-fastcollect:" not in result.stderr, str(result)
    if after["prepared_runs"] > before["prepared_runs"]:
        how = "prepared"
    elif after["standby_runs"] > before["standby_runs"]:
        how = "standby"
    else:
        how = "fresh"
    return how, _timeless(result.stdout + result.stderr)


def _timeless(text: str) -> str:
    return re.sub(r" in \d+\.\d+s", " in Ns", text)


def _log(proj: Project) -> str:
    return next(proj.runtime.glob("*.log")).read_text()


def test_the_same_command_again_takes_a_standby_prepared_for_it(daemon: Project) -> None:
    args = ("-rA", "tests")
    cold = daemon.cold(*args)
    assert cold.returncode == 1, str(cold)
    expected = _timeless(cold.stdout + cold.stderr)
    # The first run after the start has no command to predict: get_config only.
    assert _served(daemon, *args) == ("standby", expected)
    for _ in range(2):
        assert _served(daemon, *args) == ("prepared", expected)
    assert "(prepared for this command)" in _log(daemon)
    # Another command is forked afresh, and the next standby is prepared for it.
    assert _served(daemon, "-q", "tests")[0] == "fresh"
    assert "prepared for other arguments" in _log(daemon)
    assert _served(daemon, "-q", "tests")[0] == "prepared"
    assert _served(daemon, "-q", "tests", env={"EXTRA_VAR": "1"})[0] == "fresh"
    assert "EXTRA_VAR differs from the standby's" in _log(daemon)
    m = daemon_metrics(daemon)
    assert (m["runs"], m["standby_runs"], m["prepared_runs"]) == (6, 4, 3), m
    status = daemon.pytest("--daemon-status").stdout
    assert "; runs 6 (4 from a standby worker, 3 prepared for the command), " in status, status


def test_a_standby_whose_preparation_printed_is_not_used(daemon: Project) -> None:
    # pluggy's tracing writes to stderr from get_config on: a run's output.
    env = {"PYTEST_DEBUG": "1"}
    assert _served(daemon, "-q", "tests", env=env)[0] == "fresh"  # another environment
    assert _served(daemon, "-q", "tests", env=env)[0] == "fresh"
    assert "preparing printed" in _log(daemon)


def test_a_file_nothing_loaded_discards_the_standby(daemon: Project) -> None:
    _served(daemon, "-q", "tests")
    wait_until(lambda: _ready(daemon), what="a standby worker")
    before = set(_standbys(daemon))
    (daemon.root / "app" / "unused.py").write_text("UNUSED = 1\n")
    wait_until(
        lambda: _ready(daemon) and before.isdisjoint(_standbys(daemon)),
        what="a standby forked after the new file",
    )
    how, out = _served(daemon, "-q", "tests")
    assert how == "prepared" and "1 failed, 1 passed" in out, out


def test_liveness_pings_keep_the_standby(daemon: Project) -> None:
    _served(daemon, "-q", "tests")
    wait_until(lambda: _ready(daemon), what="a standby worker")
    before = _standbys(daemon)
    # The supervisor pings an idle warm process every 2 s (supervisor/channel.py).
    time.sleep(4.5)
    assert _standbys(daemon) == before


def test_a_terminal_run_prepared_for_prints_what_cold_prints(daemon: Project) -> None:
    plain = ("NO_COLOR", "FORCE_COLOR", "PY_COLORS", "PYTHONBREAKPOINT", "COLUMNS")
    env = {k: v for k, v in daemon.env.items() if k not in plain}
    env["TERM"] = "xterm-256color"
    outputs = []
    for cold in (True, False, False, False):
        if not cold:
            wait_until(lambda: _ready(daemon), what="a standby worker")
        before = daemon_metrics(daemon)["prepared_runs"]
        cmd = [*command_pytest(), *(["--no-daemon"] if cold else []), "--pdb", "tests"]
        run = PtyRun(cmd, str(daemon.root), env)
        try:
            run.expect(b"(Pdb) ")
            run.send(b"p x\n")
            run.expect(b"(Pdb) ", start=run.expect(b"p x"))
            run.send(b"c\n")
            assert run.wait() == 1, run.text()
        finally:
            run.close()
        prepared = daemon_metrics(daemon)["prepared_runs"] - before
        outputs.append((prepared, _timeless(run.output.decode().replace("\r\n", "\n"))))
    assert [p for p, _ in outputs] == [0, 0, 1, 1]
    assert b"\x1b[" in outputs[0][1].encode(), outputs[0][1]
    for _, out in outputs[1:]:
        assert out == outputs[0][1]


FDS_CONFTEST = """
import os

def pytest_configure(config):
    # The descriptors pytest's capturing opened, by number: a standby that kept
    # one of its own open would shift them.
    print("FDS", [fd for fd in range(3, 10) if _open(fd)])

def _open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
"""


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_a_prepared_run_has_the_descriptors_a_cold_run_has(tmp_path: Path, mode: str) -> None:
    proj = make_project(tmp_path / "proj")
    proj.env[STANDBY_ENV] = mode
    proj.write(
        {
            "pytest.ini": DEFAULT_INI + "daemon_log_level = DEBUG\n",
            "tests/conftest.py": FDS_CONFTEST,
            "tests/test_one.py": "def test_one():\n    pass\n",
        }
    )
    with serving(proj, "tests"):
        cold = proj.cold("-q", "tests")
        fds = [ln for ln in cold.stdout.splitlines() if ln.startswith("FDS")]
        assert fds and fds[0] != "FDS []", str(cold)
        for _ in range(3):
            how, out = _served(proj, "-q", "tests")
            assert [ln for ln in out.splitlines() if ln.startswith("FDS")] == fds, out
        assert how == "prepared"


def test_a_client_without_stdin_gets_a_prepared_run_without_it(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "proj")
    proj.write(
        {
            "pytest.ini": DEFAULT_INI + "daemon_log_level = DEBUG\n",
            "tests/conftest.py": FDS_CONFTEST
            + "\nimport sys\n\ndef pytest_sessionstart(session):\n"
            + "    print('STDIN', sys.stdin is None, _open(0))\n",
            "tests/test_one.py": "def test_one():\n    pass\n",
        }
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # The shell starts pytest with fd 0 closed (``<&-``).
        cmd = ["sh", "-c", 'exec "$@" <&-', "sh", *command_pytest(), *args]
        return subprocess.run(
            cmd, cwd=proj.root, env=proj.env, capture_output=True, text=True, timeout=120
        )

    def shown(out: str) -> list[str]:
        return [ln for ln in out.splitlines() if ln.startswith(("FDS", "STDIN"))]

    with serving(proj, "tests"):
        # -s: nothing captured, so fd 0 stays as the client left it (closed).
        cold = run("--no-daemon", "-q", "-s", "tests")
        assert cold.returncode == 0 and "STDIN True" in cold.stdout, cold.stdout
        for _ in range(3):
            wait_until(lambda: _ready(proj), what="a standby worker")
            before = daemon_metrics(proj)
            warm = run("-q", "-s", "tests")
            assert warm.returncode == 0, warm.stdout + warm.stderr
            assert shown(warm.stdout) == shown(cold.stdout), warm.stdout
        after = daemon_metrics(proj)
        assert after["runs"] == before["runs"] + 1
        assert after["prepared_runs"] == before["prepared_runs"] + 1
