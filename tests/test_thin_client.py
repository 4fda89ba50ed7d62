"""``pytest-fastcollect run ARGS``: the thin client gives what ``pytest ARGS`` gives.

Through a daemon it is served warm; with no daemon it becomes the ordinary
``pytest``; when the daemon declines a run it runs it cold after a notice.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import THIN, Project, Result, daemon_runs, equiv_copy

NOTICE = "pytest-fastcollect:"


def normalise(text: str) -> str:
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    return re.sub(r" in \d+\.\d+s( \(\d+:\d\d:\d\d\))?", " in Ns", text)


def thin_in(proj: Project, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    cmd = [THIN, "run", *args]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env={**proj.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return Result(cmd, proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ("-q", "tests"),
        ("-rA", "-v"),
        ("-x", "tests"),
        ("-q", "-k", "no_such_test_anywhere"),
        ("--equiv-flavour=spicy", "-q", "-k", "flavour"),
        ("-q", "--no-such-option"),
        ("-q", "scenarios/test_crash.py::test_exit_7"),
    ],
    ids=["q", "rA-v", "x", "nothing", "conftest-option", "usage-error", "os-exit"],
)
def test_thin_same_as_cold(equiv_daemon: Project, args: tuple[str, ...]) -> None:
    cold = equiv_daemon.cold(*args)
    before = daemon_runs(equiv_daemon)
    thin = equiv_daemon.thin(*args)
    assert daemon_runs(equiv_daemon) == before + 1, str(thin)
    assert NOTICE not in thin.stderr, str(thin)
    assert thin.returncode == cold.returncode, f"{cold}\n{thin}"
    assert normalise(thin.stdout) == normalise(cold.stdout), f"{cold}\n{thin}"
    assert normalise(thin.stderr) == normalise(cold.stderr), f"{cold}\n{thin}"


def test_thin_from_a_subdirectory(equiv_daemon: Project) -> None:
    sub = equiv_daemon.root / "tests"
    before = daemon_runs(equiv_daemon)
    thin = thin_in(equiv_daemon, sub, "-q", "test_basic.py")
    assert daemon_runs(equiv_daemon) == before + 1, str(thin)
    cold = equiv_daemon.cold("-q", "test_basic.py", cwd=sub)
    assert thin.returncode == cold.returncode == 1
    assert normalise(thin.stdout) == normalise(cold.stdout)


def test_thin_segfault_status(equiv_daemon: Project) -> None:
    thin = equiv_daemon.thin("scenarios/test_crash.py::test_segfault")
    cold = equiv_daemon.cold("scenarios/test_crash.py::test_segfault")
    assert thin.returncode == cold.returncode == -11, f"{cold}\n{thin}"


def test_thin_refused_run_falls_back_to_cold(equiv_daemon: Project) -> None:
    args = ("-q", "--import-mode=importlib", "tests")
    cold = equiv_daemon.cold(*args)
    before = daemon_runs(equiv_daemon)
    thin = equiv_daemon.thin(*args)
    assert daemon_runs(equiv_daemon) == before  # declined: ran cold
    notices = [ln for ln in thin.stderr.splitlines() if ln.startswith(NOTICE)]
    assert (
        len(notices) == 1 and "importmode" in notices[0] and "without the daemon" in notices[0]
    ), str(thin)
    # importlib mode does not put the rootdir on sys.path: equivpkg is not importable.
    assert thin.returncode == cold.returncode == 2
    assert normalise(thin.stdout) == normalise(cold.stdout)


def test_thin_disabled_by_env_runs_cold(equiv_daemon: Project) -> None:
    before = daemon_runs(equiv_daemon)
    thin = thin_in(
        equiv_daemon, equiv_daemon.root, "-q", "tests", env={"PYTEST_FASTCOLLECT_DISABLE": "1"}
    )
    assert daemon_runs(equiv_daemon) == before
    cold = equiv_daemon.cold("-q", "tests")
    assert thin.returncode == cold.returncode == 1
    assert normalise(thin.stdout) == normalise(cold.stdout)


@pytest.fixture
def no_daemon_project(tmp_path: Path) -> Iterator[Project]:
    proj = equiv_copy(tmp_path / "proj")
    try:
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


@pytest.mark.parametrize(
    "args",
    [("-q", "tests"), ("-q", "-k", "no_such_test_anywhere"), ("--bogus",)],
    ids=["q", "nothing", "usage-error"],
)
def test_thin_without_a_daemon_is_pytest(no_daemon_project: Project, args: tuple[str, ...]) -> None:
    thin = no_daemon_project.thin(*args)
    cold = no_daemon_project.cold(*args)
    assert NOTICE not in thin.stderr, str(thin)
    assert thin.returncode == cold.returncode, f"{cold}\n{thin}"
    assert normalise(thin.stdout) == normalise(cold.stdout)
    assert normalise(thin.stderr) == normalise(cold.stderr)
    assert no_daemon_project.record() is None


def test_thin_with_a_dead_daemon_runs_cold(no_daemon_project: Project) -> None:
    """Stale files (a socket nobody answers) mean a notice and an ordinary run."""
    started = no_daemon_project.start("tests")
    assert started.returncode == 0, str(started)
    record = no_daemon_project.record()
    assert record is not None
    import psutil

    supervisor = psutil.Process(int(record["pid"]))  # type: ignore[call-overload]
    children = supervisor.children(recursive=True)
    supervisor.kill()
    psutil.wait_procs([supervisor, *children], timeout=10)
    for child in children:
        if child.is_running():
            child.kill()
    thin = no_daemon_project.thin("-q", "tests")
    cold = no_daemon_project.cold("-q", "tests")
    assert thin.returncode == cold.returncode == 1, f"{cold}\n{thin}"
    assert normalise(thin.stdout) == normalise(cold.stdout)
    notices = [ln for ln in thin.stderr.splitlines() if ln.startswith(NOTICE)]
    assert len(notices) == 1 and "without" in notices[0], str(thin)


@pytest.mark.parametrize("argv,code", [([], 4), (["bogus"], 4), (["--help"], 0)])
def test_thin_usage(argv: list[str], code: int) -> None:
    proc = subprocess.run([THIN, *argv], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == code, proc
    assert "usage: pytest-fastcollect run" in proc.stdout + proc.stderr


def test_thin_client_runs_pytest_itself_when_the_plugin_is_disabled(project: Project) -> None:
    project.write({"tests/test_a.py": "def test_a():\n    pass\n"})
    assert project.start("tests").returncode == 0
    before = daemon_runs(project)
    result = project.thin("-q", "-p", "no:fastcollect", "tests")
    assert result.returncode == 0, str(result)
    assert "1 passed" in result.stdout
    assert daemon_runs(project) == before
