"""client/route.py: which commands may go to the daemon without pytest, and the thin
client's two ways back to pytest (undecided: the plugin decides; declined: cold)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_fastcollect import rootdir
from pytest_fastcollect.client import route

from helpers import Project, daemon_runs, make_project

INI = "[pytest]\naddopts = -p no:randomly\nasyncio_default_fixture_loop_scope = function\n"


@pytest.mark.parametrize(
    "args,addopts,reason",
    [
        (["-q", "tests"], "", None),
        (["--co", "-x"], "", None),
        (["-k", "help"], "", None),  # a value, not --help
        (["-kh"], "", None),
        (["--help"], "", "--help"),
        (["-qh"], "", "--help"),
        (["-V"], "", "--version"),
        (["--disable-plugin-autoload"], "", "--disable-plugin-autoload"),
        (["--no-daemon"], "", "--no-daemon"),
        ([], "--no-daemon", "--no-daemon"),
        (["--daemon-status"], "", "--daemon-status"),
        (["-p", "no:fastcollect"], "", "-p names this plugin"),
        ([], "-pno:fastcollect", "-p names this plugin"),
        (["--cov"], "", "--cov"),
        (["--cov=src"], "", "--cov"),
        ([], "--cov", "--cov"),
        (["--cov-report=term"], "", None),  # does not turn coverage on
        (["-nh"], "", "-nh: cannot tell whether it asks for help or the version"),
        (["-n", "2"], "", None),
    ],
)
def test_run_here(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    addopts: str,
    reason: str | None,
) -> None:
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    (tmp_path / "pytest.ini").write_text(f"[pytest]\naddopts = {addopts}\n" if addopts else "")
    setup = rootdir.determine(args, cwd=str(tmp_path))
    assert isinstance(setup, rootdir.Setup), setup
    assert route.run_here(setup) == reason


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """route() reads this process's environment, which an xdist worker marks."""
    for name in (
        "PYTEST_XDIST_WORKER",
        "PYTEST_ADDOPTS",
        "PYTEST_FASTCOLLECT_DISABLE",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj")
    proj.write({"pytest.ini": INI, "tests/test_a.py": "def test_a():\n    pass\n"})
    try:
        assert proj.start("tests").returncode == 0
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


def test_route_finds_the_daemon(served: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_FASTCOLLECT_RUNTIME_DIR", str(served.runtime))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    found = route.route(["-q", "tests/test_a.py::test_a"], str(served.root / "tests"))
    assert isinstance(found, route.Route), found
    assert found.setup.rootdir == str(served.root)
    assert isinstance(route.route(["--", "tests"], str(served.root)), route.Defer)
    monkeypatch.setenv("PYTEST_FASTCOLLECT_DISABLE", "1")
    assert isinstance(route.route(["tests"], str(served.root)), route.Defer)


def test_route_without_any_daemon_only_lists_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("PYTEST_FASTCOLLECT_RUNTIME_DIR", str(runtime))
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    found = route.route([], str(tmp_path))
    assert isinstance(found, route.Defer) and found.reason == "no daemon runs"
    assert list(runtime.iterdir()) == []


def test_thin_client_leaves_an_undecided_command_to_the_plugin(served: Project) -> None:
    """'--' is not mirrored: the thin client runs pytest, whose plugin hands off (so the
    exec'd pytest was not told to stay away from the daemon)."""
    before = daemon_runs(served)
    result = served.thin("-q", "--", "tests")
    assert result.returncode == 0, str(result)
    assert "1 passed" in result.stdout
    assert daemon_runs(served) == before + 1


def test_thin_client_runs_pytest_for_a_command_that_stays_in_process(served: Project) -> None:
    before = daemon_runs(served)
    result = served.thin("-q", "--no-daemon", "tests")
    assert result.returncode == 0, str(result)
    assert "1 passed" in result.stdout
    assert daemon_runs(served) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--daemon-status"], ("status", False)),
        (["--daemon-health"], ("health", False)),
        (["--daemon-json", "--daemon-status"], ("status", True)),
        (["--daemon-health", "--daemon-json"], ("health", True)),
        (["--daemon-status", "--daemon-health"], None),
        (["--daemon-status", "tests"], None),
        (["--daemon-status", "--rootdir=x"], None),
        (["--daemon-status", "--daemon-json", "--daemon-json"], None),
        (["--daemon-json"], None),
        (["--daemon-stop"], None),
        ([], None),
    ],
)
def test_quick_verb_only_alone(args: list[str], expected: tuple[str, bool] | None) -> None:
    """The start-up hook answers a quick verb only when nothing else could matter."""
    assert route.quick_verb(args) == expected
