"""Never stale beyond the rootdir: project code that lives elsewhere is watched and swept too.

Monorepos put code outside the project's rootdir all the time: a package
directory that is a symlink, a sibling package installed with ``pip install
-e`` (through a ``.pth`` path entry, setuptools' editable finder, or its
strict link tree), a namespace package split across directories. Each
scenario sets that up on a copy of tests/data/stale_project, starts a
daemon, edits the code outside the rootdir and compares a warm run with a
cold one, as tests/test_never_stale.py does. Editing a module in place must
re-import it (no replacement of the warm process), exactly as for a module
under the rootdir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_never_stale import Checker

from fuzz_edits import StaleBench, Style, edit, save
from helpers import make_venv, pip_install_editable

pytestmark = pytest.mark.timeout(300)

SIBLING_TEST = """\
from sibling import value
from sibling.deep import depth


def test_sibling():
    assert value() == 1


def test_deep():
    assert depth() == 10
"""
SIBLING_INIT = "def value():\n    return 1\n"
SIBLING_DEEP = "def depth():\n    return 10\n"
SIBLING_PYPROJECT = """\
[project]
name = "sibling"
version = "0.1"

[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"
"""


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[StaleBench]:
    made = StaleBench(tmp_path / "proj")
    try:
        yield made
    finally:
        made.cleanup()


def _start(bench: StaleBench) -> Checker:
    bench.start()
    checker = Checker(bench)
    # Watch mode's selection is not judged here: DaemonClient.affected refuses
    # paths outside the rootdir (outside_root), and watch mode itself reruns
    # everything when loaded code outside the rootdir changes.
    checker.selection = None
    return checker


def _sibling(bench: StaleBench, tmp_path: Path, layout: str, mode: str | None) -> Path:
    """A sibling project ``lib`` installed editable into a virtualenv the project's runs use."""
    lib = tmp_path / "lib"
    package = lib / "src" / "sibling" if layout == "src" else lib / "sibling"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(SIBLING_INIT)
    (package / "deep.py").write_text(SIBLING_DEEP)
    (lib / "pyproject.toml").write_text(SIBLING_PYPROJECT)
    python = make_venv(tmp_path / "venv")
    pip_install_editable(python, lib, mode)
    bench.project.pytest_command = [str(Path(python).parent / "pytest")]
    save(bench.path("tests/test_sibling.py"), SIBLING_TEST)
    return package


def _editable_scenario(bench: StaleBench, tmp_path: Path, layout: str, mode: str | None) -> None:
    package = _sibling(bench, tmp_path, layout, mode)
    c = _start(bench)
    edit(package / "__init__.py", "return 1", "return 2")
    c.check("tests", ordinary=True, expect=("FAILED tests/test_sibling.py::test_sibling",))
    status = bench.status()
    watched = status["watched_paths"]
    assert isinstance(watched, list)
    assert os.path.realpath(package) in watched, status
    edit(package / "deep.py", "return 10", "return 11", style=Style.ATOMIC)
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/test_sibling.py::test_deep",
            "FAILED tests/test_sibling.py::test_sibling",
        ),
    )
    edit(package / "__init__.py", "return 2", "return 1", style=Style.BACKUP)
    c.check("tests", ordinary=True, expect=("PASSED tests/test_sibling.py::test_sibling",))


def test_editable_sibling_through_a_pth_path_entry(bench: StaleBench, tmp_path: Path) -> None:
    # A src layout: setuptools writes a .pth file whose line is lib/src.
    _editable_scenario(bench, tmp_path, "src", None)
    pth = list((tmp_path / "venv").rglob("__editable__.sibling-0.1.pth"))
    assert pth and str(tmp_path / "lib" / "src") in pth[0].read_text()


def test_editable_sibling_through_the_editable_finder(bench: StaleBench, tmp_path: Path) -> None:
    # A flat layout: setuptools installs __editable___sibling_0_1_finder.py,
    # whose MAPPING points the name "sibling" at lib/sibling.
    _editable_scenario(bench, tmp_path, "flat", None)
    finders = list((tmp_path / "venv").rglob("__editable___sibling_*_finder.py"))
    assert finders and str(tmp_path / "lib" / "sibling") in finders[0].read_text()


def test_editable_sibling_in_strict_mode(bench: StaleBench, tmp_path: Path) -> None:
    # editable_mode=strict: a tree of links to each file under lib/build.
    _editable_scenario(bench, tmp_path, "flat", "strict")


def test_symlinked_package_directory(bench: StaleBench, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(bench.path("app"), elsewhere / "app")
    os.symlink(elsewhere / "app", bench.path("app"))
    c = _start(bench)
    edit(elsewhere / "app" / "core.py", "return x * SCALE", "return x * SCALE + 1")
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/test_core.py::test_compute",
            "FAILED tests/test_core.py::test_scaled",
        ),
    )
    # A module added to the package and imported by a new test.
    save(elsewhere / "app" / "extra.py", "EXTRA = 1\n")
    save(
        bench.path("tests/test_extra.py"),
        "from app.extra import EXTRA\n\n\ndef test_extra():\n    assert EXTRA == 2\n",
    )
    c.check("tests", ordinary=True, expect=("FAILED tests/test_extra.py::test_extra",))
    # A new size: within the second of the first save, a same-size edit would
    # leave CPython's pyc check (mtime in seconds, size) trusting the cold run's
    # bytecode, cold and warm alike, and the edit would show nowhere.
    edit(elsewhere / "app" / "extra.py", "EXTRA = 1", "EXTRA = 1 + 1", style=Style.JETBRAINS)
    c.check("tests", ordinary=True, expect=("PASSED tests/test_extra.py::test_extra",))


def test_namespace_package_split_across_directories(bench: StaleBench, tmp_path: Path) -> None:
    # nsx/a.py under the rootdir, nsx/b.py in a directory the ini's pythonpath adds.
    outside = tmp_path / "outside"
    save(outside / "nsx" / "b.py", "B = 1\n")
    save(bench.path("nsx/a.py"), "A = 1\n")
    edit(bench.path("pyproject.toml"), 'pythonpath = ["."]', 'pythonpath = [".", "../outside"]')
    save(
        bench.path("tests/test_nsx.py"),
        "import nsx\nfrom nsx.a import A\nfrom nsx.b import B\n\n\n"
        "def test_portions():\n    assert (A, B) == (1, 1)\n\n\n"
        "def test_two_portions():\n    assert len(list(nsx.__path__)) == 2\n",
    )
    c = _start(bench)
    edit(outside / "nsx" / "b.py", "B = 1", "B = 2")
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/test_nsx.py::test_portions",
            "PASSED tests/test_nsx.py::test_two_portions",
        ),
    )
    edit(outside / "nsx" / "b.py", "B = 2", "B = 1", style=Style.ATOMIC)
    c.check("tests", ordinary=True, expect=("PASSED tests/test_nsx.py::test_portions",))
