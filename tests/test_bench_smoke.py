"""The benchmark scripts still run: each in ``--quick`` mode with tiny sizes.

Not a timing test (no figure is asserted): each script must exit 0 (its
sanity checks passed), write the JSON keys that ``bench/report.py`` and the
nox ``bench`` session read, and leave no daemon behind. The generated-project
parts always run (pydantic, a dependency, is the import); the bundled
import-heavy example runs only where sympy is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
MODE_KEYS = {"project", "results", "derived", "checks"}


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_", "COVERAGE_"))
    }


def run_bench(
    script: str,
    tmp_path: Path,
    *args: str,
    timeout: float = 280,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    out = tmp_path / f"{script}.json"
    cmd = [sys.executable, str(BENCH / script), "--quick", "--output", str(out), *args]
    proc = subprocess.run(
        cmd,
        cwd=tmp_path,
        env={**_env(), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"$ {' '.join(cmd)}\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
    )
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["ok"] is True and "error" not in data
    assert {"benchmark", "issue", "config", "environment", "modes", "daemon_pids"} <= data.keys()
    assert data["daemon_pids"], "the benchmark reported no daemon: it measured nothing through one"
    assert_no_daemon_left(data)
    report = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=_env(),
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert "all sanity checks passed" in report.stdout
    return data


def assert_no_daemon_left(data: dict[str, Any]) -> None:
    roots = [os.path.realpath(m["project"]) for m in data["modes"].values()]
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "pytest_fastcollect.supervisor" in cmdline and any(r in cmdline for r in roots):
            left.append(proc.info["pid"])
    assert not left, f"daemons left running: {left}"


def assert_mode(mode: dict[str, Any], results: set[str], derived: set[str]) -> None:
    assert mode.keys() >= MODE_KEYS
    assert results <= mode["results"].keys()
    for name in results:
        assert mode["results"][name]["n"] >= 1 and mode["results"][name]["median_ms"] > 0, name
    assert derived <= mode["derived"].keys()
    assert mode["checks"] and all(c["ok"] for c in mode["checks"]), mode["checks"]


DAEMON_RESULTS = {
    "version_cli",
    "status_cli",
    "get_status",
    "get_health",
    "daemon_collect",
    "warm_collect_cli",
    "cold_collect_cli",
    "daemon_collection_time",
}
DAEMON_DERIVED = {
    "status_cli_minus_version_ms",
    "cold_collect_over_daemon_collect",
    "cold_collect_over_warm_collect_cli",
}
RUNS_RESULTS = {"version", "cold", "warm", "thin"}
RUNS_DERIVED = {
    "handoff_overhead_ms",
    "warm_over_version_minus_body_ms",
    "thin_minus_body_ms",
    "cold_over_warm",
    "cold_over_thin",
}
RELOAD_RESULTS = {
    "save_to_ready_leaf",
    "save_to_ready_core",
    "reload_duration_leaf",
    "reload_duration_core",
    "run_after_leaf_save",
    "run_after_core_save",
    "run_no_edit",
    "full_replacement",
}
RELOAD_DERIVED = {
    "core_over_leaf_save_to_ready",
    "core_reload_over_full_replacement",
    "run_after_leaf_save_minus_no_edit_ms",
    "run_after_core_save_minus_no_edit_ms",
}


def test_bench_daemon_generated_project(tmp_path: Path) -> None:
    data = run_bench(
        "bench_daemon.py",
        tmp_path,
        "--generate",
        "--heavy-module",
        "pydantic",
        "--reps",
        "1",
        "--iterations",
        "5",
        "--bytecode",
        "both",
    )
    assert data["project"] == {"source": "generated", "generated": True, "heavy_module": "pydantic"}
    assert set(data["modes"]) == {"cached", "nocache"}
    for mode in data["modes"].values():
        assert_mode(mode, DAEMON_RESULTS, DAEMON_DERIVED)
        assert mode["results"]["get_status"]["n"] == 5
        assert mode["node_ids"] == 15


def test_bench_runs_generated_project(tmp_path: Path) -> None:
    data = run_bench(
        "bench_runs.py",
        tmp_path,
        "--generate",
        "--heavy-module",
        "pydantic",
        "--reps",
        "1",
        "--first-reps",
        "1",
        "--bytecode",
        "nocache",
    )
    mode = data["modes"]["nocache"]
    assert_mode(mode, RUNS_RESULTS, RUNS_DERIVED)
    assert mode["file"] == "tests/test_heavy_0.py" and mode["exit_code"] == 0
    assert mode["body_ms"] >= 0
    assert len(mode["first_after_start"]["rounds"]) == 1
    assert set(mode["targets"]) == {
        "warm_within_100ms_of_version_plus_body",
        "thin_within_60ms_of_body",
        "strict_warm_within_100ms",
        "strict_thin_within_60ms",
        "first_run_after_start_never_slower_than_cold",
    }


EARLY_RESULTS = {"early", "plugin", "thin", "cold"}
EARLY_DERIVED = {"plugin_over_early", "early_over_thin", "cold_over_early"}


def test_bench_early_generated_project(tmp_path: Path) -> None:
    data = run_bench(
        "bench_early.py",
        tmp_path,
        "--generate",
        "--heavy-module",
        "pydantic",
        "--reps",
        "1",
        "--bytecode",
        "cached",
    )
    assert_mode(data["modes"]["cached"], EARLY_RESULTS, EARLY_DERIVED)


def test_bench_reload_tiny_project(tmp_path: Path) -> None:
    data = run_bench(
        "bench_reload.py",
        tmp_path,
        "--modules",
        "12",
        "--depth",
        "3",
        "--tests",
        "3",
        "--reps",
        "1",
        "--bytecode",
        "cached",
    )
    mode = data["modes"]["cached"]
    assert_mode(mode, RELOAD_RESULTS, RELOAD_DERIVED)
    assert mode["shape"]["modules"] == 12 and mode["shape"]["levels"] == [4, 4, 4]
    assert [e["modules"] for e in mode["edits"]["leaf"]] == [1]
    assert mode["replacements"]["after_edits"] == mode["replacements"]["before"]
    assert mode["targets"]["ordinary_edits_never_replace"] is True


@pytest.mark.skipif(
    find_spec("sympy") is None, reason="sympy is not installed (nox -s bench installs it)"
)
@pytest.mark.skipif(
    not (REPO / "examples" / "heavy").is_dir(), reason="examples/heavy does not exist yet"
)
def test_bench_runs_heavy_example(tmp_path: Path) -> None:
    data = run_bench(
        "bench_runs.py", tmp_path, "--reps", "1", "--first-reps", "1", "--bytecode", "cached"
    )
    assert data["project"]["generated"] is False
    assert_mode(data["modes"]["cached"], RUNS_RESULTS, RUNS_DERIVED)


WATCH_RESULTS = {"watch_test", "cold_test", "watch_leaf", "cold_leaf"}
WATCH_DERIVED = {
    "cold_over_watch_test",
    "cold_over_watch_leaf",
    "watch_minus_bodies_test_ms",
    "watch_minus_bodies_leaf_ms",
}


def test_bench_watch_basic_example(tmp_path: Path) -> None:
    data = run_bench(
        "bench_watch.py", tmp_path, "--project", "basic", "--reps", "1", "--bytecode", "cached"
    )
    mode = data["modes"]["basic-cached"]
    assert_mode(mode, WATCH_RESULTS, WATCH_DERIVED)
    assert mode["selections"] == {
        "test": ["tests/test_money.py"],
        "leaf": ["tests/test_discounts.py"],
    }
    assert set(mode["targets"]) == {
        "test_within_300ms_plus_bodies",
        "leaf_within_300ms_plus_bodies",
    }


@pytest.mark.skipif(
    find_spec("numpy") is None or find_spec("pandas") is None, reason="needs numpy and pandas"
)
def test_bench_warm_scientific_example(tmp_path: Path) -> None:
    data = run_bench(
        "bench_warm.py", tmp_path, "--bytecode", "cached", "--projects", "scientific", timeout=600
    )
    (mode,) = data["modes"].values()
    assert {"steady", "first_after_save", "during_idle_work", "derived", "checks"} <= mode.keys()
    assert set(mode["first_after_save"]) == {
        "test edit",
        "leaf module edit",
        "module a conftest imports",
        "plain conftest edit",
        "conftest edit needing a new layer",
        "test edit, run 0.5 s later",
    }
    assert mode["checks"] and all(c["ok"] for c in mode["checks"]), mode["checks"]


def test_bench_overhead_generated_project(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import benchlib
    finally:
        sys.path.remove(str(BENCH))
    project = tmp_path / "proj"
    benchlib.generate_heavy_project(project, "pydantic", files=1, tests_per_file=2)
    data = run_bench(
        "bench_overhead.py",
        tmp_path,
        "--projects",
        str(project),
        "--reps",
        "1",
        "--bytecode",
        "cached",
    )
    mode = data["modes"]["proj/cached"]
    assert {"python", "version", "status", "status_plugin", "cold", "warm_on", "thin_off"} <= mode[
        "results"
    ].keys()
    for kind in ("warm_on", "warm_off", "thin_on", "thin_off"):
        phases = mode["phases"][kind]
        assert all(phases[p] is not None for p in ("client", "handoff", "setup", "bodies")), kind
    assert set(mode["targets"]) == {"thin", "warm", "collect", "status"}
    assert mode["collect"]["all_cached"] is True
    assert all(c["ok"] for c in mode["checks"]), mode["checks"]


PARALLEL_RESULTS = {"warm_parallel", "warm_serial", "cold_parallel", "cold_serial"}
PARALLEL_DERIVED = {"warm_serial_over_warm_parallel", "cold_parallel_over_warm_parallel"}


@pytest.mark.skipif(find_spec("xdist") is None, reason="pytest-xdist is not installed")
def test_bench_parallel_example(tmp_path: Path) -> None:
    data = run_bench(
        "bench_parallel.py",
        tmp_path,
        "--reps",
        "1",
        "--bytecode",
        "cached",
        env={"PARALLEL_BODY_SECONDS": "0.005"},  # the example's bodies, shortened
    )
    mode = data["modes"]["cached"]
    assert_mode(mode, PARALLEL_RESULTS, PARALLEL_DERIVED)
    assert mode["workers"] == 2 and mode["passed"] == ["52"]
    assert set(mode["targets"]) == {
        "warm_parallel_1_6x_faster_than_warm_serial",
        "warm_parallel_2x_faster_than_cold_parallel",
    }
