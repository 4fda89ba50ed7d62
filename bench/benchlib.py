"""Shared helpers for the benchmark scripts: timing, environments, daemons, reports.

Imported by ``bench/bench_*.py`` from the same directory (they run as plain
scripts). Standard library plus psutil and pytest_fastcollect's public client
API; it imports no pytest itself, so in-process timings measure the client
API alone. Every daemon started through ``Daemon`` lives in a private
runtime directory that ``Workspace`` removes on exit, after stopping (or,
failing that, killing the verified pid of) each daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_fastcollect.daemon_client import DaemonClient
from pytest_fastcollect.paths import project_files

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Bytecode modes: "cached" is how users run (pycs written and reused, caches
# warmed before timing); "nocache" sets PYTHONDONTWRITEBYTECODE=1 on a fresh
# copy of the project, as on these machines (installed packages keep the pycs
# pip compiled); "nopyc" also points PYTHONPYCACHEPREFIX at an empty
# directory, so nothing at all is read from bytecode caches (opt-in).
MODES = ("cached", "nocache")
EXTRA_MODES = ("nopyc",)
NOTICE_PREFIX = "pytest-fastcollect:"
RUN_TIMEOUT = 600.0


def pytest_cmd() -> list[str]:
    script = BIN / "pytest"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pytest"]


def thin_cmd() -> list[str]:
    script = BIN / "pytest-fastcollect"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pytest_fastcollect.client.thin"]


# -- arguments -------------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser, reps: int) -> None:
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help=f"repetitions of each alternated measurement (default {reps}, --quick 2)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny repetition counts, for the smoke test and a first look",
    )
    parser.add_argument(
        "--bytecode",
        choices=(*MODES, *EXTRA_MODES, "both", "all"),
        default="both",
        help="cached: PYTHONDONTWRITEBYTECODE unset, caches warmed first; "
        "nocache: PYTHONDONTWRITEBYTECODE=1 on a fresh copy; nopyc: also no "
        "bytecode read from anywhere; both (default): cached + nocache; all",
    )
    parser.add_argument("--output", type=Path, default=None, help="write the JSON results here")


def reps_from(args: argparse.Namespace, default: int, quick: int = 2) -> int:
    if args.reps is not None:
        return max(1, int(args.reps))
    return quick if args.quick else default


def modes_from(args: argparse.Namespace) -> list[str]:
    if args.bytecode == "both":
        return list(MODES)
    if args.bytecode == "all":
        return [*MODES, *EXTRA_MODES]
    return [args.bytecode]


# -- environments and workspaces ---------------------------------------------------


def make_env(runtime: Path, mode: str) -> dict[str, str]:
    """The environment every measured command gets: ours, minus anything pytest-ish
    that would make runs differ from a user's plain shell."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "COV_", "COVERAGE_")) and k != "PYTHONWARNINGS"
    }
    env["PYTEST_FASTCOLLECT_RUNTIME_DIR"] = str(runtime)
    env["COLUMNS"] = "120"
    env.pop("PYTHONPYCACHEPREFIX", None)
    if mode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if mode == "nopyc":
        empty = runtime / "no-pycache"
        empty.mkdir()
        env["PYTHONPYCACHEPREFIX"] = str(empty)
    return env


def copy_project(src: Path, dest: Path) -> Path:
    shutil.copytree(
        src,
        dest,
        ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", ".pytest_cache", ".nox", ".venv", "*.egg-info"
        ),
    )
    return dest


@dataclass
class Workspace:
    """A temp directory for project copies plus private runtime directories."""

    base: Path
    daemons: list[Daemon] = field(default_factory=list)
    runtimes: list[Path] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    def runtime(self, name: str) -> Path:
        # Short: AF_UNIX paths must stay under ~100 bytes.
        path = Path(tempfile.mkdtemp(prefix=f"fcb-{name[:6]}-", dir="/tmp"))
        os.chmod(path, 0o700)
        self.runtimes.append(path)
        return path

    def daemon(self, root: Path, env: dict[str, str]) -> Daemon:
        d = Daemon(root=root, env=env, runtime=Path(env["PYTEST_FASTCOLLECT_RUNTIME_DIR"]))
        self.daemons.append(d)
        return d

    def stop_daemons(self) -> None:
        for d in self.daemons:
            d.stop()
            self.pids.extend(pid for pid in d.pids if pid not in self.pids)

    def close(self) -> None:
        self.stop_daemons()
        for path in self.runtimes:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def workspace(keep: bool = False) -> Iterator[Workspace]:
    ws = Workspace(base=Path(tempfile.mkdtemp(prefix="fc-bench-")))
    try:
        yield ws
    finally:
        if keep:
            ws.stop_daemons()
            log(f"kept {ws.base}")
        else:
            ws.close()


# -- the import-heavy project (issues 2 and 3) ------------------------------------------

HEAVY_EXAMPLE = REPO / "examples" / "heavy"
# Tried in order when a project has to be generated: real, installed, slow to import.
HEAVY_CANDIDATES = ("sympy", "pandas", "numpy", "mypy.build", "pydantic")


def add_project_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        type=Path,
        default=None,
        help=f"the import-heavy project to measure (default: {HEAVY_EXAMPLE.relative_to(REPO)} "
        "if it exists, else a generated one)",
    )
    parser.add_argument(
        "--generate",
        action="store_true",
        help="measure a generated project that imports --heavy-module instead",
    )
    parser.add_argument(
        "--heavy-module",
        default=None,
        help=f"what the generated project imports (default: first installed of "
        f"{', '.join(HEAVY_CANDIDATES)})",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp directory (for debugging)"
    )


def importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def heavy_source(args: argparse.Namespace, ws: Workspace) -> tuple[Path, dict[str, Any]]:
    """The project to copy per mode, and how it was chosen."""
    if args.project is not None and not args.generate:
        path = args.project.resolve()
        if not path.is_dir():
            raise BenchError(f"--project {path} is not a directory")
        return path, {"source": str(path), "generated": False}
    if not args.generate and HEAVY_EXAMPLE.is_dir():
        return HEAVY_EXAMPLE, {"source": str(HEAVY_EXAMPLE), "generated": False}
    module = args.heavy_module or next((m for m in HEAVY_CANDIDATES if importable(m)), None)
    if module is None or not importable(module):
        raise BenchError(f"no heavy module to import: install one of {', '.join(HEAVY_CANDIDATES)}")
    dest = ws.base / "heavy-src"
    generate_heavy_project(dest, module)
    return dest, {"source": "generated", "generated": True, "heavy_module": module}


def generate_heavy_project(
    dest: Path, module: str, files: int = 3, tests_per_file: int = 5
) -> None:
    """A small project whose tests import a heavy installed package: what a
    one-file run waits for is that import, as in real suites."""
    (dest / "tests").mkdir(parents=True)
    (dest / "heavylib").mkdir()
    (dest / "pytest.ini").write_text("[pytest]\ntestpaths = tests\npythonpath = .\n")
    (dest / "heavylib" / "__init__.py").write_text("")
    (dest / "heavylib" / "core.py").write_text(
        f"import {module} as heavy\n\nNAME = heavy.__name__\n\n\ndef double(x):\n    return 2 * x\n"
    )
    for i in range(files):
        tests = [
            f"import {module}\n\nfrom heavylib import core\n\n\n"
            f"def test_module_loaded_{i}():\n    assert core.NAME == {module!r}\n"
        ]
        tests += [
            f"\n\ndef test_double_{i}_{j}():\n    assert core.double({j}) == {2 * j}\n"
            for j in range(tests_per_file - 1)
        ]
        (dest / "tests" / f"test_heavy_{i}.py").write_text("".join(tests))


def default_test_file(root: Path) -> str:
    found = sorted(
        p
        for p in root.rglob("test_*.py")
        if not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(root).parts
        )
    )
    if not found:
        raise BenchError(f"no test_*.py under {root}; pass --file")
    return str(found[0].relative_to(root))


# -- running commands ------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def notices(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith(NOTICE_PREFIX)]


def timed(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = RUN_TIMEOUT
) -> Sample:
    started = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - started
    return Sample(elapsed, proc.returncode, proc.stdout, proc.stderr)


def run_checked(
    cmd: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    ok: Sequence[int] = (0,),
    timeout: float = RUN_TIMEOUT,
) -> Sample:
    sample = timed(cmd, cwd, env, timeout)
    if sample.returncode not in ok:
        raise BenchError(
            f"$ {' '.join(cmd)} (in {cwd}) exited {sample.returncode}\n"
            f"{sample.stdout[-3000:]}\n--- stderr ---\n{sample.stderr[-3000:]}"
        )
    return sample


class BenchError(RuntimeError):
    """A step the benchmark depends on failed: the figures would mean nothing."""


def alternate(variants: Mapping[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Run every variant once per repetition, rotating the order each time so
    that no variant always runs first (after an idle gap) or last."""
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(variants[name]())
    return out


# -- daemons ------------------------------------------------------------------------------


@dataclass
class Daemon:
    root: Path
    env: dict[str, str]
    runtime: Path
    pids: list[int] = field(default_factory=list)
    _created: dict[int, float] = field(default_factory=dict)

    @property
    def socket(self) -> str:
        return str(project_files(self.root, self.runtime).socket)

    def client(self, timeout: float = 60.0) -> DaemonClient:
        return DaemonClient(self.socket, timeout=timeout)

    def record(self) -> dict[str, Any] | None:
        path = project_files(self.root, self.runtime).state
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data

    def start(self, *args: str) -> Sample:
        sample = run_checked([*pytest_cmd(), "--daemon-start", *args], self.root, self.env)
        record = self.record()
        if record is None:
            raise BenchError(
                f"--daemon-start returned but left no record:\n{sample.stdout}\n{sample.stderr}"
            )
        self.pids.append(int(record["pid"]))
        self._created[int(record["pid"])] = float(record["create_time"])
        return sample

    def status(self) -> dict[str, Any]:
        return self.client().get_status()

    def stop(self) -> None:
        """Stop politely, then make sure: kill what is left, only if it is our daemon."""
        record = self.record()
        if record is not None and self.root.is_dir():
            try:
                timed([*pytest_cmd(), "--daemon-stop"], self.root, self.env, timeout=60)
            except subprocess.TimeoutExpired:
                pass
        if record is not None:
            self._created.setdefault(int(record["pid"]), float(record["create_time"]))
        for pid, created in self._created.items():
            kill_if_ours(pid, created, self.root)


def kill_if_ours(pid: int, created: float, root: Path) -> None:
    """SIGKILL a supervisor left behind (and its children), only if the pid is
    still that process: same create time, our module and our root on its
    command line; other daemons on this machine are never touched."""
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        if (
            abs(proc.create_time() - created) > 1.0
            or "pytest_fastcollect.supervisor" not in cmdline
        ):
            return
        if os.path.realpath(root) not in cmdline:
            return
        for child in proc.children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait(10)
    except psutil.Error:
        pass


def wait_for(predicate: Callable[[], bool], deadline_s: float, interval: float = 0.005) -> bool:
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_for_learning(client: Any, timeout: float = 60.0) -> dict[str, int]:
    """Wait until the daemon has no imports left to learn; the learned-import counts."""
    deadline = time.monotonic() + timeout
    while True:
        warmup = client.get_status()["warmup"]
        if warmup.get("pending_imports", 0) == 0 or time.monotonic() > deadline:
            return {
                "learned": warmup.get("learned_imports", 0),
                "unlearnable": warmup.get("unlearnable_imports", 0),
                "pending": warmup.get("pending_imports", 0),
            }
        time.sleep(0.1)


# -- parsing pytest output ------------------------------------------------------------------

_DURATION = re.compile(r" in (\d+(?:\.\d+)?)s\b")


def reported_duration(stdout: str) -> float | None:
    """The seconds pytest prints in its summary line (``... passed in 0.12s``)."""
    for line in reversed(stdout.strip().splitlines()):
        match = _DURATION.search(line)
        if match:
            return float(match.group(1))
    return None


def collected_ids(stdout: str) -> list[str]:
    """Node ids from ``pytest --collect-only -q`` output."""
    ids = []
    for line in stdout.splitlines():
        if not line.strip():
            break
        if "::" in line:
            ids.append(line.strip())
    return ids


# -- statistics and reports ---------------------------------------------------------------------


def summary(samples: Sequence[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        return {
            "n": 0,
            "median_ms": None,
            "min_ms": None,
            "max_ms": None,
            "p95_ms": None,
            "samples_ms": [],
        }
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "min_ms": round(ms[0], 3),
        "max_ms": round(ms[-1], 3),
        "p95_ms": round(p95, 3),
        "samples_ms": [round(x, 3) for x in ms],
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def diff(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(a - b, 3)


def check(checks: list[dict[str, Any]], name: str, ok: bool, detail: str = "") -> bool:
    checks.append({"name": name, "ok": bool(ok), "detail": detail})
    return ok


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "pytest": version("pytest"),
        "pytest_fastcollect": version("pytest-fastcollect"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}{unit}" if abs(value) >= 10 else f"{value:.2f}{unit}"


def print_table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1
) -> None:
    """A plain-text table; the first ``left`` columns are left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = [
        f"\n{title}",
        "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    for row in cells[1:]:
        out.append(
            "  ".join(
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print("\n".join(out), flush=True)


def print_checks(checks: Sequence[Mapping[str, Any]]) -> None:
    for c in checks:
        mark = "ok  " if c["ok"] else "FAIL"
        print(f"  [{mark}] {c['name']}{': ' + c['detail'] if c['detail'] else ''}", flush=True)


def write_results(path: Path | None, default_name: str, data: Mapping[str, Any]) -> Path:
    target = path or (Path.cwd() / "bench-results" / default_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nresults: {target}", flush=True)
    return target


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def describe(exc: BaseException) -> str:
    if isinstance(exc, BenchError):
        return str(exc)
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).strip()


def finish(
    data: dict[str, Any],
    daemon_pids: list[int],
    report: Callable[[dict[str, Any]], None],
    output: Path | None,
    name: str,
) -> int:
    """Close a benchmark run: verdict from every mode's checks, table, JSON; the exit code."""
    data["daemon_pids"] = daemon_pids
    data["ok"] = "error" not in data and all(
        c["ok"] for m in data["modes"].values() for c in m["checks"]
    )
    report(data)
    write_results(output, name, data)
    return 0 if data["ok"] else 1


def timing_rows(results: Mapping[str, Any], labels: Mapping[str, str]) -> list[list[Any]]:
    """One table row per measurement: label, median, min, p95 (ms) and sample count."""
    return [
        [
            label,
            fmt(results[k]["median_ms"]),
            fmt(results[k]["min_ms"]),
            fmt(results[k]["p95_ms"]),
            results[k]["n"],
        ]
        for k, label in labels.items()
    ]
