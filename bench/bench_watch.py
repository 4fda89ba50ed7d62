"""Benchmark for issue 14: watch mode's save-to-result latency against a cold rerun.

For ``examples/basic`` and ``examples/heavy`` (sympy), two copies of the
project: on copy A, ``pytest --daemon-watch`` runs (it starts the daemon
itself) with its output on a pipe; copy B has no daemon. Two kinds of
edit, each a new comment line appended to the file (the content changes,
the tests do not):

- ``test``: a test file (basic ``tests/test_money.py``, heavy
  ``tests/test_linalg.py``);
- ``leaf``: a module only one test file imports (basic ``shop/discounts.py``,
  heavy ``calc/linalg.py``).

``watch_<kind>``: save on A, then wait for watch mode's footer line; the
latency is from the moment the save completed to the moment that line was
read. ``cold_<kind>``: the same save on B, then ``pytest --no-daemon`` of the
same selection (what pytest-watcher and ptw do on a change, without their own
delay), from the save to its exit. The four alternate (A/B, rotating order)
with a quiet gap between measurements (the daemon's idle work after a
reload: re-warm and learned imports). ``bodies`` is the selected tests' own
time (setup + call + teardown, from a ``--junitxml`` run): the target is
results on screen within 300 ms plus the bodies.

Checks: each watch cycle names the saved file in its header, ran the same
selection as the cold run and passed, and no run fell back to cold; every
cold run passed.

Run: ``python bench/bench_watch.py [--quick] [--reps N] [--project basic|heavy|all]``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import benchlib as b

PROJECTS = {
    "basic": (b.REPO / "examples" / "basic", "tests/test_money.py", "shop/discounts.py"),
    "heavy": (b.HEAVY_EXAMPLE, "tests/test_linalg.py", "calc/linalg.py"),
}
TARGET_MS = 300.0
QUIET_GAP_S = 1.5  # the daemon's idle work (re-warm after 1 s) finishes in this gap
CYCLE_DEADLINE_S = 120.0
FOOTER = re.compile(r"^── (?:reload|restarted|run) .*exit (\d+)")


class WatchProcess:
    """``pytest --daemon-watch`` on a pipe; every line read, with the time it arrived."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*b.pytest_cmd(), "--daemon-watch"],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.perf_counter(), line.rstrip("\n")))

    def next_cycle(self, after: int) -> tuple[float, str, str, int]:
        """(when the footer arrived, the header, the footer, index after) of the next cycle."""
        header = ""
        deadline = time.perf_counter() + CYCLE_DEADLINE_S
        i = after
        while time.perf_counter() < deadline:
            while i < len(self.lines):
                at, line = self.lines[i]
                i += 1
                if FOOTER.match(line):
                    return at, header, line, i
                if line.startswith("── "):
                    header = line
            if self.proc.poll() is not None:
                break
            time.sleep(0.001)
        text = "\n".join(line for _, line in self.lines[-60:])
        raise b.BenchError(f"watch mode printed no footer within {CYCLE_DEADLINE_S}s:\n{text}")

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def append_comment(path: Path, n: int) -> None:
    with open(path, "a") as fh:
        fh.write(f"# bench edit {n}\n")


def bodies_ms(root: Path, env: dict[str, str], args: list[str], out: Path) -> float:
    b.run_checked([*b.pytest_cmd(), *args, f"--junitxml={out}", "-q"], root, env)
    tree = ET.parse(out)
    return round(sum(float(c.get("time", 0)) for c in tree.iter("testcase")) * 1000, 3)


def measure(args: argparse.Namespace, ws: b.Workspace, name: str, mode: str) -> dict[str, Any]:
    source, test_rel, leaf_rel = PROJECTS[name]
    runtime = ws.runtime(f"{name}{mode}")
    env = b.make_env(runtime, mode)
    a = b.copy_project(source, ws.base / f"{name}-{mode}-watch")
    cold_root = b.copy_project(source, ws.base / f"{name}-{mode}-cold")
    checks: list[dict[str, Any]] = []
    if mode == "cached":
        b.run_checked([*b.pytest_cmd(), "--no-daemon", "-q"], cold_root, env)
    daemon = ws.daemon(a, env)
    watch = WatchProcess(a, env)
    try:
        _, _, footer, seen = watch.next_cycle(0)
        record = daemon.record()
        if record is not None:
            daemon.pids.append(int(record["pid"]))
            daemon._created[int(record["pid"])] = float(record["create_time"])
        b.check(checks, "first run passed", footer.endswith("exit 0 ──"), footer)
        client = daemon.client()
        selections = {
            kind: sorted(
                os.path.relpath(f, os.path.realpath(a))
                for f in client.affected([str(a / rel)])["test_files"]
            )
            for kind, rel in (("test", test_rel), ("leaf", leaf_rel))
        }
        state = {"seen": seen, "n": 0}
        cycles: dict[str, list[str]] = {"test": [], "leaf": []}

        def watch_edit(kind: str, rel: str) -> float:
            time.sleep(QUIET_GAP_S)
            state["n"] += 1
            append_comment(a / rel, state["n"])
            saved = time.perf_counter()
            at, header, footer, state["seen"] = watch.next_cycle(state["seen"])
            cycles[kind].append(f"{header} / {footer}")
            return at - saved

        def cold_edit(kind: str, rel: str) -> float:
            time.sleep(QUIET_GAP_S)
            state["n"] += 1
            append_comment(cold_root / rel, state["n"])
            saved = time.perf_counter()
            b.run_checked([*b.pytest_cmd(), "--no-daemon", *selections[kind]], cold_root, env)
            return time.perf_counter() - saved

        variants = {
            "watch_test": lambda: watch_edit("test", test_rel),
            "cold_test": lambda: cold_edit("test", test_rel),
            "watch_leaf": lambda: watch_edit("leaf", leaf_rel),
            "cold_leaf": lambda: cold_edit("leaf", leaf_rel),
        }
        samples = b.alternate(variants, b.reps_from(args, default=10))
        results = {k: b.summary(v) for k, v in samples.items()}
        bodies = {
            kind: bodies_ms(a, env, selections[kind], runtime / f"bodies-{kind}.xml")
            for kind in selections
        }
        for kind, rel in (("test", test_rel), ("leaf", leaf_rel)):
            files = len(selections[kind])
            wanted = f"{rel} changed: {files} test file"
            b.check(
                checks,
                f"every {kind} edit ran its selection and passed",
                all(wanted in c and c.endswith("exit 0 ──") for c in cycles[kind]),
                f"{selections[kind]}; " + " | ".join(cycles[kind][:2]),
            )
        b.check(
            checks,
            "every watch run was served by the daemon",
            "running without" not in watch.text(),
            "",
        )
        status = client.get_status()
    finally:
        watch.stop()
        daemon.stop()
    derived: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for kind in ("test", "leaf"):
        w, c = results[f"watch_{kind}"]["median_ms"], results[f"cold_{kind}"]["median_ms"]
        derived[f"cold_over_watch_{kind}"] = b.ratio(c, w)
        derived[f"watch_minus_bodies_{kind}_ms"] = b.diff(w, bodies[kind])
        targets[f"{kind}_within_300ms_plus_bodies"] = (
            w is not None and w <= TARGET_MS + bodies[kind]
        )
    return {
        "project": str(a),
        "source": str(source),
        "selections": selections,
        "bodies_ms": bodies,
        "results": results,
        "derived": derived,
        "targets": targets,
        "replacements": status["reload"]["replacements"],
        "example_cycles": {k: v[:2] for k, v in cycles.items()},
        "checks": checks,
    }


def report(data: dict[str, Any]) -> None:
    rows = []
    for name, mode in data["modes"].items():
        for kind in ("test", "leaf"):
            r, d, t = mode["results"], mode["derived"], mode["targets"]
            rows.append(
                [
                    name,
                    f"{kind} edit ({', '.join(mode['selections'][kind])})",
                    b.fmt(r[f"watch_{kind}"]["median_ms"]),
                    b.fmt(r[f"cold_{kind}"]["median_ms"]),
                    b.fmt(d[f"cold_over_watch_{kind}"], "x"),
                    b.fmt(mode["bodies_ms"][kind]),
                    "met" if t[f"{kind}_within_300ms_plus_bodies"] else "missed",
                ]
            )
    b.print_table(
        "save-to-result, medians (ms): watch mode vs a cold rerun of the same selection",
        ["mode", "edit", "watch", "cold", "cold/watch", "bodies", "<= 300 + bodies"],
        rows,
        left=2,
    )
    for name, mode in data["modes"].items():
        print(f"{name}: replacements {mode['replacements'] or 'none'}")
        b.print_checks(mode["checks"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    b.add_common_args(parser, reps=10)
    parser.add_argument("--project", choices=(*PROJECTS, "all"), default="all")
    args = parser.parse_args(argv)
    names = list(PROJECTS) if args.project == "all" else [args.project]
    if "heavy" in names and not b.importable("sympy"):
        b.log("sympy is not installed: skipping examples/heavy")
        names.remove("heavy")
    data: dict[str, Any] = {
        "benchmark": "watch",
        "issue": 14,
        "config": {
            "reps": b.reps_from(args, default=10),
            "projects": names,
            "target_ms": TARGET_MS,
        },
        "environment": b.environment(),
        "modes": {},
    }
    with b.workspace() as ws:
        try:
            for name in names:
                for mode in b.modes_from(args):
                    b.log(f"{name}, {mode}")
                    data["modes"][f"{name}-{mode}"] = measure(args, ws, name, mode)
        except Exception as exc:
            data["error"] = b.describe(exc)
            print(data["error"], file=sys.stderr)
        pids = [pid for d in ws.daemons for pid in d.pids]
    return b.finish(data, pids, report, args.output, "watch.json")


if __name__ == "__main__":
    sys.exit(main())
