"""A saved test module's rewritten pyc, written ahead for the next run (warm/pyc_writer.py).

``write_pycs`` is tried on a real config, in a subprocess as the writer has it
(after pytest's argument parsing, before any conftest): it writes what pytest's
own import writes, and nothing where the run would write nothing or would show
a warning while rewriting. Through a daemon: after a save to a test module,
the pyc is current before any run and before the idle re-warm, and the next
run prints what cold pytest prints.
"""

from __future__ import annotations

import json
import marshal
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.assertion import rewrite as rw

from helpers import DEFAULT_INI, Project, make_project, serving, wait_until

TEST_SOURCE = """
def test_value():
    x = 1
    assert x == 1

def test_fails():
    x = 1
    assert x == 2
"""


def _pyc(path: Path) -> Path:
    return rw.get_cache_dir(path) / (path.name[:-3] + rw.PYC_TAIL)


def _current(path: Path) -> bool:
    return rw._read_pyc(path, _pyc(path)) is not None


def _write_pycs(root: Path, files: list[str], *args: str, bytecode: bool = True) -> list[str]:
    """``write_pycs`` on the config of ``pytest ARGS`` after its argument parsing."""
    code = (
        "import json, sys\n"
        "from _pytest.config import _prepareconfig\n"
        "from pytest_fastcollect.warm.pyc_writer import write_pycs\n"
        "config = _prepareconfig(sys.argv[2:])\n"
        "files = [(f.rsplit('/', 1)[-1][:-3], f) for f in json.loads(sys.argv[1])]\n"
        "print(json.dumps(write_pycs(config, files)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTEST_ADDOPTS"] = "-p no:randomly -p no:fastcollect"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(files), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    written = json.loads(out.splitlines()[-1])
    assert isinstance(written, list)
    return written


def _project(root: Path, files: dict[str, str]) -> None:
    for name, text in {"pytest.ini": "[pytest]\n", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _cold_pyc(root: Path, test: Path) -> bytes:
    """The pyc pytest writes itself when it imports ``test``."""
    _pyc(test).unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:fastcollect"]
    subprocess.run([*cmd, str(test)], cwd=root, env=env, capture_output=True, check=False)
    return _pyc(test).read_bytes()


def test_it_writes_the_pyc_pytest_writes(tmp_path: Path) -> None:
    _project(tmp_path, {"tests/test_a.py": TEST_SOURCE, "tests/conftest.py": "X = 1\n"})
    test, conftest = tmp_path / "tests/test_a.py", tmp_path / "tests/conftest.py"
    # (--noconftest: this config is made past the point where the writer pauses, and
    # would have imported, and so written, the conftest itself.)
    written = _write_pycs(tmp_path, [str(test), str(conftest)], "--noconftest", "tests")
    assert written == [str(test), str(conftest)]
    ours = _pyc(test).read_bytes()
    assert _current(test) and _current(conftest)
    theirs = _cold_pyc(tmp_path, test)
    # The header (magic, flags, source key) byte for byte; the code as marshal reads it
    # (marshal's reference flags depend on reference counts, not on the code).
    assert ours[:16] == theirs[:16]
    assert marshal.loads(ours[16:]) == marshal.loads(theirs[16:])
    # Current already: nothing to write.
    assert _write_pycs(tmp_path, [str(test)], "tests") == []


@pytest.mark.parametrize(
    ("args", "bytecode", "files", "why"),
    [
        (["--assert=plain", "tests"], True, {}, "assertions are not rewritten"),
        (["tests"], False, {}, "bytecode writing is off"),
        (
            ["tests"],
            True,
            {"pytest.ini": "[pytest]\npython_files = check_*.py\n"},
            "not a test file",
        ),
        (["tests"], True, {"tests/test_a.py": "def test():\n    assert (1, 'msg')\n"}, "it warns"),
        (["tests"], True, {"tests/test_a.py": "def test(:\n"}, "it does not compile"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_it_writes_nothing_where_the_run_would_not_or_would_warn(
    tmp_path: Path, args: list[str], bytecode: bool, files: dict[str, str], why: str
) -> None:
    _project(tmp_path, {"tests/test_a.py": TEST_SOURCE, **files})
    test = tmp_path / "tests/test_a.py"
    assert _write_pycs(tmp_path, [str(test)], *args, bytecode=bytecode) == [], why
    assert not _pyc(test).exists(), why


# -- through a daemon ------------------------------------------------------------------------


@pytest.fixture
def bytecode_daemon(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj")
    proj.env.pop("PYTHONDONTWRITEBYTECODE", None)  # the users' default: bytecode cached
    proj.write(
        {
            "pytest.ini": DEFAULT_INI + "daemon_log_level = DEBUG\n",
            "tests/test_values.py": TEST_SOURCE,
        }
    )
    with serving(proj, "tests"):
        yield proj


def _timeless(text: str) -> str:
    return re.sub(r" in \d+\.\d+s", " in Ns", text)


def _calls_the_pass_hook(pyc: Path) -> bool:
    """Whether pytest rewrote this code with ``enable_assertion_pass_hook`` on."""
    todo = [marshal.loads(pyc.read_bytes()[16:])]
    while todo:
        code = todo.pop()
        if "_call_assertion_pass" in code.co_names:
            return True
        todo += [c for c in code.co_consts if isinstance(c, type(code))]
    return False


def test_a_saved_test_module_has_its_pyc_before_the_next_run(bytecode_daemon: Project) -> None:
    proj = bytecode_daemon
    test = proj.root / "tests" / "test_values.py"
    # The command's own ini override shows who wrote the pyc: the writer rewrites
    # with the command's config; the idle re-warm would with the daemon's (no hook).
    args = ("-q", "-o", "enable_assertion_pass_hook=true", "tests")
    # The second run is the command a standby is then prepared for.
    for _ in range(2):
        assert proj.pytest(*args).returncode == 1
    assert _current(test)  # the warm-up's (the runs took the module from the layer)
    test.write_text(TEST_SOURCE.replace("x == 2", "x == 3"))
    assert not _current(test)
    wait_until(lambda: _current(test), what="the saved test module's pyc, written ahead")
    assert _calls_the_pass_hook(_pyc(test)), "the pyc was not written for the command"
    warm = proj.pytest(*args)
    cold = proj.cold(*args)
    assert "assert 1 == 3" in warm.stdout, str(warm)
    assert "pytest-fastcollect:" not in warm.stderr, str(warm)
    assert _timeless(warm.stdout + warm.stderr) == _timeless(cold.stdout + cold.stderr)
