"""Fixtures for real daemons in per-test runtime directories, always stopped.

Every daemon a test starts lives in its own private runtime directory
(``PYTEST_FASTCOLLECT_RUNTIME_DIR``), and teardown stops it (and, if it does
not answer, kills the verified pid) even when the test failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

BIN = Path(sys.executable).parent
PYTEST = str(BIN / "pytest") if (BIN / "pytest").exists() else None
THIN = str(BIN / "pytest-fastcollect")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def command_pytest() -> list[str]:
    return [PYTEST] if PYTEST else [sys.executable, "-m", "pytest"]


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\n[exit {self.returncode}]\n{self.stdout}\n--- stderr ---\n{self.stderr}"


@dataclass
class Project:
    """A throw-away project directory plus a private runtime directory for its daemon."""

    root: Path
    runtime: Path
    env: dict[str, str] = field(default_factory=dict)
    started_pids: list[int] = field(default_factory=list)

    def write(self, files: Mapping[str, str]) -> None:
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))

    def pytest(self, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None,
               cwd: Path | None = None, stdin: int | None = subprocess.DEVNULL) -> Result:
        cmd = [*command_pytest(), *args]
        proc = subprocess.run(cmd, cwd=cwd or self.root, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, stdin=stdin)
        return Result(cmd, proc.returncode, proc.stdout, proc.stderr)

    def cold(self, *args: str, **kw: object) -> Result:
        return self.pytest("--no-daemon", *args, **kw)  # type: ignore[arg-type]

    def thin(self, *args: str, timeout: float = 120) -> Result:
        cmd = [THIN, "run", *args]
        proc = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        return Result(cmd, proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str, timeout: float = 180) -> Result:
        result = self.pytest("--daemon-start", *args, timeout=timeout)
        record = self.record()
        if record is not None:
            self.started_pids.append(record["pid"])
        return result

    def stop(self) -> Result:
        return self.pytest("--daemon-stop", timeout=60)

    def record(self) -> dict[str, object] | None:
        files = list(self.runtime.glob("*.json"))
        if not files:
            return None
        data: dict[str, object] = json.loads(files[0].read_text())
        return data

    def status(self) -> dict[str, object]:
        result = self.pytest("--daemon-status", "--daemon-json")
        assert result.returncode == 0, str(result)
        data: dict[str, object] = json.loads(result.stdout)
        return data

    def cleanup(self) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            pass
        record = self.record()
        pids = set(self.started_pids)
        if record is not None:
            pids.add(int(record["pid"]))  # type: ignore[call-overload]
        for pid in pids:
            kill_if_ours(pid)


def kill_if_ours(pid: int) -> None:
    """Kill a daemon pid left behind, only if it still is one of ours."""
    try:
        proc = psutil.Process(pid)
        if "pytest_fastcollect.supervisor" not in " ".join(proc.cmdline()):
            return
        for child in proc.children(recursive=True):
            child.kill()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    except psutil.Error:
        pass


def make_project(tmp: Path) -> Project:
    runtime = Path(tempfile.mkdtemp(prefix="fc-rt-", dir="/tmp"))
    os.chmod(runtime, 0o700)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "COV_", "COVERAGE_")) and k not in ("PYTHONWARNINGS",)}
    env.update({
        "PYTEST_FASTCOLLECT_RUNTIME_DIR": str(runtime),
        "PYTEST_ADDOPTS": "-p no:randomly",
        "COLUMNS": "120",
    })
    return Project(root=tmp, runtime=runtime, env=env)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    proj = make_project(root)
    try:
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


@pytest.fixture
def example(tmp_path: Path) -> Iterator[object]:
    """Copy a bundled example into tmp_path: ``example("basic")`` -> Project."""
    made: list[Project] = []

    def factory(name: str) -> Project:
        dest = tmp_path / name
        shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        proj = make_project(dest)
        made.append(proj)
        return proj

    try:
        yield factory
    finally:
        for proj in made:
            proj.cleanup()
            shutil.rmtree(proj.runtime, ignore_errors=True)
