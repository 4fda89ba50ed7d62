"""The reload rule without processes: changes.classify, the import graph, pyc removal."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from pytest_fastcollect.supervisor import changes, effects
from pytest_fastcollect.supervisor.changes import Replace, classify
from pytest_fastcollect.supervisor.graph import ImportGraph, scan_imports


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "core.py").write_text("X = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("from pkg.core import X\n")
    (tmp_path / "conftest.py").write_text("")
    return tmp_path


def loaded(root: Path) -> tuple[dict[str, str], dict[str, str | None]]:
    """The module table (file -> name) and content hashes of a warm process that loaded root."""
    modules = {
        str(root / "pkg" / "__init__.py"): "pkg",
        str(root / "pkg" / "core.py"): "pkg.core",
        str(root / "tests" / "test_a.py"): "test_a",
        str(root / "conftest.py"): "conftest",
    }
    return modules, {path: changes.content_hash(path) for path in modules}


def decide(root: Path, *rels: str) -> changes.Decision:
    modules, hashes = loaded(root)
    conftests = {str(root / "conftest.py")}
    return classify({str(root / r) for r in rels}, str(root), modules, hashes, conftests)


# -- classify ----------------------------------------------------------------------


def test_unchanged_content_is_no_change(root: Path) -> None:
    modules, hashes = loaded(root)
    core = root / "pkg" / "core.py"
    core.write_text("X = 1\n")  # saved without edits
    decision = classify({str(core)}, str(root), modules, hashes)
    assert decision.replace is None and not decision.changed and not decision.broken


def test_edited_module_is_reloaded(root: Path) -> None:
    modules, hashes = loaded(root)
    (root / "pkg" / "core.py").write_text("X = 2\n")
    (root / "tests" / "test_a.py").write_text("from pkg.core import X\nY = X\n")
    decision = classify(
        {str(root / "pkg" / "core.py"), str(root / "tests" / "test_a.py")},
        str(root),
        modules,
        hashes,
    )
    assert decision.replace is None
    assert decision.changed == {
        "pkg.core": str(root / "pkg" / "core.py"),
        "test_a": str(root / "tests" / "test_a.py"),
    }
    assert decision.broken == []


def test_unknown_hash_counts_as_changed(root: Path) -> None:
    modules, hashes = loaded(root)
    hashes[str(root / "pkg" / "core.py")] = None  # changed while it was being imported
    decision = classify({str(root / "pkg" / "core.py")}, str(root), modules, hashes)
    assert decision.changed == {"pkg.core": str(root / "pkg" / "core.py")}


def test_syntax_error_is_a_broken_change_not_a_replacement(root: Path) -> None:
    modules, hashes = loaded(root)
    (root / "pkg" / "core.py").write_text("def f(:\n")
    decision = classify({str(root / "pkg" / "core.py")}, str(root), modules, hashes)
    assert decision.replace is None
    assert decision.changed == {"pkg.core": str(root / "pkg" / "core.py")}
    assert decision.broken == [str(root / "pkg" / "core.py")]


def test_new_test_file_needs_nothing(root: Path) -> None:
    (root / "tests" / "test_new.py").write_text("def test_x(): pass\n")
    decision = decide(root, "tests/test_new.py")
    assert decision.replace is None and not decision.changed


@pytest.mark.parametrize(
    "name",
    [
        "pyproject.toml",
        "pytest.ini",
        ".pytest.ini",
        "pytest.toml",
        ".pytest.toml",
        "tox.ini",
        "setup.cfg",
    ],
)
def test_config_files_replace(root: Path, name: str) -> None:
    (root / name).write_text("")
    assert decide(root, name).replace is Replace.CONFIG


# Conftest edits are classified here (their new version, and the module to
# purge); whether the warm process must be replaced is effects.reloadable's
# decision, made by the reloader (tests/test_effects.py, test_supervisor_unit.py).


def test_conftest_edit_is_passed_on_with_its_new_version(root: Path) -> None:
    modules, hashes = loaded(root)
    conftest = str(root / "conftest.py")
    (root / "conftest.py").write_text("import os\nos.environ['A'] = '1'\n")
    decision = classify({conftest}, str(root), modules, hashes, {conftest})
    assert decision.replace is None
    assert decision.changed == {"conftest": str(root / "conftest.py")}
    profile = decision.conftests[str(root / "conftest.py")]
    assert profile.effect == "line 2: an assignment to os.environ['A']"


def test_new_conftest_is_passed_on(root: Path) -> None:
    (root / "tests" / "conftest.py").write_text("")
    decision = decide(root, "tests/conftest.py")
    assert list(decision.conftests) == [str(root / "tests" / "conftest.py")]
    assert decision.changed == {}  # nothing of it was loaded


def test_deleted_conftest_that_was_loaded_is_an_empty_new_version(root: Path) -> None:
    (root / "conftest.py").unlink()
    decision = decide(root, "conftest.py")
    assert decision.conftests == {str(root / "conftest.py"): effects.EMPTY}
    assert decision.changed == {"conftest": str(root / "conftest.py")}


def test_conftest_saved_without_edits_is_no_change(root: Path) -> None:
    (root / "conftest.py").write_text("")
    decision = decide(root, "conftest.py")
    assert not decision.conftests and not decision.changed


def test_conftest_created_and_deleted_between_runs_needs_nothing(root: Path) -> None:
    decision = decide(root, "tests/conftest.py")
    assert decision.replace is None and not decision.conftests


def test_deleted_module_replaces(root: Path) -> None:
    (root / "pkg" / "core.py").unlink()
    decision = decide(root, "pkg/core.py")
    assert decision.replace is Replace.DELETED
    assert os.path.join("pkg", "core.py") in decision.reason


def test_moved_module_replaces(root: Path) -> None:
    os.rename(root / "pkg" / "core.py", root / "pkg" / "moved.py")
    assert decide(root, "pkg/core.py", "pkg/moved.py").replace is Replace.DELETED


def test_new_init_replaces(root: Path) -> None:
    (root / "tests" / "__init__.py").write_text("")
    assert decide(root, "tests/__init__.py").replace is Replace.INIT


def test_removed_init_replaces(root: Path) -> None:
    (root / "pkg" / "__init__.py").unlink()
    assert decide(root, "pkg/__init__.py").replace is Replace.DELETED


def test_extension_replaces(root: Path) -> None:
    (root / "pkg" / "fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    assert decide(root, "pkg/fast.cpython-311-x86_64-linux-gnu.so").replace is Replace.EXTENSION


@pytest.mark.parametrize("rel", ["site.pth", "lib/thing-1.0.dist-info/RECORD"])
def test_installed_packages_replace(root: Path, rel: str) -> None:
    assert decide(root, rel).replace is Replace.PACKAGES


def test_replacement_wins_over_reloads(root: Path) -> None:
    modules, hashes = loaded(root)
    (root / "pkg" / "core.py").write_text("X = 2\n")
    (root / "setup.cfg").write_text("[tool:pytest]\n")
    paths = {str(root / "pkg" / "core.py"), str(root / "setup.cfg")}
    assert classify(paths, str(root), modules, hashes).replace is Replace.CONFIG


def test_non_python_files_are_ignored(root: Path) -> None:
    (root / "README.md").write_text("x")
    (root / "pkg" / "core.py~").write_text("x")
    decision = decide(root, "README.md", "pkg/core.py~")
    assert decision.replace is None and not decision.changed


# -- is_relevant -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "relevant"),
    [
        ("pkg/core.py", True),
        ("conftest.py", True),
        ("pyproject.toml", True),
        ("pkg/fast.so", True),
        ("pkg/__pycache__/core.cpython-311.pyc", False),
        ("pkg/__pycache__/core.py", False),
        (".git/HEAD", False),
        (".venv/lib/site.py", False),
        ("lib/site-packages/x.py", False),
        ("build/lib/pkg/core.py", False),
        (".pytest_cache/v/cache/x.py", False),
        ("pkg/.#core.py", False),  # emacs lock file
        ("pkg/core.py~", False),  # vim backup
        ("pkg/core.py___jb_tmp___", False),  # JetBrains safe write
        ("pkg/core.py___jb_old___", False),
        ("pkg/.core.py.swp", False),
        ("pkg/data.json", False),
        ("pkg/x.egg-info/top.py", False),
    ],
)
def test_is_relevant(tmp_path: Path, rel: str, relevant: bool) -> None:
    assert changes.is_relevant(str(tmp_path / rel), str(tmp_path)) is relevant


def test_outside_root_is_irrelevant(tmp_path: Path) -> None:
    assert not changes.is_relevant(str(tmp_path.parent / "elsewhere.py"), str(tmp_path))


# -- content hash and stale bytecode -----------------------------------------------


def test_content_hash(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("A = 1\n")
    first = changes.content_hash(str(f))
    f.write_text("A = 2\n")
    assert first is not None and changes.content_hash(str(f)) not in (None, first)
    assert changes.content_hash(str(tmp_path / "missing.py")) is None


def test_remove_stale_bytecode(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("X = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    interpreter = Path(importlib.util.cache_from_source(str(src)))
    rewritten = cache / "mod.cpython-311-pytest-9.2.0.pyc"
    other = cache / "mod2.cpython-311.pyc"
    for f in (interpreter, rewritten, other):
        f.write_bytes(b"")
    changes.remove_stale_bytecode(str(src))
    assert not interpreter.exists() and not rewritten.exists()
    assert other.exists()
    changes.remove_stale_bytecode(str(src))  # nothing left to remove: no error


# -- import graph ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "importer", "is_package", "expected"),
    [
        ("import a.b.c", "m", False, {"a", "a.b", "a.b.c"}),
        ("import a as x, b", "m", False, {"a", "b"}),
        ("from a.b import c, d", "m", False, {"a", "a.b", "a.b.c", "a.b.d"}),
        ("from a import *", "m", False, {"a"}),
        ("from . import sib", "pkg.mod", False, {"pkg", "pkg.sib"}),
        ("from .sib import x", "pkg.mod", False, {"pkg", "pkg.sib", "pkg.sib.x"}),
        ("from .. import up", "pkg.sub.mod", False, {"pkg", "pkg.up"}),
        ("from . import sub", "pkg", True, {"pkg.sub"}),
        ("from .sub import x", "pkg", True, {"pkg.sub", "pkg.sub.x"}),
        ("from ... import x", "pkg.mod", False, set()),  # beyond the top: unresolvable
        (
            "import importlib\nimportlib.import_module('dyn.mod')",
            "m",
            False,
            {"importlib", "dyn", "dyn.mod"},
        ),
        ("__import__('dyn')", "m", False, {"dyn"}),
        ("import_module(name)", "m", False, set()),  # not a literal: the weakref check's job
        ("def f():\n    import lazy\n", "m", False, {"lazy"}),
        ("if TYPE_CHECKING:\n    from t import T\n", "m", False, {"t", "t.T"}),
        ("import m", "m", False, set()),  # itself
        ("def f(:\n", "m", False, set()),  # syntax error
    ],
)
def test_scan_imports(source: str, importer: str, is_package: bool, expected: set[str]) -> None:
    assert scan_imports(source.encode(), importer, is_package) == expected


def write_modules(tmp_path: Path, sources: dict[str, str]) -> dict[str, str]:
    """Write ``name -> source`` as files; return name -> file as the supervisor sees them."""
    modules = {}
    for name, source in sources.items():
        parts = name.split(".")
        is_pkg = name.endswith("__init__")
        path = tmp_path.joinpath(*parts).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        modules[name.removesuffix(".__init__") if is_pkg else name] = str(path)
    return modules


def test_reverse_closure_is_transitive(tmp_path: Path) -> None:
    modules = write_modules(
        tmp_path,
        {
            "app.__init__": "",
            "app.base": "X = 1\n",
            "app.mid": "from app.base import X\n",
            "app.top": "import app.mid\n",
            "app.other": "import json\n",
            "test_top": "from app.top import *\n",
            "test_other": "from app import other\n",
        },
    )
    graph = ImportGraph()
    assert graph.reverse_closure(["app.base"], modules) == [
        "app.base",
        "app.mid",
        "app.top",
        "test_top",
    ]
    assert graph.reverse_closure(["app.other"], modules) == ["app.other", "test_other"]
    # Every module imports its package first: a changed __init__ takes everything along.
    assert graph.reverse_closure(["app"], modules) == sorted(modules)


def test_reverse_closure_survives_cycles(tmp_path: Path) -> None:
    modules = write_modules(tmp_path, {"a": "import b\n", "b": "import a\n", "c": "import b\n"})
    assert ImportGraph().reverse_closure(["a"], modules) == ["a", "b", "c"]


def test_reverse_closure_ignores_unloaded(tmp_path: Path) -> None:
    modules = write_modules(tmp_path, {"a": "X = 1\n", "b": "import a\n"})
    graph = ImportGraph()
    assert graph.reverse_closure(["not_loaded"], modules) == []
    assert graph.reverse_closure(["a", "not_loaded"], modules) == ["a", "b"]


def test_reverse_closure_takes_submodules_of_a_purged_package(tmp_path: Path) -> None:
    modules = write_modules(
        tmp_path, {"pkg.__init__": "", "pkg.leaf": "Y = 2\n", "z": "import pkg\n"}
    )
    assert ImportGraph().reverse_closure(["pkg"], modules) == ["pkg", "pkg.leaf", "z"]


def test_graph_sees_new_edges_after_an_edit(tmp_path: Path) -> None:
    modules = write_modules(tmp_path, {"a": "X = 1\n", "b": "Y = 1\n", "t": "import a\n"})
    graph = ImportGraph()
    assert graph.reverse_closure(["b"], modules) == ["b"]
    Path(modules["t"]).write_text("import a\nimport b\n")
    assert graph.reverse_closure(["b"], modules) == ["b", "t"]


def wait_for_next_ctime(where: Path, after_ns: int) -> None:
    """File times come from a coarse kernel clock (a few ms): wait until it has moved on."""
    probe = where / "clock-probe"
    probe.write_text("")
    deadline = time.monotonic() + 5
    while probe.stat().st_ctime_ns <= after_ns:
        assert time.monotonic() < deadline, "the file system clock did not advance"
        os.utime(probe)


def test_graph_sees_a_same_size_rewrite_that_kept_its_mtime(tmp_path: Path) -> None:
    # Coarse file systems and tools that restore times: (mtime, size) is not a content key.
    modules = write_modules(
        tmp_path, {"alpha": "X = 1\n", "bravo": "X = 2\n", "t": "import alpha\n"}
    )
    graph = ImportGraph()
    assert graph.reverse_closure(["bravo"], modules) == ["bravo"]
    t = Path(modules["t"])
    before = t.stat()
    wait_for_next_ctime(tmp_path, before.st_ctime_ns)
    with open(t, "w") as fh:  # in place: same inode
        fh.write("import bravo\n")
    os.utime(t, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (t.stat().st_size, t.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert graph.reverse_closure(["bravo"], modules) == ["bravo", "t"]


# -- import-time environment (a difference replaces the warm process) --------------


def test_env_unset_is_not_empty() -> None:
    from pytest_fastcollect import fingerprint

    assert fingerprint.env_differences({"A": None}, {}) == []
    assert fingerprint.env_differences({"A": ""}, {"A": ""}) == []
    assert fingerprint.env_differences({"A": None}, {"A": ""}) != []
    assert fingerprint.env_differences({"A": ""}, {}) != []
    assert fingerprint.env_differences({"A": "1"}, {"A": "2", "B": "x"}) != []
