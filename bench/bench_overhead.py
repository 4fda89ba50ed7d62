"""Benchmark for issue 12: where a warm one-file run spends its time besides the tests.

For each project (``examples/heavy`` and ``examples/scientific`` by default)
it starts two daemons on two copies, one with the standby worker (the
default) and one without (``PYTEST_FASTCOLLECT_STANDBY=off``), and
alternates, per repetition: ``python -c pass``, ``pytest --version``,
``pytest --daemon-status``, cold ``pytest --no-daemon FILE``, and warm
``pytest FILE`` and ``pytest-fastcollect run FILE`` on each daemon. Every
warm run keeps a timeline (``PYTEST_FASTCOLLECT_TIMELINE``, written by the
worker with the supervisor's stamps; one clock, ``time.monotonic``), so each
one is split into:

- ``client``: from starting the command until the supervisor has the request
  (interpreter start-up, imports, connecting, sending);
- ``handoff``: until the worker starts (freshness sweep, the fork order, the
  fork or the standby's hand-over);
- ``setup``: the worker's pytest session set-up until collection starts;
- ``collection``;
- ``bodies``: the tests' own setup, call and teardown (pytest's durations);
- ``per_test``: the rest of the test loop (pytest's machinery around each test);
- ``report``: from the last test to the worker's exit (summary, unconfigure);
- ``exit``: from the worker's exit to the client's.

Then a repeated ``DaemonClient.collect`` with nothing changed (served from
the collect cache). Targets (issue 12): thin client minus the bodies <= 40
ms; ``pytest FILE`` minus the bodies <= 70 ms; a repeated collect <= 10 ms;
``--daemon-status`` <= 100 ms over ``python -c pass``. The bodies are each
run's own. Medians are reported; every sample is in the JSON.

Run: ``python bench/bench_overhead.py [--quick] [--reps N] [--projects heavy scientific]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as b

TARGETS = {"thin": 40.0, "warm": 70.0, "collect": 10.0, "status": 100.0}
PROJECTS = {
    "heavy": b.REPO / "examples" / "heavy",
    "scientific": b.REPO / "examples" / "scientific",
}
PHASES = ("client", "handoff", "setup", "collection", "bodies", "per_test", "report", "exit")
TOTALS = (
    "total",
    "overhead",
    "client_cpu",
    "worker_cpu",
    "setup_cpu",
    "tests_cpu",
    "overhead_cpu",
)
LABELS = {
    "python": "python -c pass (floor)",
    "version": "pytest --version",
    "status": "pytest --daemon-status",
    "status_plugin": "pytest --daemon-status (PYTEST_FASTCOLLECT_EARLY=0)",
    "cold": "pytest FILE (cold, --no-daemon)",
    "warm_on": "pytest FILE (standby on)",
    "warm_off": "pytest FILE (standby off)",
    "thin_on": "pytest-fastcollect run FILE (standby on)",
    "thin_off": "pytest-fastcollect run FILE (standby off)",
}


def split(m: dict[str, float], spawned: float, ended: float) -> dict[str, float]:
    """One warm run's phases in ms (see the module docstring)."""
    ms = 1000.0
    start = m.get("collection_start", m["worker"])
    finish = m.get("collection_finish", start)
    tests_start = m.get("tests_start", finish)
    tests_end = m.get("tests_end", tests_start)
    bodies = m.get("bodies", 0.0)
    return {
        "client": (m["received"] - spawned) * ms,
        "handoff": (m["worker"] - m["received"]) * ms,
        "setup": (start - m["worker"]) * ms,
        "collection": (finish - start) * ms,
        "bodies": bodies * ms,
        "per_test": (tests_end - tests_start - bodies) * ms + (tests_start - finish) * ms,
        "report": (m["exit"] - tests_end) * ms,
        "exit": (ended - m["exit"]) * ms,
        "total": (ended - spawned) * ms,
        "overhead": (ended - spawned - bodies) * ms,
        "worker_cpu": (m["cpu_exit"] - m["cpu_worker"]) * ms,
        # CPU time, which a loaded machine does not stretch: the worker's per phase.
        "setup_cpu": (m.get("cpu_collection_start", m["cpu_worker"]) - m["cpu_worker"]) * ms,
        "tests_cpu": (
            m.get("cpu_tests_end", m["cpu_exit"]) - m.get("cpu_tests_start", m["cpu_exit"])
        )
        * ms,
        "standby": m.get("standby", 0.0),
    }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Timeline:
    """The lines the workers of one daemon append to its timeline file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new(self) -> list[dict[str, float]]:
        if not self.path.exists():
            return []
        with self.path.open() as fh:
            fh.seek(self.offset)
            text = fh.read()
            self.offset = fh.tell()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def measure_project(
    name: str, src: Path, test_file: str | None, mode: str, ws: b.Workspace, reps: int
) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    pytest, thin = b.pytest_cmd(), b.thin_cmd()
    roots: dict[str, Path] = {}
    daemons: dict[str, b.Daemon] = {}
    envs: dict[str, dict[str, str]] = {}
    timelines: dict[str, Timeline] = {}
    for standby in ("on", "off"):
        env = b.make_env(ws.runtime(f"{name}{standby}"), mode)
        env["PYTEST_FASTCOLLECT_STANDBY"] = "auto" if standby == "on" else "off"
        root = b.copy_project(src, ws.base / f"{name}-{mode}-{standby}" / src.name)
        roots[standby], envs[standby] = root, env
        timelines[standby] = Timeline(ws.base / f"{name}-{standby}-timeline.jsonl")
    file = test_file or b.default_test_file(roots["on"])
    ok = (0, 1)
    for standby, root in roots.items():
        # A cold run first: bytecode caches (cached mode) and a working project.
        b.run_checked([*pytest, "--no-daemon", file], root, envs[standby], ok=ok)
        daemons[standby] = ws.daemon(root, envs[standby])
        b.log(f"[{name}/{mode}] starting the daemon (standby {standby})")
        daemons[standby].start()

    samples: dict[str, list[dict[str, float]]] = {
        k: [] for k in LABELS if k.startswith(("warm_", "thin_"))
    }
    notices: list[str] = []

    def warm(kind: str, standby: str, record: bool = True) -> Callable[[], float]:
        cmd = [*pytest, file] if kind == "warm" else [*thin, "run", file]
        env = {**envs[standby], "PYTEST_FASTCOLLECT_TIMELINE": str(timelines[standby].path)}

        def run() -> float:
            timelines[standby].new()
            cpu = children_cpu()
            spawned = time.monotonic()
            sample = b.run_checked(cmd, roots[standby], env, ok=(0, 1, 2, 3, 4, 5))
            ended = time.monotonic()
            client_cpu = (children_cpu() - cpu) * 1000
            notices.extend(sample.notices)
            lines = timelines[standby].new()
            if record and len(lines) == 1:
                phases = split(lines[0], spawned, ended)
                phases["client_cpu"] = client_cpu
                # Client and worker CPU less the test loop's: the overhead, unstretched.
                phases["overhead_cpu"] = client_cpu + phases["worker_cpu"] - phases["tests_cpu"]
                samples[f"{kind}_{standby}"].append(phases)
            elif record:
                notices.append(f"{kind}_{standby}: {len(lines)} timeline lines")
            return ended - spawned

        return run

    cpu_of: dict[str, list[float]] = {}

    def plain(
        name: str, cmd: list[str], standby: str = "on", env: dict[str, str] | None = None
    ) -> Callable[[], float]:
        def run() -> float:
            cpu = children_cpu()
            full_env = {**envs[standby], **(env or {})}
            seconds = b.run_checked(cmd, roots[standby], full_env, ok=(0, 1, 5)).seconds
            cpu_of.setdefault(name, []).append(children_cpu() - cpu)
            return seconds

        return run

    # Untimed: the first forks fault in pages; runs teach the daemons lazy imports.
    for standby in roots:
        for kind in ("warm", "thin"):
            warm(kind, standby, record=False)()
        learned = wait_for_learning(daemons[standby])
        b.log(f"[{name}/{mode}] standby {standby}: learned imports {learned}")
    variants: dict[str, Callable[[], float]] = {
        "python": plain("python", [sys.executable, "-c", "pass"]),
        "version": plain("version", [*pytest, "--version"]),
        "status": plain("status", [*pytest, "--daemon-status"]),
        # The same verb answered by the plugin, after pytest's import: what the hook saves.
        "status_plugin": plain(
            "status_plugin", [*pytest, "--daemon-status"], env={"PYTEST_FASTCOLLECT_EARLY": "0"}
        ),
        "cold": plain("cold", [*pytest, "--no-daemon", file]),
    }
    for kind in ("warm", "thin"):
        for standby in ("on", "off"):
            variants[f"{kind}_{standby}"] = warm(kind, standby)
    b.log(f"[{name}/{mode}] {reps} repetitions of {len(variants)} variants")
    times = b.alternate(variants, reps)
    collect = measure_collect(daemons["on"], reps)

    status_on = daemons["on"].status()["metrics"]
    status_off = daemons["off"].status()["metrics"]
    b.check(checks, "every warm run was served, with no notice", not notices, str(notices[:3]))
    b.check(
        checks,
        "standby on: the runs took the standby worker",
        status_on["standby_runs"] >= 2 * reps,
        f"standby {status_on['standby_runs']}, fresh {status_on['fresh_runs']}",
    )
    b.check(
        checks,
        "standby off: every run forked afresh",
        status_off["standby_runs"] == 0,
        f"standby {status_off['standby_runs']}",
    )
    b.check(checks, "repeated collects came from the cache", collect["all_cached"], "")
    result = summarise(str(roots["on"]), mode, file, times, samples, collect, checks)
    result["name"] = name
    result["cpu"] = {k: b.summary(v) for k, v in cpu_of.items()}
    cpu_med = {k: result["cpu"][k]["median_ms"] for k in cpu_of}
    result["derived"]["status_over_python_cpu_ms"] = b.diff(cpu_med["status"], cpu_med["python"])
    return result


def measure_collect(daemon: b.Daemon, reps: int) -> dict[str, Any]:
    client = daemon.client()
    first = client.collect(daemon.root)
    times, cached = [], []
    for _ in range(max(reps, 5)):
        started = time.perf_counter()
        answer = client.collect(daemon.root)
        times.append(time.perf_counter() - started)
        cached.append(bool(answer.get("cached")))
    return {
        "first_ms": round(first["collection_time"] * 1000, 3),
        "count": first["count"],
        "repeat": b.summary(times),
        "all_cached": all(cached[1:]),  # the first repeat may still find a fresh mtime
    }


def wait_for_learning(daemon: b.Daemon, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        warmup = daemon.status()["warmup"]
        if warmup.get("pending_imports", 0) == 0 or time.monotonic() > deadline:
            return int(warmup.get("learned_imports", 0))
        time.sleep(0.1)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarise(
    name: str,
    mode: str,
    file: str,
    times: dict[str, list[float]],
    samples: dict[str, list[dict[str, float]]],
    collect: dict[str, Any],
    checks: list[dict[str, Any]],
) -> dict[str, Any]:
    results = {k: b.summary(v) for k, v in times.items()}
    phases = {
        k: {p: _median([s[p] for s in v]) for p in (*PHASES, *TOTALS)} for k, v in samples.items()
    }
    med = {k: results[k]["median_ms"] for k in results}
    status_over_python = b.diff(med["status"], med["python"])
    figures = {
        "thin_minus_bodies_ms": phases["thin_on"]["overhead"],
        "warm_minus_bodies_ms": phases["warm_on"]["overhead"],
        "thin_overhead_cpu_ms": phases["thin_on"]["overhead_cpu"],
        "warm_overhead_cpu_ms": phases["warm_on"]["overhead_cpu"],
        "repeated_collect_ms": collect["repeat"]["median_ms"],
        "status_over_python_ms": status_over_python,
        "status_plugin_over_status": b.ratio(med["status_plugin"], med["status"]),
    }
    targets = {
        "thin": _within(figures["thin_minus_bodies_ms"], TARGETS["thin"]),
        "warm": _within(figures["warm_minus_bodies_ms"], TARGETS["warm"]),
        "collect": _within(figures["repeated_collect_ms"], TARGETS["collect"]),
        "status": _within(status_over_python, TARGETS["status"]),
    }
    standby_gain = {
        f"{kind}{cpu}": b.diff(
            phases[f"{kind}_off"][f"overhead{cpu}"], phases[f"{kind}_on"][f"overhead{cpu}"]
        )
        for kind in ("warm", "thin")
        for cpu in ("", "_cpu")
    }
    return {
        "project": name,
        "bytecode": mode,
        "file": file,
        "results": results,
        "phases": phases,
        "samples": samples,
        "collect": collect,
        "derived": figures,
        "targets": targets,
        "standby_gain_ms": standby_gain,
        "checks": checks,
    }


def _within(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def report(data: dict[str, Any]) -> None:
    for key, m in data["modes"].items():
        rows = b.timing_rows(m["results"], LABELS)
        b.print_table(
            f"bench_overhead [{key}] {m['file']}",
            ["measurement", "median ms", "min ms", "p95 ms", "n"],
            rows,
        )
        header = ["phase (median ms)", *[k for k in m["phases"]]]
        phase_rows = [
            [p, *[b.fmt(m["phases"][k][p]) for k in m["phases"]]] for p in (*PHASES, *TOTALS)
        ]
        b.print_table(f"  where the time goes [{key}]", header, phase_rows)
        f, t, c = m["derived"], m["targets"], m["collect"]
        print(
            f"  thin - bodies {b.fmt(f['thin_minus_bodies_ms'], ' ms')} (<= 40: {t['thin']}); "
            f"pytest FILE - bodies {b.fmt(f['warm_minus_bodies_ms'], ' ms')} (<= 70: {t['warm']}); "
            f"repeated collect {b.fmt(f['repeated_collect_ms'], ' ms')} (<= 10: {t['collect']}, "
            f"first {b.fmt(c['first_ms'], ' ms')}, {c['count']} tests); --daemon-status over "
            f"python -c pass {b.fmt(f['status_over_python_ms'], ' ms')} (<= 100: {t['status']}; "
            f"plugin / start-up hook {b.fmt(f['status_plugin_over_status'], 'x')})"
        )
        g = m["standby_gain_ms"]
        print(
            f"  CPU (load-independent): overhead pytest FILE {b.fmt(f['warm_overhead_cpu_ms'], ' ms')}"
            f", thin {b.fmt(f['thin_overhead_cpu_ms'], ' ms')}; --daemon-status over python -c "
            f"pass {b.fmt(f['status_over_python_cpu_ms'], ' ms')}"
        )
        print(
            f"  standby off - on, overhead: pytest FILE {b.fmt(g['warm'], ' ms')} "
            f"({b.fmt(g['warm_cpu'], ' ms')} CPU), thin {b.fmt(g['thin'], ' ms')} "
            f"({b.fmt(g['thin_cpu'], ' ms')} CPU)"
        )
        b.print_checks(m["checks"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    b.add_common_args(parser, reps=9)
    parser.add_argument(
        "--projects",
        nargs="+",
        default=list(PROJECTS),
        help="which examples to measure (heavy, scientific) or paths to projects",
    )
    parser.add_argument("--file", default=None, help="the test file (default: the first test_*.py)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args(argv)
    reps = b.reps_from(args, 9)
    modes = b.modes_from(args)
    data: dict[str, Any] = {
        "benchmark": "overhead",
        "issue": 12,
        "config": {"reps": reps, "quick": args.quick, "modes": modes, "projects": args.projects},
        "environment": b.environment(),
        "modes": {},
    }
    with b.workspace(args.keep) as ws:
        try:
            for project in args.projects:
                src = PROJECTS.get(project) or Path(project).resolve()
                for mode in modes:
                    key = f"{Path(project).name}/{mode}"
                    data["modes"][key] = measure_project(
                        Path(project).name, src, args.file, mode, ws, reps
                    )
                    ws.stop_daemons()
        except Exception as exc:
            data["error"] = b.describe(exc)
            b.log(f"error: {data['error']}")
    return b.finish(data, ws.pids, report, args.output, "overhead.json")


if __name__ == "__main__":
    sys.exit(main())
