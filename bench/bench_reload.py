"""Benchmark for issue 4: save-to-ready latency of the reload on save.

Generates a project of configurable size (``--modules`` source modules in
``--depth`` import levels, every one importing ``app/core.py``, and
``--tests`` test files), starts its daemon, then alternates two kinds of
ordinary edit: a leaf test file and the core module (whose reverse closure is
every module and test). For each it measures save-to-ready (write the file,
then poll ``DaemonClient.get_status()`` until a new reload is recorded, no
change is pending and the generation moved on; the latency is the daemon's
``reload.last.at`` minus the moment the save completed, so the polling
interval does not blur it), the daemon's own ``reload.last.duration_ms``,
and a run started the instant after the save (against a run with no edit).
Every generated test file checks that its own and core's ``REV`` match the
file on disk, so a stale run fails. Finally it shows that no edit replaced
the warm process, and measures one full replacement
(``DaemonClient.reload()``) for scale.

Run: ``python bench/bench_reload.py [--quick] [--modules 200 --depth 5 --tests 50]``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import benchlib as b

REV_LINE = re.compile(r"^REV = (\d+)$", re.MULTILINE)
LEAF_TARGET_MS = 100.0
READY_DEADLINE_S = 60.0
REWARM_DEADLINE_S = 15.0


# -- the generated project ------------------------------------------------------------


def level_sizes(modules: int, depth: int) -> list[int]:
    """Modules per import level, never fewer deeper down, so that every module
    is imported by one of the level below and the tests reach all of them."""
    depth = max(1, min(depth, modules))
    return [modules // depth + (1 if i >= depth - modules % depth else 0) for i in range(depth)]


def generate(
    dest: Path,
    modules: int,
    depth: int,
    tests: int,
    *,
    tests_per_file: int = 4,
    ini_extra: str = "",
) -> dict[str, Any]:
    """Every source module imports ``app.core`` and one module of the level
    above, and the test files import every module of the deepest level, so
    core's reverse closure is the whole project and all of it is warm."""
    sizes = level_sizes(modules, depth)
    (dest / "app").mkdir(parents=True)
    (dest / "tests").mkdir()
    (dest / "pytest.ini").write_text(f"[pytest]\ntestpaths = tests\npythonpath = .\n{ini_extra}")
    (dest / "app" / "__init__.py").write_text("")
    (dest / "app" / "core.py").write_text(
        '"""The module every other one imports."""\n\n'
        "from dataclasses import dataclass\n\n"
        "REV = 0\nSCALE = 3\n\n\n"
        "def scale(x):\n    return x * SCALE\n\n\n"
        "@dataclass\nclass Record:\n    name: str\n    value: int = 0\n"
    )
    for level, size in enumerate(sizes):
        for i in range(size):
            lines = ["from app import core\n"]
            if level:
                lines.append(f"from app import m{level - 1}_{i % sizes[level - 1]} as parent\n")
            lines.append(f"\nRECORD = core.Record('m{level}_{i}', {i})\n\n\n")
            below = " + parent.f(x)" if level else ""
            lines.append(f"def f(x):\n    return core.scale(x){below}\n\n\n")
            lines.append(
                f"class Thing{level}_{i}:\n"
                "    def __init__(self):\n        self.record = RECORD\n\n"
                "    def value(self):\n        return f(self.record.value)\n"
            )
            (dest / "app" / f"m{level}_{i}.py").write_text("".join(lines))
    deepest, last = len(sizes) - 1, sizes[-1]
    for j in range(tests):
        leaves = [k for k in range(last) if k % tests == j] or [j % last]
        imports = "".join(f"from app import m{deepest}_{k}\n" for k in leaves)
        body = [
            "import pathlib\nimport re\n\n",
            f"from app import core\n{imports}\n",
            "LEAVES = [" + ", ".join(f"m{deepest}_{k}" for k in leaves) + "]\n",
            "REV = 0\n\n\n",
            "def _rev_on_disk(path):\n",
            "    text = pathlib.Path(path).read_text()\n",
            "    return int(re.search(r'^REV = (\\d+)$', text, re.M).group(1))\n\n\n",
            "def test_fresh():\n    assert REV == _rev_on_disk(__file__)\n"
            "    assert core.REV == _rev_on_disk(core.__file__)\n",
        ]
        body += [
            f"\n\ndef test_leaves_{k}():\n"
            f"    assert all(leaf.f({k}) == {len(sizes)} * core.SCALE * {k} for leaf in LEAVES)\n"
            for k in range(tests_per_file - 1)
        ]
        (dest / "tests" / f"test_{j}.py").write_text("".join(body))
    return {
        "modules": sum(sizes),
        "levels": sizes,
        "test_files": tests,
        "tests": tests * tests_per_file,
        "core_direct_importers": sum(sizes),
    }


def bump(path: Path, style: str) -> int:
    """An ordinary save: change the REV constant (often the same size)."""
    text = path.read_text()
    match = REV_LINE.search(text)
    assert match is not None, path
    rev = int(match.group(1)) + 1
    new = REV_LINE.sub(f"REV = {rev}", text, count=1)
    if style == "rename":
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new)
        os.replace(tmp, path)
    else:
        path.write_text(new)
    return rev


# -- measurements ----------------------------------------------------------------------


class Poller:
    def __init__(self, daemon: b.Daemon, interval: float) -> None:
        self.client = daemon.client()
        self.interval = interval
        self.warm_modules = 0
        self.unsettled = 0

    def settle(self, quiet: float = 0.2, deadline: float = REWARM_DEADLINE_S) -> dict[str, Any]:
        """Wait until nothing is pending, no new event arrived for ``quiet``
        seconds and the warm process holds every project module again (test
        modules purged by a reload may be re-imported later, in the
        background), so one measurement's tail does not land in the next."""
        end = time.perf_counter() + deadline
        seen, since = -1, time.perf_counter()
        while True:
            s = self.client.get_status()
            events = s["reload"]["events_seen"]
            if events != seen or s["reload"]["pending_changes"] or s["state"] != "ready":
                seen, since = events, time.perf_counter()
            elif time.perf_counter() - since >= quiet and s["project_modules"] >= self.warm_modules:
                return s
            if time.perf_counter() > end:
                if s["state"] != "ready" or s["reload"]["pending_changes"]:
                    raise b.BenchError(
                        f"the daemon did not settle within {deadline:.0f}s: state {s['state']}, "
                        f"{s['reload']['pending_changes']} pending"
                    )
                # Not every module came back (the daemon may leave purged
                # test modules to the next run): go on, and say so.
                self.unsettled += 1
                return s
            time.sleep(0.02)

    def save_to_ready(self, path: Path, rel: str, style: str) -> dict[str, Any]:
        """Save, then poll until the daemon has applied the change. The latency
        is taken from the daemon's own clock (``reload.last.at``, the moment the
        reload finished) so that the polling interval does not blur it; the poll
        that noticed it gives an upper bound."""
        before = self.client.get_status()
        last0 = before["reload"]["last"]
        bump(path, style)
        saved_wall, saved = time.time(), time.perf_counter()
        polls = 0
        while True:
            s = self.client.get_status()
            polls += 1
            last = s["reload"]["last"]
            new_reload = last is not None and (last0 is None or last["at"] != last0["at"])
            replaced = s["reload"]["replacements"] != before["reload"]["replacements"]
            if (
                s["state"] == "ready"
                and s["generation"] > before["generation"]
                and s["reload"]["pending_changes"] == 0
                and (new_reload or replaced)
            ):
                detected = time.perf_counter() - saved
                break
            if time.perf_counter() - saved > READY_DEADLINE_S:
                raise b.BenchError(f"no reload recorded {READY_DEADLINE_S:.0f}s after saving {rel}")
            time.sleep(self.interval)
        reloaded = new_reload and last is not None
        return {
            "ready_s": max(0.0, last["at"] - saved_wall) if reloaded and last else detected,
            "detected_s": detected,
            "duration_ms": last["duration_ms"] if reloaded and last else None,
            "modules": last["modules"] if reloaded and last else None,
            "files": last["files"] if reloaded and last else [],
            "replaced": replaced,
            "polls": polls,
        }


def measure_mode(mode: str, args: argparse.Namespace, ws: b.Workspace, reps: int) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    env = b.make_env(ws.runtime(mode), mode)
    root = ws.base / mode / "proj"
    ini = "" if args.debounce_ms is None else f"daemon_debounce_ms = {args.debounce_ms}\n"
    shape = generate(root, args.modules, args.depth, args.tests, ini_extra=ini)
    pytest = b.pytest_cmd()
    core = root / "app" / "core.py"
    test_files = sorted((root / "tests").glob("test_*.py"), key=lambda p: int(p.stem.split("_")[1]))

    b.run_checked([*pytest, "--no-daemon", "-q", "tests/test_0.py"], root, env)
    daemon = ws.daemon(root, env)
    b.log(
        f"[{mode}] starting the daemon for {shape['modules']} modules "
        f"and {shape['test_files']} test files"
    )
    start = daemon.start()
    poller = Poller(daemon, args.poll_ms / 1000)
    status0 = poller.settle()
    poller.warm_modules = status0["project_modules"]
    b.check(
        checks,
        "warm-up imported every test file",
        status0["warmup"]["imported"] == shape["test_files"] and not status0["warmup"]["failures"],
        f"{status0['warmup']['imported']}/{status0['warmup']['total']}, "
        f"{len(status0['warmup']['failures'])} failures",
    )

    # Status round trip: the resolution of the polling below.
    poll_cost = []
    for _ in range(20):
        t = time.perf_counter()
        poller.client.get_status()
        poll_cost.append(time.perf_counter() - t)

    edits = 0
    leaf_index = 0
    ready: dict[str, list[dict[str, Any]]] = {"leaf": [], "core": []}

    def save(kind: str) -> float:
        nonlocal edits, leaf_index
        if kind == "leaf":
            path = test_files[leaf_index % len(test_files)]
            leaf_index += 1
        else:
            path = core
        rel = str(path.relative_to(root))
        result = poller.save_to_ready(path, rel, args.save)
        edits += 1
        result["file"] = rel
        ready[kind].append(result)
        poller.settle()
        return float(result["ready_s"])

    b.log(f"[{mode}] save-to-ready, {reps} reps")
    save_samples = b.alternate({"leaf": lambda: save("leaf"), "core": lambda: save("core")}, reps)

    run_codes: dict[str, list[int]] = {"leaf": [], "core": [], "noedit": []}

    def run_after(kind: str) -> float:
        nonlocal edits, leaf_index
        target = test_files[leaf_index % len(test_files)] if kind == "leaf" else test_files[0]
        started = time.perf_counter()
        if kind == "leaf":
            leaf_index += 1
            bump(target, args.save)
            edits += 1
        elif kind == "core":
            bump(core, args.save)
            edits += 1
        sample = b.timed([*pytest, "-q", str(target.relative_to(root))], root, env)
        elapsed = time.perf_counter() - started
        run_codes[kind].append(sample.returncode)
        if sample.notices or sample.returncode:
            b.log(
                f"[{mode}] run after a {kind} edit: exit {sample.returncode} {sample.notices}\n"
                f"{sample.stdout[-2000:]}"
            )
        poller.settle()
        return elapsed

    b.log(f"[{mode}] runs started right after a save, {reps} reps")
    run_samples = b.alternate(
        {
            "leaf": lambda: run_after("leaf"),
            "core": lambda: run_after("core"),
            "noedit": lambda: run_after("noedit"),
        },
        reps,
    )

    status1 = poller.settle()
    reloads = status1["reload"]["reloads"] - status0["reload"]["reloads"]
    b.check(
        checks,
        "no ordinary edit replaced the warm process",
        status1["reload"]["replacements"] == status0["reload"]["replacements"],
        f"replacements before {status0['reload']['replacements']}, "
        f"after {status1['reload']['replacements']}",
    )
    b.check(checks, "one reload per edit", reloads == edits, f"{reloads} reloads for {edits} edits")
    b.check(
        checks,
        "every run right after a save saw the new code",
        all(code == 0 for codes in run_codes.values() for code in codes),
        f"exit codes {run_codes}",
    )
    b.check(
        checks,
        "every reload names the saved file",
        all(r["files"] == [r["file"]] for r in ready["leaf"] + ready["core"]),
        str(sorted({(r["file"], tuple(r["files"])) for r in ready["leaf"] + ready["core"]})[:4]),
    )
    b.check(
        checks,
        "a leaf edit reloads one module",
        all(r["modules"] == 1 for r in ready["leaf"]),
        str([r["modules"] for r in ready["leaf"]]),
    )
    closure = shape["modules"] + shape["test_files"] + 1
    b.check(
        checks,
        "a core edit reloads core and every module that imports it",
        all((r["modules"] or 0) >= shape["modules"] + 1 for r in ready["core"]),
        f"{[r['modules'] for r in ready['core']]} (closure: {shape['modules']} modules + "
        f"{shape['test_files']} test files + core = {closure})",
    )

    b.log(f"[{mode}] full replacement for scale, {args.replace_reps} times")
    replace_ms = []
    for _ in range(args.replace_reps):
        replace_ms.append(float(poller.client.reload()["duration_ms"]))
        poller.settle()
    status2 = poller.client.get_status()

    results = {
        "save_to_ready_leaf": b.summary(save_samples["leaf"]),
        "save_to_ready_core": b.summary(save_samples["core"]),
        "detected_leaf": b.summary([r["detected_s"] for r in ready["leaf"]]),
        "detected_core": b.summary([r["detected_s"] for r in ready["core"]]),
        "reload_duration_leaf": b.summary(
            [r["duration_ms"] / 1000 for r in ready["leaf"] if r["duration_ms"]]
        ),
        "reload_duration_core": b.summary(
            [r["duration_ms"] / 1000 for r in ready["core"] if r["duration_ms"]]
        ),
        "run_after_leaf_save": b.summary(run_samples["leaf"]),
        "run_after_core_save": b.summary(run_samples["core"]),
        "run_no_edit": b.summary(run_samples["noedit"]),
        "full_replacement": b.summary([x / 1000 for x in replace_ms]),
        "status_round_trip": b.summary(poll_cost),
    }
    med = {k: v["median_ms"] for k, v in results.items()}
    return {
        "project": str(root),
        "shape": shape,
        "start": {
            "wall_ms": round(start.seconds * 1000, 1),
            "warmup": status0["warmup"],
            "cached_modules": status0["cached_modules"],
            "project_modules": status0["project_modules"],
        },
        "watcher": status0["reload"]["watcher"],
        "settle_timeouts": poller.unsettled,
        "results": results,
        "edits": {"leaf": ready["leaf"], "core": ready["core"]},
        "reload_stats": status1["reload"],
        "replacements": {
            "before": status0["reload"]["replacements"],
            "after_edits": status1["reload"]["replacements"],
            "after_full_replacements": status2["reload"]["replacements"],
        },
        "derived": {
            "core_over_leaf_save_to_ready": b.ratio(
                med["save_to_ready_core"], med["save_to_ready_leaf"]
            ),
            "core_reload_per_module_ms": b.ratio(med["reload_duration_core"], closure),
            "core_reload_over_full_replacement": b.ratio(
                med["reload_duration_core"], med["full_replacement"]
            ),
            "run_after_leaf_save_minus_no_edit_ms": b.diff(
                med["run_after_leaf_save"], med["run_no_edit"]
            ),
            "run_after_core_save_minus_no_edit_ms": b.diff(
                med["run_after_core_save"], med["run_no_edit"]
            ),
        },
        "targets": {
            "leaf_ready_within_100ms": None
            if med["save_to_ready_leaf"] is None
            else med["save_to_ready_leaf"] <= LEAF_TARGET_MS,
            "ordinary_edits_never_replace": status1["reload"]["replacements"]
            == status0["reload"]["replacements"],
        },
        "checks": checks,
    }


LABELS = {
    "save_to_ready_leaf": "save-to-ready, leaf test edit",
    "reload_duration_leaf": "  daemon reload.last.duration_ms",
    "save_to_ready_core": "save-to-ready, core module edit",
    "reload_duration_core": "  daemon reload.last.duration_ms",
    "run_after_leaf_save": "run started right after leaf save",
    "run_after_core_save": "run started right after core save",
    "run_no_edit": "run with no edit",
    "full_replacement": "full replacement (DaemonClient.reload)",
    "detected_leaf": "leaf edit seen ready by polling",
    "detected_core": "core edit seen ready by polling",
    "status_round_trip": "get_status() round trip (poll cost)",
}


def report(data: dict[str, Any]) -> None:
    for mode, m in data["modes"].items():
        r = m["results"]
        rows = b.timing_rows(r, LABELS)
        s = m["shape"]
        b.print_table(
            f"bench_reload [{mode}] ({s['modules']} modules in {len(s['levels'])} levels, "
            f"{s['test_files']} test files; watcher {m['watcher']}; "
            f"start {m['start']['wall_ms']:.0f} ms)",
            ["measurement", "median ms", "min ms", "p95 ms", "n"],
            rows,
        )
        d, t = m["derived"], m["targets"]
        print(
            f"  core/leaf save-to-ready {b.fmt(d['core_over_leaf_save_to_ready'], 'x')}; "
            f"core reload {b.fmt(d['core_reload_per_module_ms'], ' ms')}/module, "
            f"{b.fmt(d['core_reload_over_full_replacement'], 'x')} of a full replacement; "
            f"leaf ready <= {LEAF_TARGET_MS:.0f} ms: {t['leaf_ready_within_100ms']}"
        )
        print(
            f"  replacements: before {m['replacements']['before']}, after edits "
            f"{m['replacements']['after_edits']}, after full replacements "
            f"{m['replacements']['after_full_replacements']}"
        )
        b.print_checks(m["checks"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    b.add_common_args(parser, reps=10)
    parser.add_argument("--modules", type=int, default=200, help="source modules (default 200)")
    parser.add_argument("--depth", type=int, default=5, help="import levels (default 5)")
    parser.add_argument("--tests", type=int, default=50, help="test files (default 50)")
    parser.add_argument(
        "--save",
        choices=("inplace", "rename"),
        default="inplace",
        help="how the edit is saved: in place, or temp file + rename (default inplace)",
    )
    parser.add_argument(
        "--poll-ms",
        type=float,
        default=20.0,
        help="status polling interval (default 20; the latency itself comes from the "
        "daemon's reload timestamp, so sparse polling only delays detection)",
    )
    parser.add_argument(
        "--replace-reps",
        type=int,
        default=None,
        help="full replacements measured for scale (default 2, --quick 1)",
    )
    parser.add_argument(
        "--debounce-ms",
        type=int,
        default=None,
        help="set daemon_debounce_ms in the generated pytest.ini (default: the daemon's "
        "default); save-to-ready includes this quiet period",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp directory (for debugging)"
    )
    args = parser.parse_args(argv)
    reps = b.reps_from(args, 10)
    args.replace_reps = args.replace_reps or (1 if args.quick else 2)
    data: dict[str, Any] = {
        "benchmark": "reload",
        "issue": 4,
        "config": {
            "reps": reps,
            "quick": args.quick,
            "modes": b.modes_from(args),
            "modules": args.modules,
            "depth": args.depth,
            "tests": args.tests,
            "save": args.save,
            "poll_ms": args.poll_ms,
            "replace_reps": args.replace_reps,
            "debounce_ms": args.debounce_ms,
        },
        "environment": b.environment(),
        "modes": {},
    }
    with b.workspace(args.keep) as ws:
        try:
            for mode in b.modes_from(args):
                data["modes"][mode] = measure_mode(mode, args, ws, reps)
        except Exception as exc:
            # Recorded, not raised: the JSON still says what was measured, and
            # the workspace still stops every daemon on the way out.
            data["error"] = b.describe(exc)
            b.log(f"error: {data['error']}")
    return b.finish(data, ws.pids, report, args.output, "reload.json")


if __name__ == "__main__":
    sys.exit(main())
