"""Benchmark for issue 12: ``pytest FILE`` handed off at start-up, by the plugin, and thin.

On an import-heavy project (examples/heavy, ``--project``, or generated) with
a daemon started by ``pytest --daemon-start tests``, it alternates per
repetition: ``pytest FILE`` through the start-up hook (the default),
``pytest FILE`` with ``PYTEST_FASTCOLLECT_EARLY=0`` (the plugin's hand-off
after ``import pytest`` and plugin loading), ``pytest-fastcollect run FILE``
(the thin client) and, for scale, cold ``pytest --no-daemon FILE``.

Run: ``python bench/bench_early.py [--quick] [--reps N] [--file tests/x.py]``.
Checks: every early, plugin and thin run was served by the daemon without a
notice, and every variant exits as the cold run does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as b

LABELS = {
    "early": "pytest FILE (start-up hook)",
    "plugin": "pytest FILE (plugin hand-off, PYTEST_FASTCOLLECT_EARLY=0)",
    "thin": "pytest-fastcollect run FILE",
    "cold": "pytest --no-daemon FILE",
}
SERVED = ("early", "plugin", "thin")


def measure_mode(
    mode: str, *, src: Path, test_file: str, ws: b.Workspace, reps: int
) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    env = b.make_env(ws.runtime(mode), mode)
    root = b.copy_project(src, ws.base / mode / src.name)
    pytest, thin = b.pytest_cmd(), b.thin_cmd()
    reference = b.run_checked([*pytest, "--no-daemon", test_file], root, env, ok=(0, 1))
    daemon = ws.daemon(root, env)
    b.log(f"[{mode}] starting the daemon in {root}")
    daemon.start("tests")
    client = daemon.client()

    notices: list[str] = []
    codes: dict[str, set[int]] = {name: set() for name in LABELS}

    def variant(name: str, cmd: list[str], extra: dict[str, str]) -> Callable[[], float]:
        run_env = {**env, **extra}

        def run() -> float:
            sample = b.run_checked(cmd, root, run_env, ok=(0, 1, 2, 3, 4, 5))
            codes[name].add(sample.returncode)
            if name in SERVED:
                notices.extend(sample.notices)
            return sample.seconds

        return run

    variants = {
        "early": variant("early", [*pytest, test_file], {}),
        "plugin": variant("plugin", [*pytest, test_file], {"PYTEST_FASTCOLLECT_EARLY": "0"}),
        "thin": variant("thin", [*thin, "run", test_file], {}),
        "cold": variant("cold", [*pytest, "--no-daemon", test_file], {}),
    }
    # Untimed: the first forks pay page faults, and lazily imported library
    # modules get learned by the warm process while it is idle.
    for name in SERVED:
        variants[name]()
    wait_for_learning(client)
    runs_before = client.get_status()["metrics"]["runs"]
    b.log(f"[{mode}] {reps} reps of {', '.join(variants)}")
    samples = b.alternate(variants, reps)
    served = client.get_status()["metrics"]["runs"] - runs_before
    b.check(
        checks,
        "every early, plugin and thin run was served by the daemon",
        served == len(SERVED) * reps and not notices,
        f"{served} of {len(SERVED) * reps}; notices: {sorted(set(notices))[:3]}",
    )
    b.check(
        checks,
        "every variant exits as the cold run",
        all(codes[name] == {reference.returncode} for name in LABELS),
        str({name: sorted(c) for name, c in codes.items()}),
    )
    results = {name: b.summary(values) for name, values in samples.items()}
    med = {name: results[name]["median_ms"] for name in samples}
    return {
        "project": str(root),
        "file": test_file,
        "results": results,
        "derived": {
            "plugin_over_early": b.ratio(med["plugin"], med["early"]),
            "early_over_thin": b.ratio(med["early"], med["thin"]),
            "cold_over_early": b.ratio(med["cold"], med["early"]),
            "plugin_minus_early_ms": b.diff(med["plugin"], med["early"]),
            "early_minus_thin_ms": b.diff(med["early"], med["thin"]),
        },
        "checks": checks,
    }


def wait_for_learning(client: Any, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while client.get_status()["warmup"].get("pending_imports", 0) and time.monotonic() < deadline:
        time.sleep(0.1)


def report(data: dict[str, Any]) -> None:
    for mode, m in data["modes"].items():
        b.print_table(
            f"bench_early [{mode}] {m['file']}",
            ["measurement", "median ms", "min ms", "p95 ms", "n"],
            b.timing_rows(m["results"], LABELS),
        )
        d = m["derived"]
        print(
            f"  plugin/early {b.fmt(d['plugin_over_early'], 'x')} "
            f"({b.fmt(d['plugin_minus_early_ms'], ' ms')} saved), "
            f"early/thin {b.fmt(d['early_over_thin'], 'x')} "
            f"({b.fmt(d['early_minus_thin_ms'], ' ms')} more), "
            f"cold/early {b.fmt(d['cold_over_early'], 'x')}"
        )
        b.print_checks(m["checks"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    b.add_common_args(parser, reps=15)
    b.add_project_args(parser)
    parser.add_argument("--file", default=None, help="test file (default: the first test_*.py)")
    args = parser.parse_args(argv)
    reps = b.reps_from(args, 15)
    data: dict[str, Any] = {
        "benchmark": "early",
        "issue": 12,
        "config": {"reps": reps, "quick": args.quick, "modes": b.modes_from(args)},
        "environment": b.environment(),
        "modes": {},
    }
    with b.workspace(args.keep) as ws:
        try:
            src, data["project"] = b.heavy_source(args, ws)
            test_file = args.file or b.default_test_file(src)
            for mode in b.modes_from(args):
                data["modes"][mode] = measure_mode(
                    mode, src=src, test_file=test_file, ws=ws, reps=reps
                )
        except Exception as exc:
            data["error"] = b.describe(exc)
            b.log(f"error: {data['error']}")
    return b.finish(data, ws.pids, report, args.output, "early.json")


if __name__ == "__main__":
    sys.exit(main())
