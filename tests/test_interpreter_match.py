"""One daemon serves ``pytest`` and ``python -m pytest`` wherever that is exact (issue 11.2).

What must match for a warm run to be exact: the interpreter (resolved: a
virtualenv's ``python`` and ``python3`` are one), and ``sys.path`` as pytest
has it when the first conftest is imported (the ini ``pythonpath`` first).
An entry that holds nothing importable cannot change what an import
resolves to and does not refuse a run; any other difference does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_fastcollect import fingerprint
from pytest_fastcollect.wire import warm as wm

from helpers import Project, Result, daemon_status

NOTICE = "pytest-fastcollect:"


def key(
    sys_path: list[str], ini: list[str] | None = None, python: str = "/x/bin/python"
) -> wm.WarmKey:
    return wm.WarmKey(
        python=python, sys_path=sys_path, options={}, env={}, ini_pythonpath=ini or []
    )


def _dirs(tmp_path: Path) -> dict[str, str]:
    """``bin``: scripts only; ``proj``: a package; ``empty``: nothing; ``stdlib``: a module."""
    made = {}
    for name in ("bin", "proj", "empty", "stdlib", "tests"):
        (tmp_path / name).mkdir()
        made[name] = str(tmp_path / name)
    (tmp_path / "bin" / "pytest").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "activate").write_text("")
    (tmp_path / "bin" / "__pycache__").mkdir()
    (tmp_path / "proj" / "shop").mkdir()
    (tmp_path / "stdlib" / "os.py").write_text("")
    (tmp_path / "tests" / "test_x.py").write_text("")
    return made


def test_entries_that_hold_nothing_importable_do_not_matter(tmp_path: Path) -> None:
    d = _dirs(tmp_path)
    missing = str(tmp_path / "missing.zip")
    warm = key([d["bin"], missing, d["stdlib"]], ini=[d["proj"]])
    # python -m pytest in the rootdir: the rootdir first, which the ini puts first anyway.
    assert (
        fingerprint.interpreter_differences(warm, "/x/bin/python", [d["proj"], d["stdlib"]]) == []
    )
    assert (
        fingerprint.interpreter_differences(warm, "/x/bin/python", [d["empty"], d["stdlib"]]) == []
    )
    assert (
        fingerprint.interpreter_differences(warm, "/x/bin/python", [d["bin"], missing, d["stdlib"]])
        == []
    )


def test_entries_that_can_change_an_import_refuse(tmp_path: Path) -> None:
    d = _dirs(tmp_path)
    warm = key([d["bin"], d["stdlib"]], ini=[d["proj"]])
    extra = fingerprint.interpreter_differences(warm, "/x/bin/python", [d["tests"], d["stdlib"]])
    assert extra and extra[0].startswith(
        f"this run's sys.path has {d['tests']}, the daemon's does not"
    )
    fewer = fingerprint.interpreter_differences(
        key([d["tests"], d["stdlib"]]), "/x/bin/python", [d["stdlib"]]
    )
    assert fewer and fewer[0].startswith(
        f"the daemon's sys.path has {d['tests']}, this run's does not"
    )
    swapped = fingerprint.interpreter_differences(
        key([d["tests"], d["stdlib"]]), "/x/bin/python", [d["stdlib"], d["tests"]]
    )
    assert swapped and "another order" in swapped[0]
    # Without the ini pythonpath, the rootdir holds a package the daemon's path lacks.
    no_ini = fingerprint.interpreter_differences(
        key([d["bin"], d["stdlib"]]), "/x/bin/python", [d["proj"], d["stdlib"]]
    )
    assert no_ini and d["proj"] in no_ini[0]


def test_relative_entries_are_taken_from_the_run_directory(tmp_path: Path) -> None:
    d = _dirs(tmp_path)
    warm = key([d["tests"], d["stdlib"]])
    assert (
        fingerprint.interpreter_differences(
            warm, "/x/bin/python", ["tests", d["stdlib"]], str(tmp_path)
        )
        == []
    )


def test_interpreters_compare_resolved(tmp_path: Path) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python3").symlink_to(sys.executable)
    (venv_bin / "python").symlink_to("python3")
    other_bin = tmp_path / "other" / "bin"
    other_bin.mkdir(parents=True)
    (other_bin / "python").symlink_to(sys.executable)
    assert fingerprint.same_interpreter(str(venv_bin / "python"), str(venv_bin / "python3"))
    # The same executable reached from another directory is another environment.
    assert not fingerprint.same_interpreter(str(venv_bin / "python"), str(other_bin / "python"))
    warm = key([], python=str(venv_bin / "python"))
    assert fingerprint.interpreter_differences(warm, str(venv_bin / "python3"), []) == []
    refused = fingerprint.interpreter_differences(warm, str(other_bin / "python"), [])
    assert refused == [f"this run uses {other_bin / 'python'}, the daemon {venv_bin / 'python'}"]


def test_provides_modules() -> None:
    assert fingerprint.provides_modules(os.path.dirname(os.__file__))
    assert not fingerprint.provides_modules("/nonexistent/entry")


# --- with real daemons on examples/basic (its pytest.ini sets pythonpath = .) ---------------


PYTHON = Path(sys.executable)
PYTHON3 = PYTHON.with_name("python3")


def _python_m(proj: Project, python: Path, *args: str, cwd: Path | None = None) -> Result:
    return proj.command([str(python), "-m", "pytest", *args], cwd=cwd)


def _served(proj: Project, run: Callable[[], Result]) -> Result:
    before = daemon_status(proj)["metrics"]
    result = run()
    after = daemon_status(proj)["metrics"]
    assert result.returncode == 0 and "17 passed" in result.stdout, str(result)
    assert NOTICE not in result.stderr, str(result)
    assert after["runs"] == before["runs"] + 1, str(result)  # type: ignore[index]
    return result


def _both_forms_served(proj: Project) -> None:
    _served(proj, lambda: _python_m(proj, PYTHON, "-q", "tests/test_money.py"))
    if PYTHON3.exists():
        _served(proj, lambda: _python_m(proj, PYTHON3, "-q", "tests/test_money.py"))
    _served(proj, lambda: proj.pytest("-q", "tests/test_money.py"))
    # From tests/, python -m pytest puts tests/ first on sys.path, and test
    # modules there are importable by name: not exact, so cold, and counted.
    before = daemon_status(proj)["metrics"]
    cold = _python_m(proj, PYTHON, "-q", "test_money.py", cwd=proj.root / "tests")
    assert cold.returncode == 0 and "17 passed" in cold.stdout, str(cold)
    assert (
        f"{NOTICE} this run's sys.path has {proj.root / 'tests'}, the daemon's does not"
        in cold.stderr
    ), str(cold)
    after = daemon_status(proj)["metrics"]
    assert after["runs_refused"] == before["runs_refused"] + 1  # type: ignore[index]
    assert after["runs"] == before["runs"]  # type: ignore[index]


def test_daemon_started_with_python_m_pytest_serves_both_forms(
    example: Callable[[str], Project],
) -> None:
    proj = example("basic")
    started = _python_m(proj, PYTHON, "--daemon-start", "tests")
    assert started.returncode == 0, str(started)
    _both_forms_served(proj)


def test_daemon_started_with_the_pytest_script_serves_both_forms(
    example: Callable[[str], Project],
) -> None:
    proj = example("basic")
    started = proj.start("tests")
    assert started.returncode == 0, str(started)
    _both_forms_served(proj)


def test_pythonpath_with_modules_refuses(example: Callable[[str], Project]) -> None:
    proj = example("basic")
    assert proj.start("tests").returncode == 0
    extra = proj.root / "extra"
    extra.mkdir()
    (extra / "helper_mod.py").write_text("")
    result = proj.pytest("-q", "tests/test_money.py", env={"PYTHONPATH": str(extra)})
    assert result.returncode == 0, str(result)
    assert f"{NOTICE} this run's sys.path has {extra}, the daemon's does not" in result.stderr
    # An entry with nothing to import in it changes nothing: served.
    empty = proj.root / "empty"
    empty.mkdir()
    _served(proj, lambda: proj.pytest("-q", "tests/test_money.py", env={"PYTHONPATH": str(empty)}))


def test_interpreter_sys_path_leaves_out_pytests_ini_copies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """pytest 9 puts the ini pythonpath in front before plugins load; pytest 8 later."""
    root, bin_dir = str(tmp_path / "root"), str(tmp_path / "bin")
    monkeypatch.setattr(sys, "path", [root, root, bin_dir])  # python -m pytest in the rootdir
    monkeypatch.setattr(fingerprint, "_pythonpath_inserted_early", lambda: True)
    assert fingerprint.interpreter_sys_path([root]) == [root, bin_dir]
    monkeypatch.setattr(fingerprint, "_pythonpath_inserted_early", lambda: False)
    assert fingerprint.interpreter_sys_path([root]) == [root, root, bin_dir]
    assert fingerprint.interpreter_sys_path([]) == [root, root, bin_dir]
