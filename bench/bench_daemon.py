"""Benchmark for issue 2: the daemon's own round trips and collection through it.

Measures, on an import-heavy project (examples/heavy, or ``--project``, or a
generated one): ``pytest --daemon-status`` against ``pytest --version`` (the
floor of any pytest command), ``DaemonClient.get_status()`` and
``get_health()`` round trips in this process, and ``DaemonClient.collect``
against a cold ``pytest --collect-only -q`` (and the same command handed to
the daemon). Variants alternate within one run; medians and ratios are
reported per bytecode mode. Every daemon is stopped in a ``finally``.

Run: ``python bench/bench_daemon.py [--quick] [--reps N] [--project PATH]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as b

LABELS = {
    "version_cli": "pytest --version (floor)",
    "status_cli": "pytest --daemon-status",
    "get_status": "DaemonClient.get_status()",
    "get_health": "DaemonClient.get_health()",
    "daemon_collect": "DaemonClient.collect(root)",
    "warm_collect_cli": "pytest --collect-only -q (daemon)",
    "cold_collect_cli": "pytest --collect-only -q (cold)",
}


def in_process(fn: Callable[[], object]) -> Callable[[], float]:
    def timed() -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    return timed


def measure_mode(
    mode: str, *, src: Path, args: argparse.Namespace, ws: b.Workspace, reps: int, iterations: int
) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    env = b.make_env(ws.runtime(mode), mode)
    root = b.copy_project(src, ws.base / mode / src.name)
    pytest = b.pytest_cmd()

    # Cold once first: fails fast on a broken project, and in "cached" mode
    # writes the bytecode caches users have.
    cold_ref = b.run_checked([*pytest, "--no-daemon", "--collect-only", "-q"], root, env)
    cold_ids = b.collected_ids(cold_ref.stdout)
    b.check(checks, "project collects tests", bool(cold_ids), f"{len(cold_ids)} node ids cold")

    daemon = ws.daemon(root, env)
    b.log(f"[{mode}] starting the daemon in {root}")
    started = daemon.start(*args.start_args)
    client = daemon.client()
    status0 = client.get_status()

    served = client.collect(root)
    b.check(
        checks,
        "daemon collect equals cold --collect-only",
        sorted(served["node_ids"]) == sorted(cold_ids),
        f"daemon {served['count']} vs cold {len(cold_ids)} node ids",
    )

    def cli(*argv: str, expect_daemon: bool = False) -> Callable[[], float]:
        def run() -> float:
            sample = b.run_checked([*pytest, *argv], root, env)
            if expect_daemon and sample.notices:
                raise b.BenchError(f"run fell back to cold: {sample.notices[0]}")
            return sample.seconds

        return run

    collection_times: list[float] = []

    def daemon_collect() -> None:
        response = client.collect(root)
        if response["count"] != len(cold_ids):
            raise b.BenchError(
                f"daemon collect returned {response['count']} node ids, cold {len(cold_ids)}"
            )
        collection_times.append(float(response["collection_time"]))

    b.log(f"[{mode}] status and version, {reps} reps")
    samples = b.alternate(
        {"version_cli": cli("--version"), "status_cli": cli("--daemon-status")}, reps
    )
    b.log(f"[{mode}] get_status/get_health round trips, {iterations} iterations")
    samples |= b.alternate(
        {"get_status": in_process(client.get_status), "get_health": in_process(client.get_health)},
        iterations,
    )
    b.log(f"[{mode}] collect, {reps} reps")
    samples |= b.alternate(
        {
            "daemon_collect": in_process(daemon_collect),
            "warm_collect_cli": cli("--collect-only", "-q", expect_daemon=True),
            "cold_collect_cli": cli("--no-daemon", "--collect-only", "-q"),
        },
        reps,
    )

    status1 = client.get_status()
    collects = status1["metrics"]["collects"] - status0["metrics"]["collects"]
    runs = status1["metrics"]["runs"] - status0["metrics"]["runs"]
    b.check(
        checks,
        "every daemon collect was served",
        collects == reps + 1,
        f"{collects} collects served",
    )
    b.check(
        checks, "every warm --collect-only ran in the daemon", runs == reps, f"{runs} runs served"
    )
    b.check(
        checks,
        "no warm process replacement",
        status1["reload"]["replacements"] == {},
        str(status1["reload"]["replacements"]),
    )

    result = {name: b.summary(values) for name, values in samples.items()}
    result["daemon_collection_time"] = b.summary(collection_times)
    med = {name: result[name]["median_ms"] for name in samples}
    return {
        "project": str(root),
        "node_ids": len(cold_ids),
        "start": {
            "wall_ms": round(started.seconds * 1000, 1),
            "warmup": status0["warmup"],
            "cached_modules": status0["cached_modules"],
        },
        "results": result,
        "derived": {
            "status_cli_minus_version_ms": b.diff(med["status_cli"], med["version_cli"]),
            "cold_collect_over_daemon_collect": b.ratio(
                med["cold_collect_cli"], med["daemon_collect"]
            ),
            "cold_collect_over_warm_collect_cli": b.ratio(
                med["cold_collect_cli"], med["warm_collect_cli"]
            ),
        },
        "checks": checks,
    }


def report(data: dict[str, Any]) -> None:
    for mode, m in data["modes"].items():
        r = m["results"]
        rows = b.timing_rows(r, LABELS)
        b.print_table(
            f"bench_daemon [{mode}] ({m['node_ids']} tests; "
            f"daemon start {m['start']['wall_ms']:.0f} ms)",
            ["measurement", "median ms", "min ms", "p95 ms", "n"],
            rows,
        )
        d = m["derived"]
        print(
            "  --daemon-status minus --version: "
            f"{b.fmt(d['status_cli_minus_version_ms'], ' ms')}; "
            "cold collect / DaemonClient.collect: "
            f"{b.fmt(d['cold_collect_over_daemon_collect'], 'x')}; "
            f"cold / warm --collect-only: {b.fmt(d['cold_collect_over_warm_collect_cli'], 'x')}"
        )
        b.print_checks(m["checks"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    b.add_common_args(parser, reps=10)
    b.add_project_args(parser)
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="in-process get_status/get_health round trips (default 300, --quick 20)",
    )
    parser.add_argument(
        "--start-args",
        nargs="*",
        default=[],
        help="paths/options for pytest --daemon-start (default: none)",
    )
    args = parser.parse_args(argv)
    reps = b.reps_from(args, 10)
    iterations = args.iterations or (20 if args.quick else 300)
    data: dict[str, Any] = {
        "benchmark": "daemon",
        "issue": 2,
        "config": {
            "reps": reps,
            "iterations": iterations,
            "quick": args.quick,
            "modes": b.modes_from(args),
            "start_args": args.start_args,
        },
        "environment": b.environment(),
        "modes": {},
    }
    with b.workspace(args.keep) as ws:
        try:
            src, data["project"] = b.heavy_source(args, ws)
            for mode in b.modes_from(args):
                data["modes"][mode] = measure_mode(
                    mode, src=src, args=args, ws=ws, reps=reps, iterations=iterations
                )
        except Exception as exc:
            # Recorded, not raised: the JSON still says what was measured, and
            # the workspace still stops every daemon on the way out.
            data["error"] = b.describe(exc)
            b.log(f"error: {data['error']}")
    return b.finish(data, ws.pids, report, args.output, "daemon.json")


if __name__ == "__main__":
    sys.exit(main())
