"""The start-up hook: the ``pytest`` command hands off before pytest is imported.

Proof that a run went the early way: ``-p marker_plugin`` makes pytest
import a module that records the pid importing it. The plugin's own
hand-off comes after ``-p`` plugins are imported (so the client's pid shows
up, the control case below), the early hand-off before (so only the run
worker's does). Every condition under which the plugin would not hand off
must fall through and give what it gives today; other Python processes of
the environment must not notice the ``.pth`` line at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import PYTEST, THIN, Project, daemon_runs, make_project

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(PYTEST is None, reason="needs the pytest console script"),
]

NOTICE = "pytest-fastcollect:"
PTH = "pytest-fastcollect.pth"

MARKER = """
import os

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "importers.txt"), "a") as fh:
    fh.write(f"{os.getpid()}\\n")
"""
TEST = """
import os

def test_pid():
    print("worker", os.getpid())
"""
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\npythonpath = .\n"


def _project(root: Path, how: list[str] | None = None, ini: str = INI) -> Project:
    proj = make_project(root)
    proj.write({"marker_plugin.py": MARKER, "tests/test_a.py": TEST, "pytest.ini": ini})
    started = proj.command([*(how or [str(PYTEST)]), "--daemon-start", "tests"], timeout=180)
    assert started.returncode == 0, str(started)
    record = proj.record()
    assert record is not None
    proj.started_pids.append(int(record["pid"]))  # type: ignore[call-overload]
    return proj


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "proj"
    root.mkdir()
    proj = _project(root)
    try:
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


def run(
    proj: Project,
    cmd: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.CompletedProcess[str], bool, bool]:
    """Run ``cmd``; (result, served by the daemon, the client imported the marker plugin)."""
    importers = proj.root / "importers.txt"
    importers.unlink(missing_ok=True)
    before = daemon_runs(proj)
    proc = subprocess.Popen(
        cmd,
        cwd=cwd or proj.root,
        env={**proj.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    out, err = proc.communicate(timeout=180)
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    pids = importers.read_text().split() if importers.exists() else []
    return result, daemon_runs(proj) == before + 1, str(proc.pid) in pids


def test_served_without_importing_pytest(served: Project) -> None:
    result, was_served, client_imported = run(served, [str(PYTEST), "-p", "marker_plugin", "tests"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert NOTICE not in result.stderr, result.stderr
    assert was_served
    assert not client_imported


def test_control_the_plugin_path_imports_p_plugins_in_the_client(served: Project) -> None:
    """The same run with the early path off: served, but the client loaded -p plugins."""
    result, was_served, client_imported = run(
        served,
        [str(PYTEST), "-p", "marker_plugin", "tests"],
        env={"PYTEST_FASTCOLLECT_EARLY": "0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert was_served
    assert client_imported


def test_python_m_pytest_is_served_early(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    how = [sys.executable, "-m", "pytest"]
    # No "pythonpath = ." here: python -m puts the working directory first
    # already (and a daemon started so with pythonpath = . is refused on the
    # plugin path as well: commands.spawn_supervisor sends sys.path[0] after
    # removing the pythonpath entries).
    proj = _project(root, how, ini="[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    try:
        result, was_served, client_imported = run(proj, [*how, "-p", "marker_plugin", "tests"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert NOTICE not in result.stderr, result.stderr
        assert was_served
        assert not client_imported
        # What pytest shows as the program name comes from the argv[0] sent.
        before = daemon_runs(proj)
        bad = proj.command([*how, "--no-such-option"])
        assert daemon_runs(proj) == before + 1
        cold = proj.command([*how, "--no-such-option", "--no-daemon"])
        assert (bad.returncode, bad.stdout, bad.stderr) == (
            cold.returncode,
            cold.stdout,
            cold.stderr,
        )
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


def test_the_pkg_project_is_served_from_its_parent(tmp_path: Path) -> None:
    """pyproject.toml in pkg/, the command run from the parent with pkg/tests/... (issue 12)."""
    parent = tmp_path / "parent"
    pkg = parent / "pkg"
    proj = make_project(pkg)
    proj.write(
        {
            "pyproject.toml": '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n',
            "tests/test_x.py": TEST,
        }
    )
    try:
        started = proj.pytest("--daemon-start", "tests")
        assert started.returncode == 0, str(started)
        for cmd in ([THIN, "run"], [str(PYTEST)]):
            before = daemon_runs(proj)
            result = proj.command([*cmd, "-q", "pkg/tests/test_x.py"], cwd=parent)
            assert result.returncode == 0, str(result)
            assert "1 passed" in result.stdout
            assert NOTICE not in result.stderr, str(result)
            assert daemon_runs(proj) == before + 1, cmd
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


# Each: extra arguments, extra environment, ini addopts, whether today's path serves it.
FALL_THROUGH = {
    "no-daemon-argument": (["--no-daemon"], {}, "", False),
    "no-daemon-in-PYTEST_ADDOPTS": (
        [],
        {"PYTEST_ADDOPTS": "-p no:randomly --no-daemon"},
        "",
        False,
    ),
    "no-daemon-in-ini-addopts": ([], {}, "--no-daemon", False),
    "disable-env": ([], {"PYTEST_FASTCOLLECT_DISABLE": "1"}, "", False),
    "plugin-blocked": (["-p", "no:fastcollect"], {}, "", False),
    "plugin-blocked-in-PYTEST_ADDOPTS": ([], {"PYTEST_ADDOPTS": "-p no:fastcollect"}, "", False),
    "plugin-blocked-in-ini-addopts": ([], {}, "-p no:fastcollect", False),
    "plugin-autoload-off": ([], {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, "", False),
    "xdist-worker": ([], {"PYTEST_XDIST_WORKER": "gw0"}, "", False),
    "cov": (["--cov", "tests"], {}, "", False),
    "cov-in-ini-addopts": ([], {}, "--cov=tests", False),
    # Served today, by the plugin: the early path leaves them to it.
    "double-dash": (["--", "tests"], {}, "", True),
    "override-addopts": (["-o", "addopts=-q"], {}, "", True),
}


@pytest.mark.parametrize("case", list(FALL_THROUGH))
def test_falls_through_and_does_what_the_plugin_does(served: Project, case: str) -> None:
    args, env, addopts, serves = FALL_THROUGH[case]
    if addopts:
        ini = served.root / "pytest.ini"
        ini.write_text(ini.read_text() + f"addopts = {addopts}\n")
    cmd = [str(PYTEST), "-p", "marker_plugin", *args, *([] if "--" in args else ["tests"])]
    result, was_served, client_imported = run(served, cmd, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert was_served == serves
    assert client_imported, "the early path must not take this run"
    if "cov" in case:
        assert "--cov needs to see every import" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], ["-V"], ["-qh"]])
def test_help_and_version_are_pytests_own(served: Project, args: list[str]) -> None:
    result, was_served, _ = run(served, [str(PYTEST), *args])
    cold, _, _ = run(served, [str(PYTEST), *args], env={"PYTEST_FASTCOLLECT_EARLY": "0"})
    assert not was_served
    assert (result.returncode, result.stdout, result.stderr) == (
        cold.returncode,
        cold.stdout,
        cold.stderr,
    )


def _imports_pytest(stderr: str) -> bool:
    """Whether ``-X importtime`` listed pytest's own package among the imports."""
    return re.search(r"^import time: .*\|\s+_pytest$", stderr, flags=re.M) is not None


def _figures_out(text: str) -> str:
    # Uptime, request counts, CPU and memory move between two calls.
    return re.sub(r"\d+(\.\d+)?", "N", text)


@pytest.mark.parametrize(
    "args",
    [["--daemon-status"], ["--daemon-health"], ["--daemon-json", "--daemon-status"]],
)
def test_quick_verbs_are_answered_before_pytest_is_imported(
    served: Project, args: list[str]
) -> None:
    cmd = [sys.executable, "-X", "importtime", str(PYTEST), *args]
    early, was_served, _ = run(served, cmd)
    plugin, _, _ = run(served, cmd, env={"PYTEST_FASTCOLLECT_EARLY": "0"})
    assert not was_served
    assert not _imports_pytest(early.stderr), "the start-up hook left the verb to the plugin"
    assert _imports_pytest(plugin.stderr)
    assert early.returncode == plugin.returncode == 0, early.stdout + early.stderr
    assert early.stdout.startswith(("pytest-fastcollect daemon for", "Status: healthy", "{"))
    if "--daemon-json" in args:
        assert json.loads(early.stdout).keys() == json.loads(plugin.stdout).keys()
    else:
        assert _figures_out(early.stdout) == _figures_out(plugin.stdout)


@pytest.mark.parametrize(
    "args",
    [["--daemon-status", "tests"], ["--daemon-status", "--daemon-health"], ["--daemon-json"]],
)
def test_other_verb_commands_are_the_plugins(served: Project, args: list[str]) -> None:
    cmd = [sys.executable, "-X", "importtime", str(PYTEST), *args]
    result, was_served, _ = run(served, cmd)
    control, _, _ = run(served, cmd, env={"PYTEST_FASTCOLLECT_EARLY": "0"})
    assert not was_served
    assert _imports_pytest(result.stderr)
    assert result.returncode == control.returncode
    assert _figures_out(result.stdout) == _figures_out(control.stdout)


def test_a_quick_verb_with_no_daemon_is_the_plugins(tmp_path: Path) -> None:
    """No daemon serves the rootdir: the plugin's verb says so, with its exit code."""
    proj = make_project(tmp_path / "none")
    proj.write({"tests/test_a.py": TEST, "pytest.ini": INI})
    cmd = [sys.executable, "-X", "importtime", str(PYTEST), "--daemon-status"]
    result = proj.command(cmd)
    assert _imports_pytest(result.stderr)
    assert result.returncode != 0
    assert "no daemon running for" in result.stderr


def test_interpreter_options_fall_through_to_the_plugins_notice(served: Project) -> None:
    result, was_served, client_imported = run(
        served, [sys.executable, "-O", str(PYTEST), "-p", "marker_plugin", "tests"]
    )
    assert result.returncode == 0, result.stderr
    assert not was_served
    assert client_imported
    assert "started without python -O" in result.stderr


def test_collect_only_is_served_early_as_the_plugin_serves_it(served: Project) -> None:
    result, was_served, client_imported = run(
        served, [str(PYTEST), "-p", "marker_plugin", "--co", "-q", "tests"]
    )
    assert result.returncode == 0, result.stderr
    assert "tests/test_a.py::test_pid" in result.stdout
    assert was_served
    assert not client_imported


def test_a_refusal_is_not_asked_twice(served: Project) -> None:
    """The daemon declines (an import-time option differs): one notice, one cold run."""
    result, _, client_imported = run(
        served, [str(PYTEST), "-p", "marker_plugin", "--import-mode=importlib", "tests"]
    )
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if line.startswith(NOTICE)]
    assert len(notices) == 1 and "importmode" in notices[0], result.stderr
    assert client_imported  # ran cold in the client


def test_a_script_named_pytest_that_is_not_the_console_script(served: Project) -> None:
    """Its own pytest.main() call runs in-process, as before."""
    script = served.root / "bin" / "pytest"
    script.parent.mkdir()
    script.write_text(
        "import os, sys\nimport pytest\n"
        "print('caller', os.getpid())\n"
        "sys.exit(pytest.main(['-q', '-s', 'tests']))\n"
    )
    result, was_served, _ = run(served, [sys.executable, str(script)])
    assert result.returncode == 0, result.stderr
    assert not was_served
    caller = next(
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("caller")
    )
    worker = next(line.split()[1] for line in result.stdout.splitlines() if "worker" in line)
    assert caller == worker


# --- other processes -------------------------------------------------------------------


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def test_the_pth_file_is_installed() -> None:
    pth = _site_packages() / PTH
    assert pth.is_file(), f"{pth} missing: reinstall the package (pip install -e .)"
    assert pth.read_text() == (Path(__file__).parent.parent / "src" / PTH).read_text()


PROBE = """
import sys, site
mode, argv0, *orig_tail = sys.argv[1:]
sys.argv = [argv0]
sys.orig_argv = [sys.executable, *orig_tail]
original = site.addpackage
def addpackage(sitedir, name, known_paths):
    if mode == "skip" and name == {pth!r}:
        return known_paths
    return original(sitedir, name, known_paths)
site.addpackage = addpackage
site.main()
print(sorted(sys.modules))
print([type(f).__qualname__ for f in sys.meta_path])
print(sys.path)
"""


def _probe(mode: str, argv0: str, orig_tail: list[str]) -> list[str]:
    """Site processing in a fresh ``python -S``, as if started with ``argv0``: our .pth
    line skipped or kept. Lines: modules, meta path finders, sys.path."""
    proc = subprocess.run(
        [sys.executable, "-S", "-c", PROBE.format(pth=PTH), mode, argv0, *orig_tail],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return proc.stdout.splitlines()


@pytest.mark.parametrize(
    "argv0,orig_tail",
    [
        ("-c", ["-c", "pass"]),
        ("", []),
        ("/srv/app/manage.py", ["/srv/app/manage.py", "runserver"]),
        ("/venv/bin/pip", ["/venv/bin/pip", "install", "pytest"]),
        ("-m", ["-m", "json.tool"]),
        ("-m", ["-m", "pip", "install", "pytest"]),
        ("-m", ["-mpytest"]),
    ],
)
def test_other_processes_see_no_difference(argv0: str, orig_tail: list[str]) -> None:
    """Same modules, same finders, same sys.path with and without our .pth line."""
    skipped = _probe("skip", argv0, orig_tail)
    kept = _probe("keep", argv0, orig_tail)
    assert skipped == kept
    assert "pytest_fastcollect" not in kept[0]


@pytest.mark.parametrize(
    "argv0,orig_tail",
    [("/venv/bin/pytest", ["/venv/bin/pytest", "-q"]), ("-m", ["-m", "pytest", "-q"])],
)
def test_the_pytest_command_gets_the_finder_and_nothing_else(
    argv0: str, orig_tail: list[str]
) -> None:
    skipped = _probe("skip", argv0, orig_tail)
    kept = _probe("keep", argv0, orig_tail)
    added = set(eval(kept[0])) - set(eval(skipped[0]))
    # __future__: our modules' "from __future__ import annotations" (pytest's own too).
    assert added == {
        "__future__",
        "pytest_fastcollect",
        "pytest_fastcollect.client",
        "pytest_fastcollect.client.early",
    }
    assert eval(kept[1]) == ["_Finder", *eval(skipped[1])]
    assert kept[2] == skipped[2]


def test_the_early_switch_leaves_no_finder() -> None:
    proc = subprocess.run(
        [sys.executable, "-S", "-c", PROBE.format(pth=PTH), "keep", "/venv/bin/pytest"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTEST_FASTCOLLECT_EARLY": "0"},
    )
    assert "_Finder" not in proc.stdout.splitlines()[1]
