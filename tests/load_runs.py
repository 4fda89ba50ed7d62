"""Load test: many clients running through one daemon while idle connections hang around.

Run by ``nox -s load`` (not part of the suite: it takes minutes)::

    python tests/load_runs.py --clients 20 --runs 50 --idle 10

Copies examples/basic, starts a daemon with the default limits, holds
``--idle`` connections open that never send a request (reopened whenever
the daemon drops one), and has ``--clients`` threads each run ``--runs``
ordinary ``pytest`` commands on a rotating choice of test files, while a
status request goes out every 100 ms. It reports:

- wrong results: a run whose summary line differs from the cold run of the
  same command (measured once, before the load);
- runs served warm, and runs that went cold (told busy, with the notice);
- runs that waited more than 1 s for a slot while a slot was free (the
  daemon's late hand-overs), slot waits and the longest one;
- status latency (p50, p95, max) during the load;
- supervisor and warm process RSS, open fds, threads and zombies, at the
  start and at the end.

Exit 1 if any result was wrong, a late hand-over happened, or a process leaked zombies.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pytest_fastcollect.daemon_client import DaemonClient

from helpers import EXAMPLES, Project, command_pytest, make_project

COMMANDS = [
    ["-q", "tests/test_money.py"],
    ["-q", "tests/test_cart.py"],
    ["-q", "tests/test_discounts.py", "tests/test_inventory.py"],
    ["-q", "tests"],
    ["-q", "tests", "-k", "cart or money"],
]
SUMMARY = re.compile(r"^(\d+ \w+(, \d+ \w+)*) in [0-9.]+s", re.M)
COLD_NOTICE = "running without"


def summary(out: str) -> str:
    found = SUMMARY.findall(out)
    return found[-1][0] if found else f"(no summary) {out[-200:]!r}"


class Idle:
    """Connections that never send a request, reopened whenever the daemon drops one."""

    def __init__(self, socket_path: str, count: int) -> None:
        self.socket_path = socket_path
        self.count = count
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def __enter__(self) -> Idle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.socket_path)
        conn.setblocking(False)
        return conn

    def _hold(self) -> None:
        conns = [self._open() for _ in range(self.count)]
        while not self._stop.wait(0.2):
            for i, conn in enumerate(conns):
                try:
                    closed = conn.recv(4096) == b""
                except BlockingIOError:
                    continue
                except OSError:
                    closed = True
                conn.close()
                conns[i] = self._open()
                self.reopened += 1 if closed else 0
        for conn in conns:
            conn.close()


def processes(client: DaemonClient) -> dict[str, dict[str, Any]]:
    status = client.get_status()
    return {proc["role"]: proc for proc in status["processes"]}


def _run_one(project: Project, args: list[str]) -> tuple[str, bool, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [*command_pytest(), *args],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return summary(proc.stdout), COLD_NOTICE in proc.stderr, time.monotonic() - started


def load(project: Project, clients: int, runs: int, idle: int) -> dict[str, Any]:
    record = project.record()
    assert record is not None
    client = DaemonClient(str(record["socket_path"]))
    expected = {
        tuple(args): summary(project.cold(*args).stdout) for args in COMMANDS
    }  # cold, before the load
    before = processes(client)
    results: Counter[str] = Counter()
    wrong: list[str] = []
    durations: list[float] = []
    status_ms: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def worker(n: int) -> None:
        for i in range(runs):
            args = COMMANDS[(n + i) % len(COMMANDS)]
            got, cold, took = _run_one(project, args)
            with lock:
                results["cold (busy or refused)" if cold else "warm"] += 1
                durations.append(took)
                if got != expected[tuple(args)]:
                    wrong.append(
                        f"pytest {' '.join(args)}: {got!r}, cold {expected[tuple(args)]!r}"
                    )

    def poll_status() -> None:
        while not done.wait(0.1):
            started = time.perf_counter()
            try:
                client.get_status()
            except Exception as exc:
                with lock:
                    results[f"status failed: {type(exc).__name__}"] += 1
                continue
            status_ms.append((time.perf_counter() - started) * 1000)

    started = time.monotonic()
    with Idle(str(record["socket_path"]), idle) as held:
        poller = threading.Thread(target=poll_status, daemon=True)
        poller.start()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        poller.join(10)
        reopened = held.reopened
    status = client.get_status()
    after = {proc["role"]: proc for proc in status["processes"]}
    ms = sorted(status_ms)
    return {
        "clients": clients,
        "runs_each": runs,
        "idle_connections": idle,
        "idle_reopened": reopened,
        "seconds": round(time.monotonic() - started, 1),
        "results": dict(results),
        "wrong_results": wrong,
        "run_seconds": {
            "median": round(statistics.median(durations), 3),
            "max": round(max(durations), 3),
        },
        "connections": status["connections"],
        "status_ms": {
            "count": len(ms),
            "p50": round(statistics.median(ms), 1),
            "p95": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 1),
            "max": round(ms[-1], 1),
        },
        "processes": {
            role: {
                "start": {k: before[role][k] for k in ("pid", "rss_bytes", "open_fds", "threads")},
                "end": {
                    k: after.get(role, {}).get(k)
                    for k in ("pid", "rss_bytes", "open_fds", "threads", "zombies")
                },
            }
            for role in before
        },
    }


def main(argv: list[str] | None = None) -> int:
    # A SIGTERM (nox interrupted, a CI timeout) still stops the daemon in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--idle", type=int, default=10)
    parser.add_argument("--output", default=None, help="also write the report here (JSON)")
    ns = parser.parse_args(argv)
    where = Path(tempfile.mkdtemp(prefix="fc-load-"))
    dest = where / "basic"
    shutil.copytree(EXAMPLES / "basic", dest, ignore=shutil.ignore_patterns("__pycache__"))
    project = make_project(dest)
    try:
        started = project.start("tests")
        assert started.returncode == 0, str(started)
        report = load(project, ns.clients, ns.runs, ns.idle)
    finally:
        project.cleanup()
        shutil.rmtree(project.runtime, ignore_errors=True)
        shutil.rmtree(where, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if ns.output:
        Path(ns.output).write_text(text + "\n")
    zombies = sum(int(x["end"].get("zombies") or 0) for x in report["processes"].values())
    late = int(report["connections"]["late_handovers"])
    return 1 if report["wrong_results"] or late or zombies else 0


if __name__ == "__main__":
    sys.exit(main())
