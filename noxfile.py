"""nox sessions: tests on every installed Python 3.10-3.13, pytest 8, lint, typecheck, demo, bench.

``nox -l`` lists them. Interpreters are found at import time: a ``pythonX.Y``
on PATH that actually runs (a pyenv shim for a version that is not selected
fails), else pyenv's ``~/.pyenv/versions/X.Y.*`` and the usual system
prefixes. Missing versions are skipped, not failed. Working interpreters are
linked into ``.nox/_interpreters`` and that directory is put first on PATH,
so nox finds them by their plain version names (``tests-3.12``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")
LINT_PATHS = ("src", "tests", "bench", "tools", "noxfile.py", "setup.py", "examples")
BENCH_NEEDS = ("sympy", "numpy", "pandas", "pytest-xdist")
BENCH_SCRIPTS = (
    "bench_daemon.py",
    "bench_runs.py",
    "bench_reload.py",
    "bench_warm.py",
    "bench_watch.py",
    "bench_overhead.py",
    "bench_early.py",
    "bench_parallel.py",
)

nox.options.sessions = ["lint", "typecheck", "tests", "pytest8"]
nox.options.reuse_venv = "yes"


def _runs_as(path: str, version: str) -> bool:
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def _candidates(version: str) -> list[str]:
    """Real interpreters first: a pyenv shim only as the last resort (it
    works only for the versions pyenv currently selects)."""
    on_path = shutil.which(f"python{version}")
    shim = on_path is not None and f"{os.sep}shims{os.sep}" in on_path
    found = [on_path] if on_path and not shim else []
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    pattern = os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}")
    found += sorted(glob.glob(pattern), key=_patch_level, reverse=True)  # newest patch first
    found += [f"{prefix}/bin/python{version}" for prefix in ("/usr/local", "/usr")]
    if on_path and shim:
        found.append(on_path)
    return found


def _patch_level(path: str) -> int:
    name = Path(path).parent.parent.name
    try:
        return int(name.split(".")[2])
    except (IndexError, ValueError):
        return -1


def find_interpreters() -> dict[str, str]:
    """Map each installed version to an interpreter that runs."""
    out = {}
    for version in VERSIONS:
        for candidate in _candidates(version):
            if os.path.exists(candidate) and _runs_as(candidate, version):
                out[version] = candidate
                break
    return out


def _expose(interpreters: dict[str, str]) -> None:
    """Put working interpreters first on PATH under their ``pythonX.Y`` names."""
    shims = ROOT / ".nox" / "_interpreters"
    shims.mkdir(parents=True, exist_ok=True)
    for version, path in interpreters.items():
        link = shims / f"python{version}"
        if link.is_symlink() or link.exists():
            if os.path.realpath(link) == os.path.realpath(path):
                continue
            link.unlink()
        link.symlink_to(path)
    os.environ["PATH"] = f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"


INTERPRETERS = find_interpreters()
_expose(INTERPRETERS)
# None (nox's own interpreter) only when none of the versions was found.
PYTHONS: list[str] | None = [v for v in VERSIONS if v in INTERPRETERS] or None


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite on each installed Python (posargs go to pytest)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *(session.posargs or ["tests"]))


@nox.session
def pytest8(session: nox.Session) -> None:
    """The test suite with the oldest supported pytest major (pytest<9)."""
    session.install("-e", ".[test]", "pytest>=8,<9")
    session.run("python", "-m", "pytest", "--version")
    session.run("python", "-m", "pytest", *(session.posargs or ["tests"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check; then the house rules (import directions, sizes)."""
    # The test configuration in pyproject.toml names these plugins' options.
    session.install("ruff", "-e", ".", "pytest", "pytest-timeout", "pytest-asyncio")
    paths = [p for p in LINT_PATHS if (ROOT / p).exists()]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    # ruff has no rule for a function's length in lines: tests/test_layers.py checks
    # it (80) with the module length (500) and the import directions.
    session.run("python", "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_layers.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src, as configured in pyproject.toml [tool.mypy]."""
    session.install("-e", ".", "mypy", "types-psutil")
    session.run("mypy", "--strict", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Install the package and run examples/demo.py (the README's first command)."""
    session.install(".")
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks for issues 2-4, 9, 12, 13 and 14: JSON in bench-results/, then one summary table.

    ``nox -s bench -- --quick`` for a short run. posargs go to every script,
    so use the options they share (--quick, --reps N, --bytecode MODE).
    """
    session.install("-e", ".", *BENCH_NEEDS)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    results = []
    for script in BENCH_SCRIPTS:
        target = out / f"{script.removeprefix('bench_').removesuffix('.py')}.json"
        results.append(str(target))
        # Exit 1 means a sanity check failed; the summary below says which and fails the session.
        session.run(
            "python",
            f"bench/{script}",
            "--output",
            str(target),
            *session.posargs,
            success_codes=[0, 1],
        )
    session.run("python", "bench/report.py", *results)


@nox.session
def hostile(session: nox.Session) -> None:
    """The hostile-frame fuzzer at full size: 10,000 mutated frames against a live daemon.

    ``nox -s hostile -- --seed 7 --frames 2000`` for another seed or size. Fails on a
    crashed supervisor or warm process, an internal error, or an answer that is not
    a protocol response; prints the answers by kind and status latency.
    """
    session.install("-e", ".[test]")
    session.run("python", "tests/fuzz_frames.py", *(session.posargs or ["--frames", "10000"]))


@nox.session
def load(session: nox.Session) -> None:
    """20 clients x 50 runs through one daemon, 10 idle connections held open.

    Reports wrong results, runs that went cold, slot waits and late hand-overs,
    status p95, and RSS/fds/threads/zombies at start and end (JSON, also in
    bench-results/load.json). ``nox -s load -- --clients 4 --runs 5`` for a short run.
    """
    session.install("-e", ".[test]")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    session.run(
        "python", "tests/load_runs.py", "--output", str(out / "load.json"), *session.posargs
    )


@nox.session
def standby(session: nox.Session) -> None:
    """The equivalence suite through the standby worker and without it: every warm run
    must go the forced way (tests/test_equivalence.py checks the status counters)."""
    session.install("-e", ".[test]")
    for mode in ("always", "off"):
        session.run(
            "python",
            "-m",
            "pytest",
            "tests/test_equivalence.py",
            *session.posargs,
            env={"PYTEST_FASTCOLLECT_STANDBY": mode},
        )


@nox.session
def warm(session: nox.Session) -> None:
    """Issue 9's figures: one-file runs cold vs warm vs thin, the first run after each
    kind of save, a run during idle work, on examples/scientific and examples/heavy,
    bytecode cached. posargs go to bench/bench_warm.py (--reps N, --quick)."""
    _bench_cached(session, "bench_warm.py", "warm.json")


@nox.session
def overhead(session: nox.Session) -> None:
    """Issue 12's figures: a warm one-file run split into phases, standby on vs off, the
    repeated collect and --daemon-status, on examples/heavy and examples/scientific,
    bytecode cached. posargs go to bench/bench_overhead.py (--reps N, --quick)."""
    _bench_cached(session, "bench_overhead.py", "overhead.json")


def _bench_cached(session: nox.Session, script: str, result: str) -> None:
    """One benchmark with bytecode cached (what users have), then its summary."""
    session.install("-e", ".", *BENCH_NEEDS)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    target = out / result
    session.run(
        "python",
        f"bench/{script}",
        "--bytecode",
        "cached",
        "--output",
        str(target),
        *session.posargs,
        success_codes=[0, 1],
    )
    session.run("python", "bench/report.py", str(target))


@nox.session
def fuzz(session: nox.Session) -> None:
    """The never-stale fuzzer at full size: 200 seeded edit sequences, warm vs cold.

    ``nox -s fuzz -- --seed 7 --sequences 50`` for another seed or size; a
    difference prints the seed, the sequence and both outputs to replay it.
    """
    session.install("-e", ".[test]")
    session.run("python", "tests/fuzz_edits.py", *(session.posargs or ["--sequences", "200"]))
