"""The standby worker: prepared exactly as a fresh start would be, used only when it fits.

The first half checks ``warm/standby.py`` in this process: the config a
standby prepares, once handed to a run, is field by field the one
``get_config`` builds for that run; a run that does not fit gets a fresh one;
what the preparation read of the environment is recorded. The second half
drives real daemons: which runs take the standby (``standby_runs`` in status,
a DEBUG log line), which are forked afresh and why, and that a change to the
warm process discards the standby it had prepared before the change.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest import config as pc

from pytest_fastcollect.warm import standby
from pytest_fastcollect.wire import warm as wm

from helpers import (
    DEFAULT_INI,
    STANDBY_ENV,
    Project,
    daemon_metrics,
    daemon_status,
    make_project,
    standby_workers,
    wait_until,
)

HAS_PROG = hasattr(pc, "_get_prog_name")


def _prog() -> str | None:
    return "pytest" if HAS_PROG else None


def _name(name: str | None) -> str | None:
    # The plugin manager registers itself under str(id(self)).
    return "ID" if name is not None and name.isdigit() else name


def snapshot(config: Any) -> dict[str, object]:
    """What get_config leaves behind: plugins, blocks, hook order, options, ini."""
    pm = config.pluginmanager
    parser = config._parser
    groups = [parser._anonymous, *parser._groups]
    hooks = {}
    for name in sorted(vars(pm.hook)):
        caller = getattr(pm.hook, name)
        if hasattr(caller, "get_hookimpls"):
            hooks[name] = [_name(impl.plugin_name) for impl in caller.get_hookimpls()]
    return {
        "plugins": [_name(name) for name, _ in pm.list_name_plugin()],
        "blocked": sorted(n for n in list(pm._name2plugin) if pm.is_blocked(n)),
        "hooks": hooks,
        "options": [
            (
                group.name,
                tuple(opt.names()),
                opt.dest,
                re.sub(r"0x[0-9a-f]+", "", repr(opt.attrs().get("default"))),
            )
            for group in groups
            for opt in group.options
        ],
        "ini": {k: re.sub(r"0x[0-9a-f]+", "", repr(v)) for k, v in parser._inidict.items()},
        "option": sorted(vars(config.option)),
        "invocation": (
            config.invocation_params.args,
            config.invocation_params.plugins,
            config.invocation_params.dir,
        ),
        "prog": getattr(parser, "prog", None),
    }


@pytest.fixture
def restore_get_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    original = pc.get_config
    monkeypatch.setattr(sys, "argv", ["pytest"])  # as the worker sets it for the run
    try:
        yield
    finally:
        pc.get_config = original


def key_of(args: list[str]) -> standby.Key:
    order = wm.ForkOrder(id="t", mode="run", args=args, cwd="/", env={}, umask=0o22)
    key = standby.run_key(order)
    assert key is not None
    return key


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-q", "tests/test_x.py::test_y", "-k", "a or b"],
        ["-p", "no:cacheprovider", "-x"],
        ["-pno:warnings", "-p", " no:doctest", "-p", "xdist", "-rA"],
    ],
    ids=["none", "plain", "block", "blocks-and-a-plugin"],
)
def test_prepared_config_equals_a_fresh_one(
    restore_get_config: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    key = key_of(args)
    prepared = standby.Prepared(key)
    prepared.prepare()
    assert prepared.report()["ok"], prepared.report()
    assert "PYTEST_DEBUG" in prepared.env  # what pytest reads is recorded
    original = pc.get_config
    prepared.install()
    monkeypatch.chdir(tmp_path)  # the run's directory, not the one it was prepared in
    got = standby._call(pc.get_config, args, None, _prog())
    assert got is prepared.config
    assert pc.get_config is original, "the prepared config is handed out once"
    fresh = standby._call(pc.get_config, args, None, _prog())
    assert fresh is not got
    assert got.invocation_params.dir == tmp_path
    assert snapshot(got) == snapshot(fresh)


def test_a_run_that_does_not_fit_gets_a_fresh_config(restore_get_config: None) -> None:
    prepared = standby.Prepared(key_of([]))
    prepared.prepare()
    prepared.install()
    args = ["-p", "no:cacheprovider"]
    got = standby._call(pc.get_config, args, None, _prog())
    assert got is not prepared.config
    assert got.pluginmanager.is_blocked("cacheprovider")


def test_another_program_gets_a_fresh_config(
    restore_get_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = standby.Prepared(key_of([]))
    prepared.prepare()
    prepared.install()
    monkeypatch.setattr(sys, "argv", ["/venv/lib/python3/site-packages/pytest/__main__.py"])
    # As pytest's console entry calls it: the program name from sys.argv.
    prog = pc._get_prog_name(sys.argv) if HAS_PROG else None
    got = standby._call(pc.get_config, [], None, prog)
    assert got is not prepared.config


def test_an_environment_that_differs_gets_a_fresh_config(
    restore_get_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    prepared = standby.Prepared(key_of([]))
    prepared.prepare()
    prepared.install()
    monkeypatch.setenv("PYTEST_DEBUG", "")  # read by PytestPluginManager: set but empty
    got = standby._call(pc.get_config, [], None, _prog())
    assert got is not prepared.config


def test_a_preparation_that_warns_is_not_used(
    restore_get_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = pc.get_config

    def warning_get_config(*args: Any, **kw: Any) -> Any:
        import warnings

        warnings.warn("from a plugin's pytest_addoption", UserWarning, stacklevel=1)
        return original(*args, **kw)

    monkeypatch.setattr(pc, "get_config", warning_get_config)
    prepared = standby.Prepared(key_of([]))
    prepared.prepare()
    assert not prepared.report()["ok"]
    # Recorded, or raised where warnings are errors (as in this suite): never used.
    assert re.search("warned|raised UserWarning", str(prepared.report()["why"]))


def test_no_standby_is_forked_beside_a_python_thread() -> None:
    """threads.fork_safety comes first: with a Python thread running, nothing is forked."""
    slot = standby.StandbySlot("auto", [])
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        assert slot.spawn(object()) is None  # type: ignore[arg-type]
    finally:
        stop.set()
        thread.join()
    assert slot.current is None
    assert "thread" in slot.unsafe


def test_standbys_that_keep_failing_are_not_forked_again_until_the_layer_changes() -> None:
    slot = standby.StandbySlot("auto", [])
    slot.broken = standby.MAX_BROKEN
    assert slot.spawn(object()) is None  # type: ignore[arg-type]
    assert "could not prepare" in slot.unsafe
    slot.changed()
    assert slot.broken == 0


class _Slot:
    """A StandbySlot that records what the layer's loop asks of it."""

    enabled = True
    current = None

    def __init__(self) -> None:
        self.spawned = 0

    def spawn(self, _layer: object) -> None:
        self.spawned += 1

    def fileno_waiting(self) -> None:
        return None


def test_a_standby_is_forked_beside_a_scan_but_not_beside_a_trial_or_run(
    tmp_path: Path,
) -> None:
    """A registrant scan reads the heap in a child and leaves the layer as it is: the
    next run's standby prepares meanwhile (a run after a project edit waits for the
    scan). A trial may be followed by imports into the layer; a run is a run."""
    import socket

    from pytest_fastcollect.warm import serving

    ours, theirs = socket.socketpair()
    loop = serving.OrderLoop(ours, str(tmp_path), str(tmp_path / "cache"))
    try:
        slot = _Slot()
        loop.standby = slot  # type: ignore[assignment]
        loop.jobs[1] = lambda: None
        loop.quiet_jobs.add(1)  # a scan, as ZygoteLayer.scan registers it
        loop._standby_tick()
        assert slot.spawned == 1
        loop.jobs[2] = lambda: None  # a trial
        loop._standby_tick()
        assert slot.spawned == 1
        del loop.jobs[2]
        loop.children[3] = "run"
        loop._standby_tick()
        assert slot.spawned == 1
    finally:
        for fd in (loop.wake_r, loop.wake_w):
            os.close(fd)
        ours.close()
        theirs.close()
    assert not serving._stales_standby(wm.ScanOrder(id="s"))
    assert not serving._stales_standby(wm.PingOrder(id="p"))
    assert serving._stales_standby(wm.PingOrder(id="p", changed=True))
    assert serving._stales_standby(wm.ReloadOrder(id="r", modules=["m"], reimport=[]))


def test_run_key_reads_blocks_as_pytest_does() -> None:
    assert key_of([]).blocks == ()
    assert key_of([]).argv0 == ("" if HAS_PROG else "pytest")
    assert key_of(["-p", "no:a", "-pno:b", "-p", " no:c ", "-p", "d"]).blocks == (
        "no:a",
        "no:b",
        "no:c",
    )
    # "-p" as another option's value still counts, as in pytest's own scan.
    assert key_of(["-k", "-p", "no:x"]).blocks == ("no:x",)
    collect = wm.ForkOrder(id="t", mode="collect", args=[], cwd="/", env={}, umask=0)
    assert standby.run_key(collect) is None


# -- through a daemon ------------------------------------------------------------------------


def _project(tmp_path: Path, mode: str) -> Project:
    proj = make_project(tmp_path / "proj")
    proj.env[STANDBY_ENV] = mode
    proj.write(
        {
            "pytest.ini": DEFAULT_INI + "pythonpath = .\ndaemon_log_level = DEBUG\n",
            "app/__init__.py": "",
            "app/values.py": "VALUE = 1\n",
            "tests/test_values.py": """
                from app import values

                def test_value():
                    assert values.VALUE == 1

                def test_other():
                    pass
            """,
        }
    )
    return proj


@pytest.fixture
def daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Project]:
    proj = _project(tmp_path, getattr(request, "param", "auto"))
    try:
        started = proj.start("tests")
        assert started.returncode == 0, str(started)
        yield proj
    finally:
        proj.cleanup()


def _served(proj: Project, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run warm; how it was forked ("standby" or "fresh") and its output."""
    before = daemon_metrics(proj)
    result = proj.pytest(*args, env=env)
    after = daemon_metrics(proj)
    assert after["runs"] == before["runs"] + 1, str(result)
    assert "pytest-fastcollect:" not in result.stderr, str(result)
    took = after["standby_runs"] - before["standby_runs"]
    fresh = after["fresh_runs"] - before["fresh_runs"]
    assert took + fresh == 1
    return ("standby" if took else "fresh"), result.stdout


def _standby_ready(proj: Project) -> bool:
    """A standby waits: the warm process has a child that is not a run."""
    warm_pid = _warm_pid(proj)
    return bool(warm_pid) and len(standby_workers(warm_pid)) == 1


def _warm_pid(proj: Project) -> int:
    pid = daemon_status(proj)["warm_pid"]
    return int(pid) if isinstance(pid, int) else 0


def test_runs_take_the_standby_and_print_what_cold_prints(daemon: Project) -> None:
    cold = daemon.cold("-q", "tests")
    assert cold.returncode == 0 and "2 passed" in cold.stdout, str(cold)
    paths = []
    for _ in range(3):
        wait_until(lambda: _standby_ready(daemon), what="a standby worker")
        how, out = _served(daemon, "-q", "tests")
        paths.append(how)
        assert re.sub(r"in \d+\.\d+s", "", out) == re.sub(r"in \d+\.\d+s", "", cold.stdout)
    assert paths == ["standby"] * 3
    log = next(daemon.runtime.glob("*.log")).read_text()
    assert "took the standby worker" in log


def test_a_run_with_other_blocks_is_forked_afresh_then_predicted(daemon: Project) -> None:
    wait_until(lambda: _standby_ready(daemon), what="a standby worker")
    assert _served(daemon, "-q", "-p", "no:cacheprovider")[0] == "fresh"
    log = next(daemon.runtime.glob("*.log")).read_text()
    assert "the run has -p no:cacheprovider" in log
    # The next standby is prepared like the last run.
    wait_until(lambda: _standby_ready(daemon), what="a standby worker")
    assert _served(daemon, "-q", "-p", "no:cacheprovider")[0] == "standby"


def test_an_environment_pytest_reads_is_keyed(daemon: Project) -> None:
    wait_until(lambda: _standby_ready(daemon), what="a standby worker")
    assert _served(daemon, "-q", env={"PYTEST_DEBUG": ""})[0] == "fresh"
    log = next(daemon.runtime.glob("*.log")).read_text()
    assert "PYTEST_DEBUG differs from the standby's" in log


def test_a_reload_discards_the_standby_prepared_before_it(daemon: Project) -> None:
    wait_until(lambda: _standby_ready(daemon), what="a standby worker")
    before = set(_standby_children(daemon))
    (daemon.root / "app" / "values.py").write_text("VALUE = 2\n")
    result = daemon.pytest("-q", "tests")
    assert result.returncode == 1 and "assert 2 == 1" in result.stdout, str(result)
    # The run after the reload came from a standby forked after it, never the old one.
    wait_until(lambda: _standby_ready(daemon), what="a standby worker")
    assert set(_standby_children(daemon)).isdisjoint(before)
    how, out = _served(daemon, "-q", "tests")
    assert how == "standby" and "assert 2 == 1" in out


def _standby_children(proj: Project) -> list[int]:
    return [c.pid for c in standby_workers(_warm_pid(proj))]


@pytest.mark.parametrize("daemon", ["off"], indirect=True)
def test_off_forks_every_run_afresh(daemon: Project) -> None:
    for _ in range(2):
        assert _served(daemon, "-q", "tests")[0] == "fresh"
    assert _standby_children(daemon) == []


@pytest.mark.parametrize("daemon", ["always"], indirect=True)
def test_always_sends_every_run_through_a_standby(daemon: Project) -> None:
    for args in (("-q",), ("-q", "-p", "no:cacheprovider"), ("-q",)):
        assert _served(daemon, *args)[0] == "standby"
    assert _served(daemon, "-q", env={"COLUMNS": "61"})[0] == "standby"
