"""Never stale: after every kind of edit, a warm run equals a cold run.

Each scenario copies tests/data/stale_project, starts a daemon, then edits
files for real (the ways editors save) and runs the same pytest command
through the daemon (first, immediately after the save) and with
``--no-daemon``: exit codes and every test's outcome (``-rA``) must be
identical, and the warm run must really have been served by the daemon.
The expected cold outcomes are asserted too, so a scenario whose edit had
no effect cannot pass by accident. After each check, the selection check
(tests/selection_check.py) judges what watch mode would rerun. Ordinary edits (a project or test module
changed in place) must not replace the warm process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from selection_check import SelectionCheck

from fuzz_edits import StaleBench, Style, edit, outcomes, save

pytestmark = pytest.mark.timeout(240)


class Checker:
    def __init__(
        self, bench: StaleBench, extra: tuple[str, ...] = (), roots: tuple[Path, ...] = ()
    ) -> None:
        self.bench = bench
        self.extra = extra  # appended to every command (``-n 2``: parallel runs)
        # None: watch mode's selection is not judged (see test_never_stale_outside).
        self.selection: SelectionCheck | None = SelectionCheck(bench, roots=roots)

    def path(self, rel: str) -> Path:
        return self.bench.path(rel)

    def check(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        ordinary: bool = False,
        allow_cold: bool = False,
        expect: tuple[str, ...] = (),
        absent: tuple[str, ...] = (),
        thin: bool = False,
        known: str = "",
    ) -> None:
        """Warm vs cold for ``args``; ``expect``/``absent``: `-rA` line prefixes in the cold run.

        ``known``: the root cause, when a difference is known and not fixed yet.
        """
        before = self.bench.replacements() if ordinary else None
        run_args = [*(args or ("tests",)), *self.extra]
        cmp = self.bench.compare(run_args, env, allow_cold=allow_cold, thin=thin)
        assert not cmp.problems, (
            (f"KNOWN DIFFERENCE: {known}\n" if known else "")
            + cmp.report()
            + "\n----- daemon log -----\n"
            + self.bench.log_tail()
        )
        if self.extra and "test session starts" in cmp.cold.stdout:
            for run in (cmp.warm, cmp.cold):  # xdist really ran the tests
                assert "2 workers [" in run.stdout, cmp.report()
        cold = outcomes(cmp.cold).tests
        for prefix in expect:
            assert any(line.startswith(prefix) for line in cold), (
                f"the edit had no effect: no {prefix!r}\n{cmp.report()}"
            )
        for prefix in absent:
            assert not any(line.startswith(prefix) for line in cold), (
                f"{prefix!r} still there\n{cmp.report()}"
            )
        # Never too few: what watch mode would rerun after this edit.
        if self.selection is not None:
            self._check_selection(run_args, env, cmp)
        if before is not None:
            after = self.bench.replacements()
            assert after == before, (
                f"an ordinary edit replaced the warm process: {before} -> {after}\n"
                + self.bench.log_tail()
            )

    def _check_selection(self, run_args: list[str], env: dict[str, str] | None, cmp: Any) -> None:
        assert self.selection is not None
        reuse = cmp.cold if run_args == list(self.selection.args) else None
        missed = self.selection.check(env, reuse)
        assert missed is None, (
            "watch mode's selection missed a change:\n"
            + missed.report()
            + "\n----- daemon log -----\n"
            + self.bench.log_tail()
        )


def _checker(tmp_path: Path, extra: tuple[str, ...]) -> Iterator[Checker]:
    bench = StaleBench(tmp_path / "proj")
    try:
        bench.start()
        yield Checker(bench, extra)
    finally:
        bench.cleanup()


@pytest.fixture
def checker(tmp_path: Path) -> Iterator[Checker]:
    yield from _checker(tmp_path, ())


@pytest.fixture
def parallel_checker(tmp_path: Path) -> Iterator[Checker]:
    pytest.importorskip("xdist")
    yield from _checker(tmp_path, ("-n", "2"))


SCENARIOS: dict[str, Callable[[Checker], None]] = {}


def scenario(fn: Callable[[Checker], None]) -> Callable[[Checker], None]:
    SCENARIOS[fn.__name__] = fn
    return fn


# -- project modules ---------------------------------------------------------------


@scenario
def function_body(c: Checker) -> None:
    edit(c.path("app/core.py"), "return x * SCALE", "return x * SCALE + 1")
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/test_core.py::test_compute",
            "FAILED tests/test_core.py::test_scaled",
        ),
    )


@scenario
def constant_bound_by_from_import(c: Checker) -> None:
    edit(c.path("app/core.py"), "SCALE = 2", "SCALE = 5")
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/test_core.py::test_scale_constant",
            "FAILED tests/test_core.py::test_double_scale",
            # Node ids come from the constant: the test module was collected anew.
            "FAILED tests/test_params.py::test_param[4]",
        ),
    )


@scenario
def dataclass_field_added(c: Checker) -> None:
    edit(c.path("app/models.py"), "    y: int\n", "    y: int\n    z: int = 0\n")
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/test_models.py::test_point_fields",
            "PASSED tests/test_models.py::test_point_equality",
        ),
    )


@scenario
def pydantic_field_type_changed(c: Checker) -> None:
    edit(c.path("app/models.py"), "    age: int\n", "    age: str\n")
    c.check("tests", ordinary=True, expect=("FAILED tests/test_models.py::test_user_age_is_int",))


@scenario
def enum_member_added(c: Checker) -> None:
    edit(c.path("app/models.py"), "    GREEN = 2\n", "    GREEN = 2\n    BLUE = 3\n")
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/test_models.py::test_colors",
            "PASSED tests/test_models.py::test_enum_identity",
        ),
    )


@scenario
def class_registered_in_other_module(c: Checker) -> None:
    # The registry in app.registry keeps the old classes alive: an in-place
    # reload cannot be trusted, so the warm process may be replaced, but the
    # run must still be warm and right.
    edit(c.path("app/plugins.py"), "class Beta:", "class Delta:")
    c.check(
        "tests",
        expect=(
            "FAILED tests/test_registry.py::test_registered_names",
            "PASSED tests/test_registry.py::test_registered_identity",
        ),
    )
    edit(c.path("app/plugins.py"), "class Delta:", "class Beta:")
    c.check("tests", expect=("PASSED tests/test_registry.py::test_registered_names",))


# -- test modules ------------------------------------------------------------------


@scenario
def added_test(c: Checker) -> None:
    path = c.path("tests/test_core.py")
    save(path, path.read_text() + "\n\ndef test_added():\n    assert compute(1) == 3\n")
    c.check("tests", ordinary=True, expect=("FAILED tests/test_core.py::test_added",))


@scenario
def deleted_test(c: Checker) -> None:
    edit(
        c.path("tests/test_core.py"),
        'def test_greet():\n    assert greet("bob") == "hello bob"\n',
        "",
    )
    c.check("tests", ordinary=True, absent=("PASSED tests/test_core.py::test_greet",))


@scenario
def renamed_test(c: Checker) -> None:
    edit(c.path("tests/test_core.py"), "def test_greet():", "def test_greeting():")
    c.check(
        "tests",
        ordinary=True,
        expect=("PASSED tests/test_core.py::test_greeting",),
        absent=("PASSED tests/test_core.py::test_greet ",),
    )


@scenario
def new_test_file_by_directory(c: Checker) -> None:
    save(
        c.path("tests/test_extra.py"),
        "from app.core import compute\n\n\ndef test_extra():\n    assert compute(2) == 5\n",
    )
    c.check("tests", ordinary=True, expect=("FAILED tests/test_extra.py::test_extra",))


@scenario
def deleted_test_file(c: Checker) -> None:
    c.path("tests/test_models.py").unlink()
    c.check("tests", absent=("PASSED tests/test_models.py",))


# -- conftest and configuration ----------------------------------------------------


@scenario
def root_conftest_fixture_changed(c: Checker) -> None:
    edit(c.path("conftest.py"), "return 10", "return 11")
    # A plain conftest (imports, definitions): no new warm process.
    c.check("tests", ordinary=True, expect=("FAILED tests/test_fixtures.py::test_base",))


@scenario
def package_conftest_fixture_changed(c: Checker) -> None:
    edit(c.path("tests/conftest.py"), "return 1", "return 2")
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/test_fixtures.py::test_offset",
            "FAILED tests/sub/test_sub.py::test_offset_in_sub",
        ),
    )


@scenario
def new_conftest(c: Checker) -> None:
    save(
        c.path("tests/sub/conftest.py"),
        "import pytest\n\n\n@pytest.fixture\ndef offset():\n    return 5\n",
    )
    c.check(
        "tests",
        ordinary=True,
        expect=(
            "FAILED tests/sub/test_sub.py::test_offset_in_sub",
            "PASSED tests/test_fixtures.py::test_offset",
        ),
    )


@scenario
def conftest_syntax_error_then_fixed(c: Checker) -> None:
    path = c.path("tests/conftest.py")
    good = path.read_text()
    save(path, good + "def broken(:\n")
    # pytest cannot even configure itself here: the daemon may hand the run
    # back to a cold run, but the outcome must be the same.
    c.check("tests", allow_cold=True)
    save(path, good)
    c.check("tests", expect=("PASSED tests/test_fixtures.py::test_offset",))


@scenario
def addopts_changed_in_pyproject(c: Checker) -> None:
    edit(c.path("pyproject.toml"), 'addopts = ""', "addopts = \"-k 'not greet'\"")
    c.check(
        "tests",
        absent=("PASSED tests/test_core.py::test_greet",),
        expect=("PASSED tests/test_core.py::test_compute",),
    )


@scenario
def pytest_ini_added_with_addopts(c: Checker) -> None:
    # pytest.ini wins over pyproject.toml in the same directory.
    save(
        c.path("pytest.ini"),
        "[pytest]\ntestpaths = tests\npythonpath = .\naddopts = -k 'not compute'\n"
        "asyncio_default_fixture_loop_scope = function\n",
    )
    c.check(
        "tests",
        absent=("PASSED tests/test_core.py::test_compute",),
        expect=("PASSED tests/test_core.py::test_greet",),
    )
    edit(c.path("pytest.ini"), "addopts = -k 'not compute'", "addopts = -k 'not greet'")
    c.check(
        "tests",
        absent=("PASSED tests/test_core.py::test_greet",),
        expect=("PASSED tests/test_core.py::test_compute",),
    )


@scenario
def fixture_module_imported_by_conftest_changed(c: Checker) -> None:
    edit(c.path("app/fixtures.py"), "return 3", "return 4")
    # The root conftest imports it and is plain: reloaded in place.
    c.check("tests", ordinary=True, expect=("FAILED tests/test_fixtures.py::test_factor",))


FLAG_TEST = "import os\n\nFLAG = os.environ.get('STALE_FLAG')\n\n\ndef test_flag():\n    assert FLAG == 'on'\n"


@scenario
def conftest_gains_then_loses_an_import_effect(c: Checker) -> None:
    # The effect of the old version stays in the warm process after a purge,
    # so both edits must replace it, and every run must equal a cold one.
    save(c.path("tests/test_flag.py"), FLAG_TEST)
    c.check("tests", expect=("FAILED tests/test_flag.py::test_flag",))
    conftest = c.path("conftest.py")
    plain = conftest.read_text()
    save(
        conftest,
        plain.replace(
            "import pytest\n", "import os\n\nimport pytest\n\nos.environ['STALE_FLAG'] = 'on'\n", 1
        ),
    )
    c.check("tests", expect=("PASSED tests/test_flag.py::test_flag",))
    save(conftest, plain)
    c.check("tests", expect=("FAILED tests/test_flag.py::test_flag",))


@scenario
def conftest_early_hook_added(c: Checker) -> None:
    # pytest_configure runs before test modules are imported: the warm test
    # modules were imported without it.
    save(c.path("tests/test_flag.py"), FLAG_TEST)
    c.check("tests", expect=("FAILED tests/test_flag.py::test_flag",))
    conftest = c.path("tests/conftest.py")
    save(
        conftest,
        conftest.read_text()
        + "\n\ndef pytest_configure(config):\n    import os\n\n    os.environ['STALE_FLAG'] = 'on'\n",
    )
    c.check("tests", expect=("PASSED tests/test_flag.py::test_flag",))


@scenario
def pytest_plugins_module_changed(c: Checker) -> None:
    # Named by a string in the root conftest's pytest_plugins: no import edge.
    edit(c.path("app/plugin_fixtures.py"), 'return "plugin"', 'return "plugins"')
    c.check("tests", expect=("FAILED tests/test_fixtures.py::test_plugin_value",))
    edit(c.path("app/plugin_fixtures.py"), 'return "plugins"', 'return "plugin"')
    c.check("tests", expect=("PASSED tests/test_fixtures.py::test_plugin_value",))


# -- broken code -------------------------------------------------------------------


@scenario
def syntax_error_then_fixed_in_project_module(c: Checker) -> None:
    path = c.path("app/core.py")
    good = path.read_text()
    save(path, good.replace("def compute(x):", "def compute(x)"))
    c.check("tests", ordinary=True, expect=("ERROR tests/test_core.py",))
    save(path, good)
    c.check("tests", ordinary=True, expect=("PASSED tests/test_core.py::test_compute",))


@scenario
def syntax_error_then_fixed_in_test_module(c: Checker) -> None:
    path = c.path("tests/test_models.py")
    good = path.read_text()
    save(path, good + "\ndef test_broken(:\n")
    c.check("tests", ordinary=True, expect=("ERROR tests/test_models.py",))
    save(path, good)
    c.check("tests", ordinary=True, expect=("PASSED tests/test_models.py::test_colors",))


@scenario
def import_error_then_fixed(c: Checker) -> None:
    path = c.path("app/derived.py")
    good = path.read_text()
    save(path, "import does_not_exist_anywhere\n" + good)
    # A re-import that raised may have left half-done side effects behind:
    # by the reload rule this one replaces the warm process.
    c.check("tests", expect=("ERROR tests/test_core.py",))
    save(path, good)
    c.check("tests", ordinary=True, expect=("PASSED tests/test_core.py::test_scaled",))


# -- modules and packages appearing and moving -------------------------------------


@scenario
def module_moved(c: Checker) -> None:
    os.rename(c.path("app/helpers.py"), c.path("app/tools.py"))
    c.check("tests", expect=("ERROR tests/test_helpers.py",))
    edit(c.path("tests/test_helpers.py"), "from app.helpers import", "from app.tools import")
    c.check("tests", expect=("PASSED tests/test_helpers.py::test_helper",))


@scenario
def package_directory_renamed(c: Checker) -> None:
    os.rename(c.path("app/ns"), c.path("app/ns2"))
    c.check("tests", expect=("ERROR tests/test_ns.py",))
    os.rename(c.path("app/ns2"), c.path("app/ns"))
    c.check("tests", expect=("PASSED tests/test_ns.py::test_value",))


@scenario
def init_py_added(c: Checker) -> None:
    save(c.path("app/ns/__init__.py"), "FLAG = True\n")
    c.check(
        "tests",
        expect=(
            "FAILED tests/test_ns.py::test_namespace_package",
            "PASSED tests/test_ns.py::test_value",
        ),
    )


@scenario
def package_init_edited_above_a_namespace_package(c: Checker) -> None:
    # app/ns has no __init__.py: re-importing app must not leave the old app.ns
    # namespace package in sys.modules, unbound from the new app.
    save(c.path("app/__init__.py"), '"""Edited."""\nEDITED = True\n')
    c.check(
        "tests",
        expect=(
            "PASSED tests/test_ns.py::test_namespace_package",
            "PASSED tests/test_ns.py::test_value",
        ),
    )


# -- environment -------------------------------------------------------------------


@scenario
def env_var_read_at_import_changed(c: Checker) -> None:
    # A warm process that imported app.settings with another value must not
    # serve this run as is; it may be replaced, and the run stays warm.
    c.check(
        "tests", env={"STALE_MODE": "other"}, expect=("FAILED tests/test_settings.py::test_mode",)
    )
    c.check("tests", expect=("PASSED tests/test_settings.py::test_mode",))


@scenario
def env_var_set_empty_vs_unset(c: Checker) -> None:
    # os.environ.get("STALE_MODE", "default") tells an empty value from none.
    c.check("tests", env={"STALE_MODE": ""}, expect=("FAILED tests/test_settings.py::test_mode",))
    c.check("tests", expect=("PASSED tests/test_settings.py::test_mode",))


@scenario
def state_does_not_leak_between_runs(c: Checker) -> None:
    save(
        c.path("tests/test_leak.py"),
        "import os\n\nfrom app.registry import REGISTRY\n\n\n"
        "def test_leak():\n"
        '    assert "Leaked" not in REGISTRY and "STALE_LEAK" not in os.environ\n'
        '    REGISTRY["Leaked"] = object\n'
        '    os.environ["STALE_LEAK"] = "1"\n',
    )
    for _ in range(3):
        c.check("tests", ordinary=True, expect=("PASSED tests/test_leak.py::test_leak",))


@scenario
def run_of_one_file_sees_only_its_own_imports(c: Checker) -> None:
    # Cold, running this file alone never imports app.plugins, so nothing
    # registers into app.registry. The layer imported every test module under
    # tests/ (test_registry.py imports app.plugins, a registrant): this run
    # must come from the base process, which imports only what it needs.
    save(
        c.path("tests/test_alone.py"),
        "from app.registry import REGISTRY\n\n\n"
        "def test_registry_when_run_alone():\n"
        "    assert sorted(REGISTRY) == []\n",
    )
    c.check(
        "tests/test_alone.py",
        ordinary=True,
        expect=("PASSED tests/test_alone.py::",),
    )
    # A run that does import the registrant is served by the layer.
    c.check("tests/test_registry.py", ordinary=True, expect=("PASSED tests/test_registry.py::",))


@scenario
def run_of_one_file_with_init_subclass_and_metaclass_registries(c: Checker) -> None:
    # The shapes of SQLAlchemy's declarative Base.metadata (a metaclass that
    # records every model) and of __init_subclass__ plugin registries.
    save(
        c.path("app/base.py"),
        "class Meta(type):\n"
        "    tables = {}\n\n"
        "    def __init__(cls, name, bases, ns):\n"
        "        super().__init__(name, bases, ns)\n"
        "        if bases:\n"
        "            Meta.tables[name] = cls\n\n\n"
        "class Model(metaclass=Meta):\n    pass\n\n\n"
        "class Hook:\n"
        "    known = []\n\n"
        "    def __init_subclass__(cls, **kw):\n"
        "        super().__init_subclass__(**kw)\n"
        "        Hook.known.append(cls.__name__)\n",
    )
    save(
        c.path("app/orders.py"),
        "from app.base import Hook, Model\n\n\nclass Order(Model):\n    pass\n\n\nclass Audit(Hook):\n    pass\n",
    )
    save(
        c.path("tests/test_orders.py"),
        "import app.orders\n\n\ndef test_order():\n    assert app.orders.Order\n",
    )
    save(
        c.path("tests/test_tables.py"),
        "from app.base import Hook, Meta\n\n\n"
        "def test_tables_alone():\n    assert sorted(Meta.tables) == []\n\n\n"
        "def test_hooks_alone():\n    assert Hook.known == []\n",
    )
    # The daemon warmed up before these files existed: a full run imports them.
    c.check("tests", expect=("FAILED tests/test_tables.py::test_tables_alone",))
    c.check(
        "tests/test_tables.py",
        ordinary=True,
        expect=(
            "PASSED tests/test_tables.py::test_tables_alone",
            "PASSED tests/test_tables.py::test_hooks_alone",
        ),
    )


# -- timing ------------------------------------------------------------------------


@scenario
def same_size_rewrite_same_mtime(c: Checker) -> None:
    # CPython trusts a pyc whose (whole-second mtime, size) match; here even
    # the nanoseconds match, and the inode too (an in-place write).
    edit(c.path("app/core.py"), "SCALE = 2", "SCALE = 3", keep_mtime=True)
    c.check("tests", ordinary=True, expect=("FAILED tests/test_core.py::test_scale_constant",))
    edit(c.path("tests/test_core.py"), "compute(3) == 6", "compute(3) == 9", keep_mtime=True)
    c.check("tests", ordinary=True, expect=("PASSED tests/test_core.py::test_compute",))


@scenario
def same_size_same_mtime_rewrite_during_a_replacement(c: Checker) -> None:
    # A deletion replaces the warm process; a save that kept size and mtime
    # arrives with it. The new process must not load the old pyc (the warm-up
    # wrote one), and a later save of identical content must not hide that.
    assert c.path("app/__pycache__").is_dir()
    c.path("tests/test_models.py").unlink()
    edit(c.path("app/core.py"), '"hello "', '"hallo "', style=Style.BACKUP, keep_mtime=True)
    c.check("tests/test_ns.py")
    save(c.path("app/core.py"), c.path("app/core.py").read_text())
    c.check("tests", expect=("FAILED tests/test_core.py::test_greet",))


@scenario
def same_size_import_swap_same_mtime(c: Checker) -> None:
    # The import graph must not trust (mtime, size) either: a test module
    # whose import changed without either changing still depends on the new module.
    edit(c.path("app/core.py"), '"hello "', '"hallo "')
    c.check("tests", ordinary=True, expect=("FAILED tests/test_core.py::test_greet",))
    edit(
        c.path("tests/test_swap.py"),
        "from app.alpha import",
        "from app.bravo import",
        keep_mtime=True,
    )
    c.check("tests", ordinary=True, expect=("FAILED tests/test_swap.py::test_name",))
    # The purged test module is imported into the warm process again when idle.
    c.bench.wait_for_log("Re-warmed", after="(changed: tests/test_swap.py)")
    edit(c.path("app/bravo.py"), 'NAME = "bravo"', 'NAME = "alpha"')
    c.check("tests", ordinary=True, expect=("PASSED tests/test_swap.py::test_name",))


@scenario
def edit_saved_during_a_reload(c: Checker) -> None:
    # A formatter rewriting the file just after the editor saved it: the
    # second save lands while the daemon re-imports the first.
    c.path("app/slow.flag").touch()
    edit(c.path("app/slow.py"), "VALUE = 1", "VALUE = 2")
    importing = c.path("app/slow.importing")
    deadline = time.monotonic() + 30
    while not importing.exists():
        assert time.monotonic() < deadline, (
            "the daemon never re-imported app/slow.py\n" + c.bench.log_tail()
        )
        time.sleep(0.01)
    edit(c.path("app/slow.py"), "VALUE = 2", "VALUE = 3")
    c.check(
        "tests/test_slow.py",
        ordinary=True,
        expect=("FAILED tests/test_slow.py::test_slow_value - assert 3 == 1",),
    )


@scenario
def runs_right_after_saves(c: Checker) -> None:
    path = c.path("app/core.py")
    text = path.read_text()
    # The thin client reaches the daemon within milliseconds of the save,
    # before the file watcher may have reported it.
    bodies = ["x * SCALE + 1", "x * 3", "x + 1 - 1 + x", "x * SCALE", "x * SCALE + 2", "x * SCALE"]
    for n, body in enumerate(bodies):
        save(path, text.replace("x * SCALE", body, 1), Style.ATOMIC if n % 2 else Style.INPLACE)
        outcome = "PASSED" if body in ("x * SCALE", "x + 1 - 1 + x") else "FAILED"
        c.check(
            "tests/test_core.py",
            ordinary=True,
            thin=True,
            expect=(f"{outcome} tests/test_core.py::test_compute",),
        )


@scenario
def keyword_run_then_full_run(c: Checker) -> None:
    edit(c.path("app/core.py"), '"hello "', '"hallo "')
    c.check(
        "tests", "-k", "compute", ordinary=True, absent=("FAILED tests/test_core.py::test_greet",)
    )
    c.check("tests", ordinary=True, expect=("FAILED tests/test_core.py::test_greet",))
    c.check(
        "tests", "-k", "not greet", ordinary=True, absent=("FAILED tests/test_core.py::test_greet",)
    )


@scenario
def edit_saved_during_a_run(c: Checker) -> None:
    barrier = c.path("").parent / "barrier"
    barrier.mkdir()
    env = {**c.bench.project.env, "STALE_BARRIER": str(barrier)}
    from helpers import command_pytest

    run = subprocess.Popen(
        [*command_pytest(), "-q", "tests"],
        cwd=c.bench.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (barrier / "entered").exists():
            assert run.poll() is None, f"the run ended before the barrier: {run.communicate()}"
            assert time.monotonic() < deadline, "the run never reached the barrier"
            time.sleep(0.01)
        edit(c.path("app/core.py"), "return x * SCALE", "return x * SCALE + 1")
        (barrier / "go").touch()
        _out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert "running without" not in err, err
    c.check("tests", ordinary=True, expect=("FAILED tests/test_core.py::test_compute",))


# -- editor save styles ------------------------------------------------------------


def _save_style(style: Style) -> Callable[[Checker], None]:
    def run(c: Checker) -> None:
        edit(c.path("app/core.py"), "return x * SCALE", "return x * SCALE + 1", style)
        c.check("tests", ordinary=True, expect=("FAILED tests/test_core.py::test_compute",))
        edit(c.path("tests/test_core.py"), "compute(3) == 6", "compute(3) == 7", style)
        c.check("tests", ordinary=True, expect=("PASSED tests/test_core.py::test_compute",))
        edit(c.path("app/core.py"), "return x * SCALE + 1", "return x * SCALE", style)
        c.check("tests", ordinary=True, expect=("FAILED tests/test_core.py::test_compute",))
        for name in os.listdir(c.path("app")):
            assert not name.endswith(("~", "___jb_tmp___", "___jb_old___")), name

    run.__name__ = f"save_style_{style.value}"
    return run


for _style in Style:
    scenario(_save_style(_style))


# Differences we know of and have not fixed: strict xfail, so a fix shows up
# as an unexpected pass and the entry must then be removed.
KNOWN_DIFFERENCES: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[name])]
            if name in KNOWN_DIFFERENCES
            else [],
        )
        for name in SCENARIOS
    ],
)
def test_scenario(checker: Checker, name: str) -> None:
    SCENARIOS[name](checker)


# Registrations a one-file run must not see: files the layer warms up with
# (tests/test_a.py imports the registrant), the file run alone (tests/test_z.py,
# which imports app.plugins, the project's other registrant, so that only the
# case's own module can keep it from the layer), and what the notice names.
ALONE_CASES = {
    # Plugin discovery by Base.__subclasses__(): the list holds its
    # subclasses weakly, so no container does.
    "subclasses": (
        {
            "app/shapes.py": "class Shape:\n    pass\n\n\n"
            "def kinds():\n    return sorted(k.__name__ for k in Shape.__subclasses__())\n",
            "app/square.py": "from app.shapes import Shape\n\n\nclass Square(Shape):\n    pass\n",
            "tests/test_a.py": "import app.square\n\n\ndef test_a():\n    pass\n",
            "tests/test_z.py": "import app.plugins\nfrom app.shapes import kinds\n\n\n"
            "def test_alone():\n    assert kinds() == []\n",
        },
        ("app/square.py", "Square is listed in Shape.__subclasses__() of module app.shapes"),
    ),
    # The same, the base in a package and the subclass in its submodule: importing
    # the submodule binds it in the package, which does not import it.
    "subclasses in a package": (
        {
            "app/kinds/__init__.py": "class Shape:\n    pass\n\n\n"
            "def kinds():\n    return sorted(k.__name__ for k in Shape.__subclasses__())\n",
            "app/kinds/square.py": "from app.kinds import Shape\n\n\nclass Square(Shape):\n    pass\n",
            "tests/test_a.py": "import app.kinds.square\n\n\ndef test_a():\n    pass\n",
            "tests/test_z.py": "import app.plugins\nfrom app.kinds import kinds\n\n\n"
            "def test_alone():\n    assert kinds() == []\n",
        },
        ("app/kinds/square.py", "Square is listed in Shape.__subclasses__() of module app.kinds"),
    ),
    # An instance of the module's own class put into another module's list.
    "instance": (
        {
            "app/handlers.py": "HANDLERS = []\n",
            "app/json_handler.py": "from app.handlers import HANDLERS\n\n\n"
            "class JsonHandler:\n    pass\n\n\nHANDLERS.append(JsonHandler())\n",
            "tests/test_a.py": "import app.json_handler\n\n\ndef test_a():\n    pass\n",
            "tests/test_z.py": "import app.plugins\nfrom app.handlers import HANDLERS\n\n\n"
            "def test_alone():\n    assert [type(h).__name__ for h in HANDLERS] == []\n",
        },
        ("app/json_handler.py", "a JsonHandler instance is held by a list of module app.handlers"),
    ),
    # The same, made by a third module: the run imports the class's module.
    "instance made elsewhere": (
        {
            "app/handlers.py": "HANDLERS = []\n",
            "app/kinds.py": "class Kind:\n    pass\n",
            "app/setup_kinds.py": "from app.handlers import HANDLERS\nfrom app.kinds import Kind\n\n"
            "HANDLERS.append(Kind())\n",
            "tests/test_a.py": "import app.setup_kinds\n\n\ndef test_a():\n    pass\n",
            "tests/test_z.py": "import app.kinds\nimport app.plugins\n"
            "from app.handlers import HANDLERS\n\n\n"
            "def test_alone():\n    assert [type(h).__name__ for h in HANDLERS] == []\n",
        },
        (
            "app/setup_kinds.py",
            "it imports app.kinds; a Kind instance is held by a list of module app.handlers",
        ),
    ),
}


@contextlib.contextmanager
def _seeded(
    tmp_path: Path, files: dict[str, str], *start_args: str
) -> Iterator[tuple[StaleBench, Checker]]:
    """A copy of the project with ``files`` added before its daemon starts (the layer
    warms up with them), handed over once the layer's first registrant scan answered
    (the project always has one registrant, app/plugins.py): the layer serves runs."""
    bench = StaleBench(tmp_path / "proj")
    for rel, text in files.items():
        save(bench.path(rel), text)
    try:
        result = bench.project.start(*start_args, "tests")
        assert result.returncode == 0, result
        bench.wait_for_log("Registrant modules")
        yield bench, Checker(bench)
    finally:
        bench.cleanup()


@pytest.mark.parametrize("case", ALONE_CASES)
def test_run_of_one_file_does_not_see_what_other_files_registered(
    tmp_path: Path, case: str
) -> None:
    files, (held, why) = ALONE_CASES[case]
    # The layer warms up with tests/test_a.py: it holds the registrant.
    with _seeded(tmp_path, files) as (bench, c):
        c.check("tests/test_z.py", ordinary=True, expect=("PASSED tests/test_z.py::test_alone",))
        warm = bench.warm(["tests/test_z.py"])
        assert (
            f"this run does not import {held}, which the warm process holds ({why})" in warm.stderr
        )
        c.check("tests", expect=("FAILED tests/test_z.py::test_alone",))


def test_sys_path_of_a_run_holds_only_what_its_own_files_put_there(tmp_path: Path) -> None:
    # The layer's warm-up imported tests/sub/test_sub.py (no __init__.py), so
    # pytest put tests/sub on sys.path; a cold run of tests/ alone never does.
    # tests/tools.py is imported by name ("import tools"): a reload must still find it.
    files = {
        "tests/tools.py": "VALUE = 1\n",
        "tests/test_tools.py": "import os\nimport sys\n\nimport app.plugins\nimport tools\n\n\n"
        "def test_tools():\n    assert tools.VALUE == 1\n\n\n"
        "def test_no_other_test_directory():\n"
        "    assert [p for p in sys.path if p.endswith(os.sep + 'sub')] == []\n",
    }
    with _seeded(tmp_path, files) as (bench, c):
        # test_no_other_test_directory passes alone and fails in a full run, on
        # purpose: watch mode's check that a selection behaves as in the full run
        # does not apply.
        c.selection = None
        expect = ("PASSED tests/test_tools.py::test_no_other_test_directory",)
        c.check("tests/test_tools.py", ordinary=True, expect=expect)
        edit(bench.path("tests/tools.py"), "VALUE = 1", "VALUE = 2")
        c.check(
            "tests/test_tools.py",
            ordinary=True,
            expect=("FAILED tests/test_tools.py::test_tools", *expect),
        )
        c.check("tests", expect=("PASSED tests/sub/test_sub.py::",))


def test_sys_path_in_importlib_mode_keeps_what_a_conftest_put_there(tmp_path: Path) -> None:
    # pytest puts nothing on sys.path in importlib mode: a conftest that puts
    # its own directory there did it itself, and a cold run has it.
    files = {
        "tests/deep/conftest.py": "import os\nimport sys\n\n"
        "sys.path.insert(0, os.path.dirname(__file__))\n",
        "tests/deep/test_deep.py": "import os\nimport sys\n\nimport app.plugins\n\n\n"
        "def test_own_directory():\n    assert os.path.dirname(__file__) in sys.path\n",
    }
    with _seeded(tmp_path, files, "--import-mode=importlib") as (_bench, c):
        c.selection = None  # the run's options differ from watch mode's
        c.check(
            "--import-mode=importlib",
            "tests/deep/test_deep.py",
            ordinary=True,
            expect=("PASSED tests/deep/test_deep.py::test_own_directory",),
        )


# The same edits with ``-n 2``: xdist's workers are forked from the warm
# process, so they must see every reload exactly as a serial run does.
PARALLEL_SCENARIOS = (
    "function_body",
    "constant_bound_by_from_import",
    "enum_member_added",
    "added_test",
    "deleted_test_file",
    "package_conftest_fixture_changed",
    "syntax_error_then_fixed_in_project_module",
    "env_var_read_at_import_changed",
    "run_of_one_file_sees_only_its_own_imports",
)


@pytest.mark.parametrize("name", PARALLEL_SCENARIOS)
def test_scenario_parallel(parallel_checker: Checker, name: str) -> None:
    SCENARIOS[name](parallel_checker)
