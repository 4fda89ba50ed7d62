"""Learned imports: what runs import lazily is imported in the warm process, when invisible.

The trial rules run in a fresh interpreter (the pytest process running these
tests may have threads of its own, which the rules refuse); the daemon flow
runs end to end with a standard-library module no part of pytest imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import Project, daemon_status, wait_for_log

pytestmark = pytest.mark.timeout(180)

MODULES = {
    "quiet_mod.py": "VALUE = 1\n",
    "quiet_pkg/__init__.py": "",
    "quiet_pkg/sub.py": "from quiet_pkg import other\n",
    "quiet_pkg/other.py": "X = 2\n",
    "warns_mod.py": "import warnings\nwarnings.warn('old', DeprecationWarning)\n",
    "pending_mod.py": "import warnings\nwarnings.warn('soon', PendingDeprecationWarning)\n",
    "prints_mod.py": "print('hello from import')\n",
    "stderr_mod.py": "import sys\nsys.stderr.write('note\\n')\n",
    "raises_mod.py": "raise RuntimeError('no')\n",
    "thread_mod.py": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    ),
    "project/app.py": "A = 1\n",
    "imports_project.py": "import app\n",
}

SCRIPT = """
import json, os, sys
sys.path[:0] = [{libs!r}, {project!r}]
from pytest_fastcollect.warm import learn, threads
learn.library_dirs = lambda: ({libs!r} + os.sep,)
names = {names!r}
result = learn.adopt(names, {project!r}, threads.fork_safety)
print(json.dumps({{
    "imported": result.imported,
    "rejected": result.rejected,
    "deferred": result.deferred,
    "tainted": result.tainted,
    "in_sys_modules": sorted(n for n in names if n in sys.modules),
}}))
"""


def adopt_in_fresh_interpreter(tmp_path: Path, names: list[str]) -> dict[str, object]:
    libs = tmp_path / "libs"
    for rel, text in MODULES.items():
        base = tmp_path if rel.startswith("project/") else libs
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    script = SCRIPT.format(libs=str(libs), project=str(tmp_path / "project"), names=names)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return data


def test_invisible_imports_are_learned(tmp_path: Path) -> None:
    names = ["quiet_mod", "quiet_pkg.sub", "quiet_pkg.other"]
    data = adopt_in_fresh_interpreter(tmp_path, names)
    assert data["imported"] == sorted(names)
    assert data["rejected"] == {}
    assert data["in_sys_modules"] == sorted(names)
    assert data["tainted"] == ""


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("warns_mod", "warned (DeprecationWarning)"),
        ("pending_mod", "warned (PendingDeprecationWarning)"),
        ("prints_mod", "printed output"),
        ("stderr_mod", "printed output"),
        ("raises_mod", "raised RuntimeError"),
        ("thread_mod", "made forking unsafe (a Python thread"),
        ("imports_project", "imported the project module app"),
    ],
)
def test_visible_imports_are_refused_and_never_imported(
    tmp_path: Path, name: str, reason: str
) -> None:
    data = adopt_in_fresh_interpreter(tmp_path, [name, "quiet_mod"])
    rejected = data["rejected"]
    assert isinstance(rejected, dict) and list(rejected) == [name]
    assert rejected[name].startswith(reason), rejected
    assert name not in data["in_sys_modules"]  # only the trial child imported it
    # An import after a refused one is judged next time, not now.
    assert data["imported"] + data["deferred"] == ["quiet_mod"]  # type: ignore[operator]


def test_a_run_teaches_the_daemon_its_lazy_library_imports(project: Project) -> None:
    # xml.dom.minidom: standard library, imported by no part of pytest.
    project.write(
        {
            "tests/test_lazy.py": """
            import sys

            def test_lazy():
                import xml.dom.minidom
                assert xml.dom.minidom.parseString("<a/>").documentElement.tagName == "a"

            def test_status():
                print("preloaded" if "xml.dom.minidom" in sys.modules else "imported by the test")
            """
        }
    )
    started = project.start("tests")
    assert started.returncode == 0, str(started)
    first = project.pytest("-q", "-s", "-p", "no:randomly", "tests/test_lazy.py::test_lazy")
    assert first.returncode == 0, str(first)
    wait_for_log(project, r"Learned \d+ library imports")
    status = daemon_status(project)
    assert status["warmup"]["learned_imports"] >= 1  # type: ignore[index]
    warm = project.pytest("-q", "-s", "-p", "no:randomly", "tests/test_lazy.py::test_status")
    assert "preloaded" in warm.stdout, str(warm)
    # The one visible difference, by design: the module is already there.
    cold = project.cold("-q", "-s", "-p", "no:randomly", "tests/test_lazy.py::test_status")
    assert "imported by the test" in cold.stdout, str(cold)


def test_learned_imports_are_listed_in_status(project: Project) -> None:
    project.write({"tests/test_a.py": "def test_a():\n    import xml.dom.minidom\n"})
    assert project.start("tests").returncode == 0
    assert project.pytest("-q", "tests").returncode == 0
    wait_for_log(project, r"Learned \d+ library imports")
    shown = project.pytest("--daemon-status")
    assert "learned:" in shown.stdout, str(shown)
    assert "0 library imports" not in shown.stdout, textwrap.shorten(shown.stdout, 400)
