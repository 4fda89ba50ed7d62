"""Warm when it matters (issue 9): one-file runs, the first run after a save, idle work.

For each project (examples/scientific: numpy + pandas, a conftest that
imports the project; examples/heavy: sympy) in each bytecode mode:

- steady one-file runs, cold vs warm ``pytest`` vs the thin client, alternated;
- the first run right after a save (no settle), for: a test edit, a leaf
  module edit, an edit to a module a conftest imports, a plain conftest edit,
  and a conftest edit that needs a new project layer; each paired with a
  cold run of the same file right after it; and the first run 0.5 s after a
  test edit, as a user runs (the pyc written ahead, warm/pyc_writer.py);
- a run that arrives while idle work (re-warm of purged test modules) goes on.

Targets: scientific cold/warm >= 3x, cold/thin >= 5x; first run after a test
or leaf edit <= 1.5x a steady warm run; after an edit to a module a conftest
imports <= 0.6x cold; no run through the daemon slower than its paired cold
run. Exit 1 when a sanity check fails (not when a target is missed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as b

PROJECTS = {
    "scientific": {
        "file": "tests/test_stats.py",
        "edits": {
            "test edit": ("tests/test_stats.py", "", "\n\nFIRST_RUN_EDIT = 1\n"),
            "leaf module edit": ("labstats/stats.py", "", "\n\nFIRST_RUN_EDIT = 1\n"),
            "module a conftest imports": ("labstats/units.py", "", "\n\nFIRST_RUN_EDIT = 1\n"),
            "plain conftest edit": ("tests/conftest.py", "", "\n\nFIRST_RUN_EDIT = 1\n"),
            "conftest edit needing a new layer": (
                "tests/conftest.py",
                "",
                "\n\nimport os\n\nos.environ.setdefault('FIRST_RUN_EDIT', '1')\n",
            ),
        },
        "core": "labstats/registry.py",
    },
    "heavy": {
        "file": "tests/test_algebra.py",
        "edits": {
            "test edit": ("tests/test_algebra.py", "", "\n\nFIRST_RUN_EDIT = 1\n"),
            "leaf module edit": ("calc/symbolic.py", "", "\n\nFIRST_RUN_EDIT = 1\n"),
            "plain conftest edit": ("tests/conftest.py", "", "\n\nFIRST_RUN_EDIT = 1\n"),
            "conftest edit needing a new layer": (
                "tests/conftest.py",
                "",
                "\n\nimport os\n\nos.environ.setdefault('FIRST_RUN_EDIT', '1')\n",
            ),
        },
        "core": "calc/__init__.py",
    },
}
OK_CODES = (0, 1)
# Seconds between a save and the run in the "run later" measurement: a user's pace,
# and within the daemon's 1 s idle delay (the re-warm has not started).
HUMAN_PAUSE = 0.5


def toggle(path: Path, base: str, extra: str) -> None:
    """Append ``extra`` if absent, else remove it: every call is a real change."""
    text = path.read_text()
    path.write_text(text[: -len(extra)] if text.endswith(extra) else text + extra)


def measure_project(name: str, mode: str, ws: b.Workspace, reps: int) -> dict[str, Any]:
    spec = PROJECTS[name]
    src = b.REPO / "examples" / name
    env = b.make_env(ws.runtime(f"{mode[:3]}{name[:3]}"), mode)
    root = b.copy_project(src, ws.base / mode / name)
    pytest, thin = b.pytest_cmd(), b.thin_cmd()
    test_file = str(spec["file"])
    checks: list[dict[str, Any]] = []
    b.run_checked([*pytest, "--no-daemon", test_file], root, env, ok=OK_CODES)
    daemon = ws.daemon(root, env)
    b.log(f"[{mode}] {name}: starting the daemon")
    daemon.start("tests")
    client = daemon.client()
    notices: list[str] = []

    def run(cmd: list[str], through: bool) -> float:
        sample = b.run_checked(cmd, root, env, ok=OK_CODES)
        if through:
            notices.extend(sample.notices)
        return sample.seconds

    cold = lambda: run([*pytest, "--no-daemon", test_file], False)  # noqa: E731
    warm = lambda: run([*pytest, test_file], True)  # noqa: E731
    thin_run = lambda: run([*thin, "run", test_file], True)  # noqa: E731
    warm()
    thin_run()
    settle(client)
    steady = b.alternate({"cold": cold, "warm": warm, "thin": thin_run}, reps)
    first: dict[str, dict[str, Any]] = {}
    for kind, (rel, base, extra) in dict(spec["edits"]).items():  # type: ignore[call-overload]
        first[kind] = first_after_save(root, rel, base, extra, warm, cold, client, reps)
        served = [n for n in notices if "running without" in n]
        b.check(checks, f"{kind}: every first run served", not served, "; ".join(served[:2]))
        if "new layer" not in kind:  # that one's first run comes from the base by design
            based = [n for n in notices if "imports the project itself" in n]
            b.check(
                checks, f"{kind}: every first run from the layer", not based, "; ".join(based[:2])
            )
        notices.clear()
    # As a user runs: a moment after the save (below the re-warm's 1 s idle delay).
    rel, base, extra = dict(spec["edits"])["test edit"]  # type: ignore[call-overload]
    later = f"test edit, run {HUMAN_PAUSE} s later"
    first[later] = first_after_save(
        root, rel, base, extra, warm, cold, client, reps, pause=HUMAN_PAUSE
    )
    served = [n for n in notices if "running without" in n or "imports the project" in n]
    b.check(
        checks, f"{later}: every first run served from the layer", not served, "; ".join(served[:2])
    )
    notices.clear()
    during_idle = run_during_idle(root, str(spec["core"]), warm, cold, client, max(2, reps // 3))
    replacements = client.get_status()["reload"]["replacements"]
    return {
        "project": str(root),
        "file": test_file,
        "steady": {k: b.summary(v) for k, v in steady.items()},
        "first_after_save": first,
        "during_idle_work": during_idle,
        "replacements": replacements,
        "checks": checks,
    }


def settle(client: Any, timeout: float = 60.0) -> None:
    """Wait until nothing is pending, learned imports included."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_status()
        quiet = status["warmup"].get("pending_imports", 0) == 0
        if status["state"] == "ready" and quiet and status["reload"]["pending_changes"] == 0:
            time.sleep(1.5)  # past the idle timers (re-warm, learning)
            return
        time.sleep(0.1)


def first_after_save(
    root: Path,
    rel: str,
    base: str,
    extra: str,
    warm: Callable[[], float],
    cold: Callable[[], float],
    client: Any,
    reps: int,
    pause: float = 0.0,
) -> dict[str, Any]:
    """Save, run through the daemon at once (or ``pause`` seconds later), then a paired
    cold run; settle; repeat."""
    firsts: list[float] = []
    colds: list[float] = []
    for _ in range(max(2, reps // 2)):
        toggle(root / rel, base, extra)
        if pause:
            time.sleep(pause)  # the scenario: the user's moment between save and run
        firsts.append(warm())
        colds.append(cold())
        settle(client)
    worst = max(f / c for f, c in zip(firsts, colds, strict=True))
    return {
        "first": b.summary(firsts),
        "paired_cold": b.summary(colds),
        "worst_first_over_paired_cold": round(worst, 3),
    }


def run_during_idle(
    root: Path,
    core: str,
    warm: Callable[[], float],
    cold: Callable[[], float],
    client: Any,
    rounds: int,
) -> dict[str, Any]:
    """A core edit purges every test module; a second after its reload the re-warm
    starts; a run that arrives then must not wait for it."""
    during: list[float] = []
    colds: list[float] = []
    for _ in range(rounds):
        toggle(root / core, "", "\n\nIDLE_EDIT = 1\n")
        warm()  # applies the reload
        time.sleep(1.05)  # the re-warm starts about now
        during.append(warm())
        colds.append(cold())
        settle(client)
    return {"run": b.summary(during), "paired_cold": b.summary(colds)}


def derive(m: dict[str, Any], name: str) -> dict[str, Any]:
    s = m["steady"]
    cold, warm, thin = (s[k]["median_ms"] for k in ("cold", "warm", "thin"))
    f = m["first_after_save"]
    out: dict[str, Any] = {
        "cold_over_warm": b.ratio(cold, warm),
        "cold_over_thin": b.ratio(cold, thin),
        "first_over_steady": {k: b.ratio(v["first"]["median_ms"], warm) for k, v in f.items()},
        "first_over_paired_cold": {
            k: b.ratio(v["first"]["median_ms"], v["paired_cold"]["median_ms"]) for k, v in f.items()
        },
    }
    targets: dict[str, Any] = {}
    if name == "scientific":
        targets["warm >= 3x cold"] = (out["cold_over_warm"] or 0) >= 3
        targets["thin >= 5x cold"] = (out["cold_over_thin"] or 0) >= 5
    for kind in ("test edit", "leaf module edit"):
        if kind in out["first_over_steady"]:
            targets[f"{kind}: first <= 1.5x steady"] = out["first_over_steady"][kind] <= 1.5
    if "module a conftest imports" in f:
        targets["conftest-imported edit: first <= 0.6x cold"] = (
            out["first_over_paired_cold"]["module a conftest imports"] <= 0.6
        )
    idle = m["during_idle_work"]
    runs = [*(v["first"]["median_ms"] / v["paired_cold"]["median_ms"] for v in f.values())]
    runs.append(idle["run"]["median_ms"] / idle["paired_cold"]["median_ms"])
    targets["no run slower than its paired cold run (medians)"] = max(runs) <= 1.0
    out["targets"] = targets
    return out


def report(data: dict[str, Any]) -> None:
    for key, m in data["modes"].items():
        d = m["derived"]
        rows = [
            [f"steady {k}", b.fmt(v["median_ms"]), b.fmt(v["p95_ms"]), v["n"]]
            for k, v in m["steady"].items()
        ]
        for kind, v in m["first_after_save"].items():
            rows.append(
                [
                    f"first after {kind}",
                    b.fmt(v["first"]["median_ms"]),
                    b.fmt(v["first"]["p95_ms"]),
                    v["first"]["n"],
                ]
            )
            rows.append(
                [
                    "  paired cold",
                    b.fmt(v["paired_cold"]["median_ms"]),
                    b.fmt(v["paired_cold"]["p95_ms"]),
                    v["paired_cold"]["n"],
                ]
            )
        idle = m["during_idle_work"]
        rows.append(
            [
                "run during idle work",
                b.fmt(idle["run"]["median_ms"]),
                b.fmt(idle["run"]["p95_ms"]),
                idle["run"]["n"],
            ]
        )
        rows.append(
            [
                "  paired cold",
                b.fmt(idle["paired_cold"]["median_ms"]),
                b.fmt(idle["paired_cold"]["p95_ms"]),
                idle["paired_cold"]["n"],
            ]
        )
        b.print_table(
            f"bench_warm [{key}] {m['file']}", ["measurement", "median ms", "p95 ms", "n"], rows
        )
        print(
            f"  cold/warm {b.fmt(d['cold_over_warm'], 'x')}, cold/thin {b.fmt(d['cold_over_thin'], 'x')}"
        )
        for kind in m["first_after_save"]:
            print(
                f"  {kind}: first/steady {b.fmt(d['first_over_steady'][kind], 'x')}, "
                f"first/paired cold {b.fmt(d['first_over_paired_cold'][kind], 'x')}"
            )
        print(f"  replacements: {m['replacements']}")
        for target, ok in d["targets"].items():
            print(f"  target {target}: {'met' if ok else 'MISSED'}")
        b.print_checks(m["checks"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    b.add_common_args(parser, reps=9)
    parser.add_argument(
        "--projects",
        nargs="*",
        default=list(PROJECTS),
        choices=list(PROJECTS),
        help="which examples",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args(argv)
    reps = b.reps_from(args, 9)
    data: dict[str, Any] = {
        "benchmark": "warm",
        "issue": 9,
        "config": {"reps": reps, "modes": b.modes_from(args), "projects": args.projects},
        "environment": b.environment(),
        "modes": {},
    }
    with b.workspace(args.keep) as ws:
        try:
            for mode in b.modes_from(args):
                for name in args.projects:
                    m = measure_project(name, mode, ws, reps)
                    m["derived"] = derive(m, name)
                    data["modes"][f"{mode}/{name}"] = m
                ws.stop_daemons()
        except Exception as exc:
            data["error"] = b.describe(exc)
            b.log(f"error: {data['error']}")
    data["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return b.finish(data, ws.pids, report, args.output, "warm.json")


if __name__ == "__main__":
    sys.exit(main())
