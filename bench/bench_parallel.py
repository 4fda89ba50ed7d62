"""Benchmark for issue 13: parallel runs (pytest-xdist) warm and cold.

On examples/parallel (or ``--project``), with a daemon started on it, it
alternates per repetition: warm ``pytest -n N`` (workers forked from the
warm process), warm ``pytest`` (serial), cold ``pytest --no-daemon -n N``
and, for reference, cold ``pytest --no-daemon``. The test bodies' own time
comes from a cold serial ``--junitxml`` run.

Targets (on a 2-core machine, N = 2): warm ``-n 2`` at least 1.6x faster than
warm serial, and at least 2x faster than cold ``-n 2``. Checks: every warm
run was served by the daemon, every warm parallel run had its workers forked
by the fork server (the daemon logs one line per such run), every run passed
the same number of tests with the same exit code, no warm-process replacement.

Run: ``python bench/bench_parallel.py [--quick] [--reps N] [--workers N]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as b

PARALLEL_EXAMPLE = b.REPO / "examples" / "parallel"
SERIAL_SPEEDUP_TARGET = 1.6
COLD_SPEEDUP_TARGET = 2.0
FORKED_LINE = re.compile(r"Run \[\w+\] forked (\d+) xdist workers from its fork server")
PASSED = re.compile(r"\b(\d+) passed\b")


def labels(n: str) -> dict[str, str]:
    return {
        "warm_parallel": f"pytest -n {n} (daemon, forked workers)",
        "warm_serial": "pytest (daemon, serial)",
        "cold_parallel": f"pytest -n {n} (cold, --no-daemon)",
        "cold_serial": "pytest (cold, --no-daemon, serial)",
    }


def junit_body_seconds(path: Path) -> float:
    root = ET.parse(path).getroot()
    return sum(float(case.get("time", "0")) for case in root.iter("testcase"))


def forked_runs(log_path: Path) -> list[int]:
    """Worker counts of the parallel runs the daemon served with forked workers."""
    try:
        text = log_path.read_text()
    except OSError:
        return []
    return [int(m.group(1)) for m in FORKED_LINE.finditer(text)]


def measure_mode(
    mode: str, *, src: Path, args: argparse.Namespace, ws: b.Workspace, reps: int
) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    env = b.make_env(ws.runtime(mode), mode)
    root = b.copy_project(src, ws.base / mode / src.name)
    pytest = b.pytest_cmd()
    n = str(args.workers)

    # Cold first: fails fast on a broken project, writes bytecode caches in
    # "cached" mode, and gives the outcome every variant must reproduce.
    reference = b.run_checked([*pytest, "--no-daemon", "-n", n, "-q"], root, env)
    expected_passed = PASSED.findall(reference.stdout)[-1:]

    body: list[float] = []
    for i in range(max(2, reps // 3)):
        xml = ws.base / f"{mode}-body-{i}.xml"
        b.run_checked([*pytest, "--no-daemon", "-q", f"--junitxml={xml}"], root, env)
        body.append(junit_body_seconds(xml))
    body_ms = round(statistics.median(body) * 1000, 3)

    daemon = ws.daemon(root, env)
    b.log(f"[{mode}] starting the daemon in {root}")
    daemon.start()
    client = daemon.client()
    status = client.get_status()
    log_path = Path(status["log_path"])
    if args.autogroup_nice is not None:
        # The daemon and its warm process each lead a session of their own.
        for pid in (status["pid"], status["warm_pid"]):
            set_autogroup_nice(pid, args.autogroup_nice)

    fallbacks: list[str] = []
    passed: dict[str, set[tuple[str, ...]]] = {name: set() for name in labels(n)}
    codes: dict[str, set[int]] = {name: set() for name in labels(n)}

    def variant(name: str, cmd: list[str], through_daemon: bool) -> Callable[[], float]:
        def run() -> float:
            sample = b.run_checked(cmd, root, env, ok=(0, 1, 2, 3, 4, 5))
            codes[name].add(sample.returncode)
            passed[name].add(tuple(PASSED.findall(sample.stdout)[-1:]))
            if through_daemon:
                fallbacks.extend(sample.notices)
            return sample.seconds

        return run

    variants = {
        "warm_parallel": variant("warm_parallel", [*pytest, "-n", n, "-q"], True),
        "warm_serial": variant("warm_serial", [*pytest, "-q"], True),
        "cold_parallel": variant("cold_parallel", [*pytest, "--no-daemon", "-n", n, "-q"], False),
        "cold_serial": variant("cold_serial", [*pytest, "--no-daemon", "-q"], False),
    }
    # Untimed: the first forks after warm-up pay page faults the steady state
    # does not, and what runs import lazily is learned when the daemon is idle.
    variants["warm_parallel"]()
    variants["warm_serial"]()
    learned = b.wait_for_learning(client)
    b.log(f"[{mode}] learned imports: {learned}")
    runs_before = client.get_status()["metrics"]["runs"]
    forked_before = len(forked_runs(log_path))
    b.log(f"[{mode}] {reps} reps of warm -n {n}, warm serial, cold -n {n}, cold serial")
    samples = b.alternate(variants, reps)
    status = client.get_status()
    served = status["metrics"]["runs"] - runs_before
    forked = forked_runs(log_path)[forked_before:]

    b.check(
        checks,
        "every warm run was served by the daemon",
        served == 2 * reps and not fallbacks,
        f"{served} of {2 * reps} served; notices: {sorted(set(fallbacks))[:3]}",
    )
    b.check(
        checks,
        f"every warm -n {n} run forked its {n} workers from the warm state",
        forked == [int(n)] * reps,
        f"forked worker counts logged: {forked}",
    )
    b.check(
        checks,
        "every run passed the same tests with exit code 0",
        all(c == {0} for c in codes.values())
        and all(p == {tuple(expected_passed)} for p in passed.values()),
        f"exit codes { ({k: sorted(v) for k, v in codes.items()}) }; passed {passed}",
    )
    b.check(
        checks,
        "no warm process replacement during the runs",
        status["reload"]["replacements"] == {},
        str(status["reload"]["replacements"]),
    )

    result = {name: b.summary(values) for name, values in samples.items()}
    med = {name: result[name]["median_ms"] for name in samples}
    serial_speedup = b.ratio(med["warm_serial"], med["warm_parallel"])
    cold_speedup = b.ratio(med["cold_parallel"], med["warm_parallel"])
    return {
        "project": str(root),
        "workers": int(n),
        "passed": expected_passed,
        "results": result,
        "body_ms": body_ms,
        "learned_imports": learned,
        "derived": {
            "warm_serial_over_warm_parallel": serial_speedup,
            "cold_parallel_over_warm_parallel": cold_speedup,
            "cold_serial_over_cold_parallel": b.ratio(med["cold_serial"], med["cold_parallel"]),
            "warm_parallel_minus_half_body_ms": b.diff(
                med["warm_parallel"], body_ms / int(n) if body_ms else None
            ),
        },
        "targets": {
            "warm_parallel_1_6x_faster_than_warm_serial": _at_least(
                serial_speedup, SERIAL_SPEEDUP_TARGET
            ),
            "warm_parallel_2x_faster_than_cold_parallel": _at_least(
                cold_speedup, COLD_SPEEDUP_TARGET
            ),
        },
        "checks": checks,
    }


def set_autogroup_nice(pid: int | str, nice: int) -> int:
    """Set the nice value of ``pid``'s session's scheduling autogroup; the previous one.

    With ``kernel.sched_autogroup_enabled`` (Linux), CPU time is shared fairly
    between sessions, not processes: on a shared machine a parallel run gets no
    more CPU than a serial one, whatever its workers' own nice values.
    """
    path = Path(f"/proc/{pid}/autogroup")
    previous = int(path.read_text().split("nice")[-1])
    path.write_text(str(nice))
    return previous


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def report(data: dict[str, Any]) -> None:
    for mode, m in data["modes"].items():
        n = str(m["workers"])
        b.print_table(
            f"bench_parallel [{mode}] {Path(m['project']).name} "
            f"({', '.join(m['passed']) or '?'} passed; test bodies {b.fmt(m['body_ms'], ' ms')})",
            ["measurement", "median ms", "min ms", "p95 ms", "n"],
            b.timing_rows(m["results"], labels(n)),
        )
        d, t = m["derived"], m["targets"]
        print(
            f"  warm serial / warm -n {n}: {b.fmt(d['warm_serial_over_warm_parallel'], 'x')} "
            f"(target >= {SERIAL_SPEEDUP_TARGET}: "
            f"{t['warm_parallel_1_6x_faster_than_warm_serial']}); "
            f"cold -n {n} / warm -n {n}: {b.fmt(d['cold_parallel_over_warm_parallel'], 'x')} "
            f"(target >= {COLD_SPEEDUP_TARGET}: "
            f"{t['warm_parallel_2x_faster_than_cold_parallel']})"
        )
        print(
            f"  cold serial / cold -n {n}: {b.fmt(d['cold_serial_over_cold_parallel'], 'x')}; "
            f"warm -n {n} - bodies/{n}: {b.fmt(d['warm_parallel_minus_half_body_ms'], ' ms')}"
        )
        b.print_checks(m["checks"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    b.add_common_args(parser, reps=10)
    parser.add_argument(
        "--project",
        type=Path,
        default=PARALLEL_EXAMPLE,
        help=f"the project to measure (default {PARALLEL_EXAMPLE.relative_to(b.REPO)})",
    )
    parser.add_argument("--workers", type=int, default=2, help="pytest -n N (default 2)")
    parser.add_argument(
        "--autogroup-nice",
        type=int,
        default=None,
        help="on a busy shared Linux machine: give this benchmark's sessions and the "
        "daemon's this autogroup nice value (e.g. -20; needs privileges), so the "
        "figures approach those of a quiet machine; recorded in the JSON",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp directory (for debugging)"
    )
    args = parser.parse_args(argv)
    reps = b.reps_from(args, 10)
    data: dict[str, Any] = {
        "benchmark": "parallel",
        "issue": 13,
        "config": {
            "reps": reps,
            "quick": args.quick,
            "modes": b.modes_from(args),
            "workers": args.workers,
            "autogroup_nice": args.autogroup_nice,
        },
        "environment": b.environment(),
        "modes": {},
    }
    own_nice = None
    if args.autogroup_nice is not None:
        own_nice = set_autogroup_nice("self", args.autogroup_nice)
    with b.workspace(args.keep) as ws:
        try:
            src = args.project.resolve()
            if not src.is_dir():
                raise b.BenchError(f"--project {src} is not a directory")
            if not b.importable("xdist"):
                raise b.BenchError("pytest-xdist is not installed: pip install pytest-xdist")
            for mode in b.modes_from(args):
                data["modes"][mode] = measure_mode(mode, src=src, args=args, ws=ws, reps=reps)
        except Exception as exc:
            # Recorded, not raised: the JSON still says what was measured, and
            # the workspace still stops every daemon on the way out.
            data["error"] = b.describe(exc)
            b.log(f"error: {data['error']}")
        finally:
            if own_nice is not None:
                set_autogroup_nice("self", own_nice)
    return b.finish(data, ws.pids, report, args.output, "parallel.json")


if __name__ == "__main__":
    sys.exit(main())
