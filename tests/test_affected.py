"""Watch mode's selection (supervisor/affected.py), table by table, without processes.

A small project on disk; the module table is what a warm process would
report for it. Each case edits files (or names them), then asks which test
files are affected, or whether the graph cannot tell (everything).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_fastcollect.supervisor.affected import Affected, in_project, is_test_name, is_transient
from pytest_fastcollect.supervisor.graph import scan

FILES = {
    "app/__init__.py": "",
    "app/core.py": "SCALE = 2\n",
    "app/derived.py": "from app.core import SCALE\n",
    "app/leaf.py": "X = 1\n",
    "app/unused.py": "Y = 1\n",
    "app/plugin.py": "import pytest\n",
    "conftest.py": "import pytest\n",
    "tests/conftest.py": "from app.leaf import X\n\nimport pytest\n\n@pytest.fixture\ndef x():\n    return X\n",
    "tests/test_core.py": "from app.derived import SCALE\n\ndef test_it():\n    assert SCALE\n",
    "tests/test_leaf.py": "def test_it(x):\n    assert x\n",
    "tests/helpers.py": "H = 1\n",
    "tests/test_uses_helpers.py": "from helpers import H\n\ndef test_it():\n    assert H\n",
    "tests/sub/test_sub.py": "import app.core\n\ndef test_it():\n    assert app.core\n",
    "other/test_other.py": "def test_it():\n    pass\n",
}


ALL = [
    "tests/sub/test_sub.py",
    "tests/test_core.py",
    "tests/test_leaf.py",
    "tests/test_uses_helpers.py",
]


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        for rel, text in FILES.items():
            self.write(rel, text)
        self.engine = Affected(str(root))
        self.tests = [self.path(r) for r in FILES if os.path.basename(r).startswith("test_")]
        self.tests.remove(self.path("other/test_other.py"))  # not under the arguments

    def path(self, rel: str) -> str:
        return os.path.realpath(self.root / rel)

    def write(self, rel: str, text: str) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def table(self) -> dict[str, str]:
        """What a warm process that collected tests/ (prepend import mode) holds."""
        out = {}
        for rel in FILES:
            if not (self.root / rel).exists() or rel.startswith("other/"):
                continue
            if rel.startswith("app/"):
                parts = rel[:-3].split("/")
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            else:
                name = os.path.basename(rel)[:-3]
            if rel != "app/unused.py":
                out[self.path(rel)] = name
        return out

    def select(self, *rels: str) -> tuple[bool, list[str], list[str]]:
        table = self.table()
        tests = [t for t in self.tests if os.path.exists(t)]
        found = self.engine.select([self.path(r) for r in rels], table, tests, self.tests)
        files = sorted(os.path.relpath(f, self.root) for f in found.test_files)
        return found.everything, found.reasons, files


@pytest.fixture
def proj(tmp_path: Path) -> Project:
    project = Project(tmp_path / "p")
    project.select()  # a first answer: the engine learns the conftests as they are
    return project


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        # the import closure, transitively
        (["app/core.py"], ["tests/sub/test_sub.py", "tests/test_core.py"]),
        (["app/derived.py"], ["tests/test_core.py"]),
        # a test file affects itself; a helper module its importers
        (["tests/test_core.py"], ["tests/test_core.py"]),
        (["tests/helpers.py"], ["tests/test_uses_helpers.py"]),
        # a module a conftest imports: every test below that conftest
        (["app/leaf.py"], ALL),
        # a package's __init__ runs for every import of its modules (tests/conftest too)
        (["app/__init__.py"], ALL),
        # a fixture-only conftest: the tests below it
        (["tests/conftest.py"], ALL),
        # nothing changed
        ([], []),
    ],
)
def test_closure(proj: Project, changed: list[str], expected: list[str]) -> None:
    everything, reasons, files = proj.select(*changed)
    assert not everything, reasons
    assert files == expected


@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        (["pyproject.toml"], "pyproject.toml changed (configuration)"),
        (["pytest.ini"], "pytest.ini changed (configuration)"),
        (["tests/data.json"], "tests/data.json changed (a file tests may read)"),
        (["app/ext.cpython-311-x86_64-linux-gnu.so"], "installed code"),
        (["site.pth"], "installed code"),
        # loaded, but nothing the graph knows imports it: an entry point, -p, a path
        (["app/plugin.py"], "no test or conftest imports it"),
        # not loaded and imported by nothing
        (["app/unused.py"], "no test or conftest imports it"),
        (["scripts/tool.py"], "scripts/tool.py changed, and no test or conftest imports it"),
    ],
)
def test_everything_when_the_graph_cannot_tell(
    proj: Project, changed: list[str], reason: str
) -> None:
    for rel in changed:
        if not (proj.root / rel).exists():
            proj.write(rel, "")
    everything, reasons, files = proj.select(*changed)
    assert everything
    assert any(reason in r for r in reasons), reasons
    assert files == ALL  # everything the arguments select, never other/


def test_installed_packages_changed(proj: Project) -> None:
    found = proj.engine.select(
        ["/usr/lib/python3/site-packages/(installed packages).dist-info"], proj.table(), proj.tests
    )
    assert found.everything and found.reasons == ["installed packages changed"]


def test_a_conftest_with_hooks_reaches_every_test(proj: Project) -> None:
    proj.write("tests/sub/conftest.py", "def pytest_collection_modifyitems(items):\n    pass\n")
    proj.select()  # seen once, with its hook
    proj.write("tests/sub/conftest.py", "X = 1\n")  # the hook removed: was it there? yes
    everything, reasons, _ = proj.select("tests/sub/conftest.py")
    assert everything
    assert reasons == ["tests/sub/conftest.py defines pytest hooks, and it changed"]
    # Once judged, the new content (no hook) is what counts: a fixture-only edit.
    proj.write("tests/sub/conftest.py", "X = 2\n")
    assert proj.select("tests/sub/conftest.py") == (False, [], ["tests/sub/test_sub.py"])


def test_a_module_imported_by_a_conftest_with_plugins(proj: Project) -> None:
    proj.write("conftest.py", 'pytest_plugins = ["app.plugin"]\n')
    proj.select()
    everything, reasons, _ = proj.select("app/plugin.py")
    assert everything
    assert reasons == ["conftest.py names pytest_plugins, and a module it imports changed"]


def test_a_conftest_that_runs_code_at_import_reaches_every_test(proj: Project) -> None:
    # Collected after it, test modules in any directory see what it did.
    proj.write("tests/sub/conftest.py", "import os\n\nos.environ['MODE'] = 'sub'\n")
    everything, reasons, _ = proj.select("tests/sub/conftest.py")
    assert everything
    assert reasons == [
        "tests/sub/conftest.py runs code at import (line 3: an assignment to "
        "os.environ['MODE']), and it changed"
    ]
    # Back to plain: the version it replaces still ran that code.
    proj.write("tests/sub/conftest.py", "import pytest\n")
    assert proj.select("tests/sub/conftest.py")[0]
    proj.write("tests/sub/conftest.py", "import pytest\n\nX = 1\n")
    assert proj.select("tests/sub/conftest.py") == (False, [], ["tests/sub/test_sub.py"])


def test_a_new_conftest_affects_its_directory(proj: Project) -> None:
    proj.write("tests/sub/conftest.py", "import pytest\n")
    assert proj.select("tests/sub/conftest.py") == (False, [], ["tests/sub/test_sub.py"])


def test_a_conftest_never_seen_means_everything(tmp_path: Path) -> None:
    project = Project(tmp_path / "q")  # no first answer: nothing is known of it
    everything, reasons, _ = project.select("tests/conftest.py")
    assert everything and reasons == ["tests/conftest.py changed (not seen before)"]


def test_a_deleted_module_is_found_by_the_name_it_had(proj: Project) -> None:
    table = proj.table()
    os.unlink(proj.path("app/derived.py"))
    tests = [t for t in proj.tests if os.path.exists(t)]
    # The replacement warm process no longer holds app.derived.
    table.pop(proj.path("app/derived.py"))
    found = proj.engine.select([proj.path("app/derived.py")], table, tests, proj.tests)
    assert not found.everything, found.reasons
    assert [os.path.relpath(f, proj.root) for f in found.test_files] == ["tests/test_core.py"]


def test_a_new_module_is_named_by_its_neighbours(proj: Project) -> None:
    proj.write("tests/test_new_import.py", "from app.fresh import Z\n\ndef test_it():\n    pass\n")
    proj.tests.append(proj.path("tests/test_new_import.py"))
    proj.select()
    proj.write("app/fresh.py", "Z = 1\n")
    assert proj.engine.name_of(proj.path("app/fresh.py")) == "app.fresh"
    assert proj.select("app/fresh.py") == (False, [], ["tests/test_new_import.py"])


def test_a_computed_import_makes_a_test_affected_by_any_change(proj: Project) -> None:
    proj.write(
        "tests/test_dynamic.py",
        "import importlib\n\ndef test_it():\n    importlib.import_module('app.' + 'leaf')\n",
    )
    proj.tests.append(proj.path("tests/test_dynamic.py"))
    proj.select()
    everything, _, files = proj.select("app/derived.py")
    assert not everything
    assert files == ["tests/test_core.py", "tests/test_dynamic.py"]
    # A literal name is an ordinary edge.
    proj.write("tests/test_dynamic.py", "import importlib\nimportlib.import_module('app.leaf')\n")
    assert proj.select("app/derived.py")[2] == ["tests/test_core.py"]


def test_a_new_test_file_is_selected(proj: Project) -> None:
    proj.write("tests/test_brand_new.py", "def test_it():\n    pass\n")
    assert proj.select("tests/test_brand_new.py") == (False, [], ["tests/test_brand_new.py"])


def test_transient_and_ignored_paths(proj: Project, tmp_path: Path) -> None:
    root = str(proj.root)
    assert not in_project(os.path.join(root, ".git", "index"), root)
    assert not in_project(os.path.join(root, "pytest-cache-files-abc123"), root)
    assert not in_project(os.path.join(root, "app", "__pycache__", "core.cpython-311.pyc"), root)
    assert not in_project(os.path.join(str(tmp_path), "elsewhere.py"), root)
    assert in_project(os.path.join(root, "app", "core.py"), root)
    gone = os.path.join(root, "app", ".core.py.tmp123")
    assert is_transient(gone)
    proj.write("app/.env", "A=1\n")
    assert not is_transient(os.path.join(root, "app", ".env"))  # still there: a real file
    # Editor temporaries that came and went select nothing.
    assert proj.select("app/.core.py.tmp4", "app/core.py~", "app/4913") == (False, [], [])


def test_test_name_patterns() -> None:
    defaults = ("test_*.py", "*_test.py")
    assert is_test_name("/p/tests/test_a.py", defaults)
    assert is_test_name("/p/tests/a_test.py", defaults)
    assert not is_test_name("/p/tests/helpers.py", defaults)
    assert is_test_name("/p/checks/check_a.py", ["check_*.py"])


@pytest.mark.parametrize(
    ("source", "dynamic", "hooks", "plugins"),
    [
        ("import os\n", False, False, set()),
        ("import importlib\nimportlib.import_module(name)\n", True, False, set()),
        ("__import__(f'x{y}')\n", True, False, set()),
        ("import importlib.util as u\nu.spec_from_file_location('m', p)\n", True, False, set()),
        ("def pytest_configure(config):\n    pass\n", False, True, set()),
        ("from app.hooks import pytest_collection_modifyitems\n", False, True, set()),
        ("pytest_plugins = ['a.b', 'c']\n", False, False, {"a.b", "c"}),
        ("pytest_plugins = 'a.b'\n", False, False, {"a.b"}),
        ("pytest_plugins = names()\n", True, False, set()),
        ("def broken(:\n", False, False, set()),
    ],
)
def test_scan_facts(source: str, dynamic: bool, hooks: bool, plugins: set[str]) -> None:
    found = scan(source.encode(), "conftest", False)
    assert (found.dynamic, found.hooks, set(found.plugins)) == (dynamic, hooks, plugins)
