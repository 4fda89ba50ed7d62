"""examples/scientific through the daemon: numpy and pandas, a conftest that imports the project.

numpy starts OpenBLAS's thread pool at import, so every project layer has
a second OS thread; the conftest imports labstats.loader, so most edits
reach a module a conftest imports; labstats.estimators registers into
labstats.registry at import. Warm runs must equal cold ones here too, and
ordinary edits must not replace the warm process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fuzz_edits import outcomes
from helpers import Project, daemon_status

pytest.importorskip("numpy")
pytest.importorskip("pandas")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def sci(example: Callable[[str], Project]) -> Iterator[Project]:
    proj = example("scientific")
    started = proj.start("tests")
    assert started.returncode == 0, str(started)
    yield proj


def same_as_cold(proj: Project, *args: str) -> None:
    warm = proj.pytest("-rA", *args)
    cold = proj.cold("-rA", *args)
    assert "running without" not in warm.stderr, str(warm)
    problems = outcomes(warm).diff(outcomes(cold))
    assert not problems, "\n".join(problems) + f"\n{warm}\n{cold}"


def replacements(proj: Project) -> dict[str, int]:
    status = daemon_status(proj)
    return dict(status["reload"]["replacements"])  # type: ignore[index]


@pytest.mark.parametrize(
    "args",
    [
        ("tests",),
        ("tests/test_stats.py",),
        ("tests", "-x"),
        ("tests", "-k", "mean or unit"),
        ("tests", "-m", "not slow"),
        ("tests/test_registry.py", "-q", "--tb=short"),
    ],
)
def test_runs_equal_cold_runs(sci: Project, args: tuple[str, ...]) -> None:
    same_as_cold(sci, *args)
    assert replacements(sci) == {}, "numpy's thread pool must not make the warm process unusable"


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_edits_reload_in_place_and_equal_cold(sci: Project) -> None:
    # A core module every other imports, one the conftest imports, and the conftest.
    append(sci.root / "labstats/registry.py", "\n\nCORE_EDIT = 1\n")
    same_as_cold(sci, "tests")
    units = sci.root / "labstats/units.py"
    text = units.read_text()
    assert 'Unit("g", "mass", 1e-3)' in text
    units.write_text(text.replace('Unit("g", "mass", 1e-3)', 'Unit("g", "mass", 2e-3)', 1))
    same_as_cold(sci, "tests")
    append(sci.root / "tests/conftest.py", "\n\nLIMIT = 3\n")
    same_as_cold(sci, "tests/test_loader.py")
    assert replacements(sci) == {}


def test_health_says_the_warm_process_forks_safely(sci: Project) -> None:
    same_as_cold(sci, "tests/test_stats.py")
    health = sci.pytest("--daemon-health", "--daemon-json")
    assert '"warm_process_fork_safe"' in health.stdout
    assert health.returncode == 0, str(health)
