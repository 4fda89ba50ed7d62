"""Fixtures for real daemons in per-test runtime directories, always stopped.

Every daemon a test starts lives in its own private runtime directory, and
teardown stops it (and, if it does not answer, kills the verified pid) even
when the test failed. The helpers these fixtures use are in helpers.py.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import DEFAULT_INI, EXAMPLES, Project, equiv_copy, make_project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pytest.ini").write_text(DEFAULT_INI)
    proj = make_project(root)
    try:
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Callable[[str], Project]]:
    """Copy a bundled example into tmp_path: ``example("basic")`` -> Project."""
    made: list[Project] = []

    def factory(name: str) -> Project:
        dest = tmp_path / name
        shutil.copytree(
            EXAMPLES / name, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
        )
        proj = make_project(dest)
        made.append(proj)
        return proj

    try:
        yield factory
    finally:
        for proj in made:
            proj.cleanup()
            shutil.rmtree(proj.runtime, ignore_errors=True)


@contextlib.contextmanager
def _equiv_project_with_daemon(dest: Path) -> Iterator[Project]:
    proj = equiv_copy(dest)
    try:
        started = proj.start("tests", "scenarios")
        assert started.returncode == 0, str(started)
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def equiv_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One copy of the equivalence project per test module, with a daemon warmed on it."""
    with _equiv_project_with_daemon(tmp_path_factory.mktemp("equiv") / "proj") as proj:
        yield proj


@pytest.fixture
def own_equiv_daemon(tmp_path: Path) -> Iterator[Project]:
    """The same, for one test alone: for tests that make it replace its warm process."""
    with _equiv_project_with_daemon(tmp_path / "proj") as proj:
        yield proj


# tests/data holds fixture projects that the tests copy and run; they are not our tests
# (the equivalence project fails on purpose and uses its own pytest.ini markers).
collect_ignore = ["data"]
