"""Parallel runs (pytest-xdist) through the daemon equal cold parallel runs.

One daemon serves a copy of examples/parallel for the whole module, with a
few files added: every kind of outcome, a file to stop early in, crashing
tests and a probe that tells a worker forked from the warm process (its test
module was imported before the worker existed) from a spawned one. Each case
runs cold (``--no-daemon``) and then warm from an empty ``.pytest_cache``;
xdist reports in whatever order its workers finish, so the comparison is of
sets: the outcome of every node id (``-rA``), the exit code, the counts in
the summary line and the cache files. A warm case must have been served by
the daemon, with workers forked from it.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from helpers import (
    EXAMPLES,
    Project,
    PtyRun,
    Result,
    command_pytest,
    daemon_runs,
    daemon_status,
    log_text,
    make_project,
    standby_workers,
    wait_until,
)
from test_interactive import ANSI

NOTICE = "pytest-fastcollect:"
OUTCOME_LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")
_probe_logs = itertools.count()
SUMMARY_LINE = re.compile(r"^=+ (.*\d+ (?:passed|failed|error|errors|skipped).*) in [\d.]+s")

EXTRA_FILES = {
    "tests/test_outcomes.py": """
        import pytest


        def test_passes():
            pass


        def test_fails():
            assert 1 == 2, "expected failure"


        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass


        @pytest.mark.xfail(reason="known bug")
        def test_xfail():
            assert False


        @pytest.mark.xfail(reason="fixed meanwhile")
        def test_xpass():
            pass


        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")


        def test_error(broken):
            pass
    """,
    "stops/test_stops.py": """
        def test_1_passes():
            pass


        def test_2_fails():
            assert False


        def test_3_passes():
            pass


        def test_4_fails():
            assert False


        def test_5_passes():
            pass


        def test_6_fails():
            assert False
    """,
    "crashers/test_crash.py": """
        import faulthandler
        import os


        def test_before():
            pass


        def test_exits():
            os._exit(3)


        def test_segfaults():
            faulthandler.disable()  # its traceback would differ between any two runs
            faulthandler._sigsegv()


        def test_after():
            pass
    """,
    "blockers/test_block.py": """
        import sys
        import time


        def block(worker_id):
            # Straight to the terminal with -s: a worker's stderr is the controller's.
            sys.stderr.write(f"BLOCKING-{worker_id}\\n")
            sys.stderr.flush()
            # Short waits: a ^C landing just before one long wait starts
            # would only be acted on when it returns.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.05)


        def test_blocks_a(worker_id):
            block(worker_id)


        def test_blocks_b(worker_id):
            block(worker_id)
    """,
    "lazy/test_lazy.py": """
        import json
        import os
        import sys


        def test_imports_a_library_module_lazily(worker_id):
            already = "colorsys" in sys.modules
            import colorsys  # noqa: F401

            with open(os.environ["PARALLEL_LAZY_LOG"], "a") as fh:
                fh.write(json.dumps({"worker": worker_id, "already": already}) + "\\n")
    """,
    "escapers/test_escape.py": """
        import ctypes
        import os
        import signal
        import sys
        import threading


        def test_escapes(worker_id):
            # Out of the run's process group, no parent-death signal, deaf to
            # the interrupt execnet sends itself when its controller is gone.
            ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)
            os.setsid()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            sys.stderr.write(f"ESCAPED-{worker_id}\\n")
            sys.stderr.flush()
            threading.Event().wait(120)
    """,
    "tests/test_probe.py": """
        import json
        import os
        import sys

        # Imported in the warm process (before any worker existed) when warm;
        # in the worker itself when it was spawned.
        IMPORTED_IN = os.getpid()


        def test_probe(worker_id, pytestconfig):
            # The worker's config: the one its fork server prepared ahead?
            server = sys.modules.get("pytest_fastcollect.warm.fork_server")
            ahead = getattr(getattr(server, "worker_state", None), "prepared", None)
            prepared = ahead is not None and ahead.config is pytestconfig
            log = os.environ.get("PARALLEL_PROBE_LOG")
            if log:
                with open(log, "a") as fh:
                    fh.write(json.dumps({"worker": worker_id, "pid": os.getpid(),
                                         "forked": IMPORTED_IN != os.getpid(),
                                         "prepared": prepared,
                                         "cacheprovider": pytestconfig.pluginmanager.has_plugin(
                                             "cacheprovider")}) + "\\n")
    """,
}


def parallel_copy(dest: Path) -> Project:
    shutil.copytree(
        EXAMPLES / "parallel",
        dest,
        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc"),
    )
    proj = make_project(dest)
    proj.write(EXTRA_FILES)
    # pytest-asyncio (in the test environment) warns at start-up without this.
    ini = dest / "pytest.ini"
    ini.write_text(ini.read_text() + "asyncio_default_fixture_loop_scope = function\n")
    proj.env["PARALLEL_BODY_SECONDS"] = "0.01"
    return proj


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One copy of examples/parallel (plus EXTRA_FILES) with a daemon warmed on it."""
    proj = parallel_copy(tmp_path_factory.mktemp("parallel") / "proj")
    try:
        started = proj.start("tests", "stops", "crashers")
        assert started.returncode == 0, str(started)
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


# -- comparing runs ----------------------------------------------------------------------


def outcomes(stdout: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        m = OUTCOME_LINE.match(line)
        if m:
            assert m.group(2) not in found, f"{m.group(2)} reported twice:\n{stdout}"
            found[m.group(2)] = m.group(1)
    return found


def summary(stdout: str) -> str:
    """The counts of the last summary line (``2 failed, 50 passed, 1 skipped``)."""
    for line in reversed(stdout.splitlines()):
        m = SUMMARY_LINE.match(line)
        if m:
            return m.group(1)
    return ""


def cache_state(root: Path) -> dict[str, object]:
    base = root / ".pytest_cache" / "v"
    if not base.is_dir():
        return {}
    return {
        str(path.relative_to(base)): json.loads(path.read_text())
        for path in sorted(base.rglob("*"))
        if path.is_file()
    }


@dataclass
class Run:
    result: Result
    served: bool
    probes: list[dict[str, object]] = field(default_factory=list)
    cache: dict[str, object] = field(default_factory=dict)


def run(proj: Project, args: tuple[str, ...], warm: bool, tmp_path: Path) -> Run:
    probe_log = tmp_path / f"probe-{next(_probe_logs)}"
    before = daemon_runs(proj)
    env = {"PARALLEL_PROBE_LOG": str(probe_log)}
    result = proj.pytest(*args, env=env) if warm else proj.cold(*args, env=env)
    served = daemon_runs(proj) == before + 1
    probes = (
        [json.loads(line) for line in probe_log.read_text().splitlines()]
        if probe_log.exists()
        else []
    )
    return Run(result, served, probes, cache_state(proj.root))


def assert_same(cold: Run, warm: Run, where: str = "") -> None:
    both = f"{where}\n--- cold ---\n{cold.result}\n--- warm ---\n{warm.result}"
    assert not cold.served and NOTICE not in cold.result.stderr, both
    assert warm.served, f"the daemon did not serve the run: {both}"
    assert NOTICE not in warm.result.stderr, both
    assert warm.result.returncode == cold.result.returncode, both
    assert outcomes(warm.result.stdout) == outcomes(cold.result.stdout), both
    assert summary(warm.result.stdout) == summary(cold.result.stdout), both
    assert warm.cache == cold.cache, both
    # The probe ran: cold in spawned workers, warm in workers forked from the warm process.
    assert [p["forked"] for p in cold.probes] == [False] * len(cold.probes), both
    assert [p["forked"] for p in warm.probes] == [True] * len(warm.probes), both
    # ... whose config pytest's get_config built once, ahead, in the fork server.
    assert [p["prepared"] for p in cold.probes] == [False] * len(cold.probes), both
    assert [p["prepared"] for p in warm.probes] == [True] * len(warm.probes), both
    assert len(warm.probes) == len(cold.probes), both


def clear_cache(root: Path) -> None:
    shutil.rmtree(root / ".pytest_cache", ignore_errors=True)


def compare(proj: Project, tmp_path: Path, *steps: tuple[str, ...]) -> list[tuple[Run, Run]]:
    """Each sequence of steps cold from an empty cache, then warm from an empty cache."""
    runs: dict[bool, list[Run]] = {}
    for warm in (False, True):
        clear_cache(proj.root)
        runs[warm] = [run(proj, ("-rA", *args), warm, tmp_path) for args in steps]
    pairs = list(zip(runs[False], runs[True], strict=True))
    for index, (cold, warm) in enumerate(pairs):
        assert_same(cold, warm, f"step {index}: {steps[index]}")
    return pairs


# -- the cases -----------------------------------------------------------------------------

DIST_MODES = ["load", "loadscope", "loadfile", "loadgroup", "worksteal", "no"]


@pytest.mark.parametrize("dist", DIST_MODES)
def test_dist_modes(parallel: Project, tmp_path: Path, dist: str) -> None:
    ((cold, _warm),) = compare(parallel, tmp_path, ("-n", "2", f"--dist={dist}"))
    found = outcomes(cold.result.stdout)
    # The comparison means something: every kind of outcome, every test.
    assert set(found.values()) == {"PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"}
    assert len(found) == 59, cold.result
    assert cold.result.returncode == 1
    assert {p["worker"] for p in cold.probes} <= {"gw0", "gw1"} and len(cold.probes) == 1


def test_n_auto(parallel: Project, tmp_path: Path) -> None:
    compare(parallel, tmp_path, ("-n", "auto"))


@pytest.mark.parametrize(
    "args,expected",
    [
        # One scope (the file) on one worker, in order: it stops at the first failure.
        (("-x", "--dist=loadfile"), "1 failed, 1 passed"),
        (("--maxfail=2", "--dist=loadfile"), "2 failed, 2 passed"),
        # Two tests to each worker at first; each stops at its own first failure.
        (("-x",), "2 failed, 2 passed"),
    ],
    ids=["x-loadfile", "maxfail-loadfile", "x-load"],
)
def test_stopping_early(
    parallel: Project, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    ((cold, warm),) = compare(parallel, tmp_path, ("-n", "2", *args, "stops/test_stops.py"))
    assert summary(cold.result.stdout) == expected, cold.result
    assert cold.result.returncode == 2  # xdist stops the session as interrupted
    assert "Interrupted: stopping after" in warm.result.stdout, warm.result


def test_a_blocked_plugin_stays_blocked_in_the_workers(parallel: Project, tmp_path: Path) -> None:
    """The workers' config, prepared ahead with the run's ``-p no:`` blocks, equals a fresh one."""
    args = ("-n", "2", "-p", "no:cacheprovider", "-p", "no:warnings", "tests/test_probe.py")
    ((cold, warm),) = compare(parallel, tmp_path, args)
    assert cold.cache == {} and summary(cold.result.stdout) == "1 passed", cold.result
    assert [p["cacheprovider"] for p in cold.probes] == [False], cold.probes
    assert [p["cacheprovider"] for p in warm.probes] == [False], warm.probes


def test_last_failed_after_a_parallel_run(parallel: Project, tmp_path: Path) -> None:
    pairs = compare(
        parallel,
        tmp_path,
        ("-n", "2"),
        ("--lf", "-n", "2"),
        ("--lf",),
        ("--ff", "-n", "2", "tests/test_outcomes.py"),
    )
    cold_lf = pairs[1][0]
    assert outcomes(cold_lf.result.stdout) == {
        "tests/test_outcomes.py::test_fails": "FAILED",
        "tests/test_outcomes.py::test_error": "ERROR",
    }, cold_lf.result
    assert "cache/lastfailed" in cold_lf.cache


CRASHED = re.compile(r"worker 'gw\d+' crashed while running '([^']+)'$", re.M)


def test_crashing_workers_are_replaced(parallel: Project, tmp_path: Path) -> None:
    ((cold, warm),) = compare(parallel, tmp_path, ("-n", "2", "crashers/test_crash.py"))
    for r in (cold, warm):
        text = r.result.output
        assert set(CRASHED.findall(text)) == {
            "crashers/test_crash.py::test_exits",
            "crashers/test_crash.py::test_segfaults",
        }, r.result
        assert len(re.findall(r"replacing crashed worker gw\d+", text)) == 2, r.result
    assert outcomes(warm.result.stdout) == {
        "crashers/test_crash.py::test_before": "PASSED",
        "crashers/test_crash.py::test_exits": "FAILED",
        "crashers/test_crash.py::test_segfaults": "FAILED",
        "crashers/test_crash.py::test_after": "PASSED",
    }
    # The replacements came from the fork server too: two workers, then two more.
    forked = re.findall(r"Run \[\w+\] forked (\d+) xdist workers", log_text(parallel))
    assert forked[-1:] == ["4"], forked


def test_crash_with_restarts_disabled(parallel: Project, tmp_path: Path) -> None:
    """--max-worker-restart=0: the run stops as xdist stops it (which tests ran
    besides depends on timing, cold as warm)."""
    args = ("-rA", "-n", "2", "--max-worker-restart=0", "crashers/test_crash.py")
    cold = run(parallel, args, False, tmp_path)
    warm = run(parallel, args, True, tmp_path)
    assert warm.served and NOTICE not in warm.result.stderr, warm.result
    assert warm.result.returncode == cold.result.returncode == 1, f"{cold.result}\n{warm.result}"
    for r in (cold, warm):
        assert re.search(
            r"xdist: worker gw\d+ crashed and worker restarting disabled", r.result.stdout
        ), r.result
        assert "replacing crashed worker" not in r.result.output, r.result


def test_session_fixtures_once_per_worker(parallel: Project, tmp_path: Path) -> None:
    setups: dict[bool, list[tuple[str, int]]] = {}
    for warm in (False, True):
        log = tmp_path / f"setups-{warm}"
        env = {"PARALLEL_SETUP_LOG": str(log)}
        before = daemon_runs(parallel)
        args = ("-n", "2", "tests")
        result = parallel.pytest(*args, env=env) if warm else parallel.cold(*args, env=env)
        assert result.returncode == 1, str(result)
        assert daemon_runs(parallel) == before + warm
        setups[warm] = [
            (w, int(pid)) for w, pid in (ln.split() for ln in log.read_text().splitlines())
        ]
    for warm, found in setups.items():
        assert sorted(w for w, _ in found) == ["gw0", "gw1"], (warm, found)
        assert len({pid for _, pid in found}) == 2, (warm, found)


def test_without_xdist_n_is_an_unknown_option(parallel: Project) -> None:
    args = ("-p", "no:xdist", "-n", "2", "tests")
    cold = parallel.cold(*args)
    before = daemon_runs(parallel)
    warm = parallel.pytest(*args)
    assert daemon_runs(parallel) == before + 1, str(warm)
    assert warm.returncode == cold.returncode == 4, f"{cold}\n{warm}"
    assert "unrecognized arguments: -n" in cold.stderr
    assert warm.stderr == cold.stderr
    assert warm.stdout == cold.stdout


# -- interrupting and killing a parallel run (through a pseudo-terminal) -------------------


@pytest.fixture
def blocking(tmp_path: Path) -> Iterator[Project]:
    """A daemon of its own that forks nothing but runs: no learned-import trials."""
    proj = parallel_copy(tmp_path / "proj")
    ini = proj.root / "pytest.ini"
    ini.write_text(ini.read_text() + "daemon_learn_imports = false\n")
    try:
        started = proj.start("tests", "blockers", "escapers")
        assert started.returncode == 0, str(started)
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


def pty_env(proj: Project) -> dict[str, str]:
    env = {k: v for k, v in proj.env.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    return env


def start_blocked(proj: Project, cold: bool = False) -> PtyRun:
    cmd = [*command_pytest(), *(["--no-daemon"] if cold else []), "-s", "-n", "2", "blockers"]
    run = PtyRun(cmd, str(proj.root), pty_env(proj))
    run.expect(b"BLOCKING-gw0\r\n")
    run.expect(b"BLOCKING-gw1\r\n")
    return run


def run_processes(proj: Project) -> dict[str, psutil.Process]:
    """The running run's processes by role, as --daemon-status shows them."""
    procs = daemon_status(proj)["processes"]
    assert isinstance(procs, list)
    return {
        p["role"]: psutil.Process(p["pid"])
        for p in procs
        if p["role"] == "run" or p["role"].startswith("xdist-")
    }


def dead(proc: psutil.Process) -> bool:
    """Exited: gone, or a zombie its new parent (init) has not reaped yet."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_nothing_left(
    proj: Project, during: dict[str, psutil.Process], timeout: float = 15
) -> None:
    """No process of the run is left: none of those seen during it, nothing under the warm process."""
    wait_until(
        lambda: all(dead(p) for p in during.values()),
        timeout=timeout,
        what=f"the run's processes to exit: {during}",
    )
    warm_pid = daemon_status(proj)["warm_pid"]
    assert isinstance(warm_pid, int)
    warm = psutil.Process(warm_pid)

    def left() -> list[psutil.Process]:
        # The standby worker prepared for the next run is not the run's.
        standby = {p.pid for p in standby_workers(warm_pid)}
        return [c for c in warm.children(recursive=True) if c.pid not in standby and not dead(c)]

    wait_until(lambda: not left(), timeout=timeout, what="no process under the warm process")
    health = json.loads(proj.pytest("--daemon-health", "--daemon-json").stdout)
    assert health["checks"]["leaked_workers"]["value"] == 0, health


def test_ctrl_c_stops_every_worker(blocking: Project) -> None:
    codes = {}
    for cold in (True, False):
        run = start_blocked(blocking, cold=cold)
        try:
            during = {} if cold else run_processes(blocking)
            if not cold:
                assert set(during) == {"run", "xdist-fork", "xdist-gw0", "xdist-gw1"}, during
            run.send(b"\x03")
            codes[cold] = run.wait(timeout=30)
            text = ANSI.sub(b"", run.output).decode(errors="replace")
            assert "KeyboardInterrupt" in text, text
            assert re.search(r"no tests ran in [\d.]+s", text), text
            assert NOTICE not in text, text
            if not cold:
                assert_nothing_left(blocking, during)
        finally:
            run.close()
    assert codes == {True: 2, False: 2}


def test_killed_client_takes_its_workers(blocking: Project) -> None:
    run = start_blocked(blocking)
    try:
        during = run_processes(blocking)
        assert set(during) == {"run", "xdist-fork", "xdist-gw0", "xdist-gw1"}, during
        run.proc.kill()  # the pytest client itself (the pty helper exec'd into it)
        run.proc.wait(10)
        assert_nothing_left(blocking, during)
        assert daemon_status(blocking)["state"] == "ready"
    finally:
        run.close()


def test_run_worker_killed_alone_takes_its_workers(blocking: Project) -> None:
    """The run worker dies by itself (the OOM killer, say), not its process group:
    the fork server dies with it (parent-death signal), and the workers with the fork server."""
    run = start_blocked(blocking)
    try:
        during = run_processes(blocking)
        during["run"].kill()
        # The client dies the way its run died (its pty may stay open a little longer).
        assert run.proc.wait(30) == -9, run.text()
        # Well within the 5 s after which execnet's own end-of-input handling
        # would interrupt a worker whose controller went away.
        assert_nothing_left(blocking, during, timeout=3)
    finally:
        run.close()


def test_workers_lazy_imports_are_learned(parallel: Project, tmp_path: Path) -> None:
    """A library module only the workers import (not the controller) is learned
    by the warm process, so the next parallel run's workers have it already."""
    log = tmp_path / "lazy.log"
    env = {"PARALLEL_LAZY_LOG": str(log)}

    def seen() -> list[bool]:
        before = daemon_runs(parallel)
        result = parallel.pytest("-n", "2", "lazy/test_lazy.py", env=env)
        assert result.returncode == 0 and daemon_runs(parallel) == before + 1, str(result)
        lines = log.read_text().splitlines()
        log.unlink()
        return [json.loads(line)["already"] for line in lines]

    def learning() -> tuple[int, int]:
        warmup = daemon_status(parallel)["warmup"]
        assert isinstance(warmup, dict)
        return warmup["learned_imports"], warmup["pending_imports"]

    learned_before, _ = learning()
    assert seen() == [False]
    wait_until(
        lambda: (now := learning())[1] == 0 and now[0] > learned_before,
        timeout=30,
        what="the daemon to learn the workers' imports",
    )
    assert seen() == [True]


def test_a_leaked_worker_makes_the_daemon_unhealthy(blocking: Project) -> None:
    """A worker that escaped its run (own session, no parent-death signal, its
    fork server gone) and outlives it is reported by --daemon-health until it is gone.

    (execnet's own end-of-input handling would end it some 15 s later.)"""
    cmd = [*command_pytest(), "-s", "-n", "1", "escapers"]
    run = PtyRun(cmd, str(blocking.root), pty_env(blocking))
    try:
        run.expect(b"ESCAPED-gw0\r\n")
        during = run_processes(blocking)
        worker = during["xdist-gw0"]
        # The fork server first: it would kill its workers when the run worker goes.
        during["xdist-fork"].kill()
        wait_until(lambda: dead(during["xdist-fork"]), timeout=10, what="the fork server to die")
        during["run"].kill()
        assert run.proc.wait(30) == -9, run.text()

        def health() -> dict[str, Any]:
            result = blocking.pytest("--daemon-health", "--daemon-json")
            data: dict[str, Any] = json.loads(result.stdout)
            assert result.returncode == (0 if data["status"] == "healthy" else 7), str(result)
            return data

        leaked = wait_until(
            lambda: (h := health())["checks"]["leaked_workers"]["value"] == 1 and h,
            timeout=10,
            what=f"the leaked worker to be reported ({worker})",
        )
        assert leaked["status"] == "unhealthy", leaked
        assert f"xdist-gw0 {worker.pid}" in leaked["checks"]["leaked_workers"]["detail"], leaked
        assert "Leaked worker: xdist-gw0" in log_text(blocking)
        worker.kill()
        worker.wait(10)
        assert health()["checks"]["leaked_workers"]["value"] == 0
    finally:
        run.close()
