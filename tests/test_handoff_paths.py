"""Which pytest invocations the daemon serves, and which run in their own process.

The ``pytest`` command hands off while pytest is still loading plugins (see
plugin._early_handoff); options that say "run here" must be honoured from
wherever they come: the command line, PYTEST_ADDOPTS, or ini ``addopts``.
``pytest.main()`` called from Python always runs in the caller's process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import Project, command_pytest, daemon_runs

pytestmark = pytest.mark.timeout(180)

TESTS = {
    "tests/test_a.py": """
        import os

        def test_pid():
            print("pid", os.getpid())
            assert True
    """
}


@pytest.fixture
def served(project: Project) -> Project:
    project.write(TESTS)
    started = project.start("tests")
    assert started.returncode == 0, str(started)
    return project


def test_the_pytest_command_is_served(served: Project) -> None:
    before = daemon_runs(served)
    result = served.pytest("-q", "tests")
    assert result.returncode == 0, str(result)
    assert "1 passed" in result.stdout
    assert daemon_runs(served) == before + 1


@pytest.mark.parametrize(
    "how",
    ["argument", "PYTEST_ADDOPTS", "ini addopts", "environment switch"],
)
def test_run_here_is_honoured_wherever_it_is_given(served: Project, how: str) -> None:
    env: dict[str, str] = {}
    args = ["-q", "tests"]
    if how == "argument":
        args.append("--no-daemon")
    elif how == "PYTEST_ADDOPTS":
        env["PYTEST_ADDOPTS"] = served.env["PYTEST_ADDOPTS"] + " --no-daemon"
    elif how == "ini addopts":
        ini = served.root / "pytest.ini"
        ini.write_text(ini.read_text() + "addopts = --no-daemon\n")
    else:
        env["PYTEST_FASTCOLLECT_DISABLE"] = "1"
    before = daemon_runs(served)
    result = served.pytest(*args, env=env)
    assert result.returncode == 0, str(result)
    assert "1 passed" in result.stdout
    assert "pytest-fastcollect:" not in result.stderr, str(result)
    assert daemon_runs(served) == before


def test_pytest_main_from_python_runs_in_the_callers_process(served: Project) -> None:
    script = (
        "import os, sys, pytest\n"
        "print('caller', os.getpid())\n"
        "code = pytest.main(['-q', '-s', 'tests'])\n"
        "print('returned', int(code))\n"
    )
    before = daemon_runs(served)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=served.root,
        env=served.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    caller = next(line.split()[1] for line in lines if line.startswith("caller "))
    ran_in = next(line.split()[1] for line in lines if line.startswith("pid "))
    assert ran_in == caller, proc.stdout
    assert "returned 0" in lines, proc.stdout
    assert "pytest-fastcollect:" not in proc.stderr, proc.stderr
    assert daemon_runs(served) == before


def test_a_daemon_verb_is_not_handed_off(served: Project) -> None:
    before = daemon_runs(served)
    result = served.pytest("--daemon-status")
    assert result.returncode == 0, str(result)
    assert "state:" in result.stdout
    assert daemon_runs(served) == before


def test_the_hand_off_comes_before_later_plugins_are_imported(project: Project) -> None:
    # PYTEST_PLUGINS are imported after every installed plugin: a client that
    # hands off while plugins load never imports them (the worker does).
    project.write(
        {
            **TESTS,
            "marker_plugin.py": """
                import os

                with open(os.path.join(os.path.dirname(__file__), "importers.txt"), "a") as fh:
                    fh.write(f"{os.getpid()}\\n")

                def pytest_report_header(config):
                    return "marker plugin is active"
            """,
        }
    )
    ini = project.root / "pytest.ini"
    ini.write_text(ini.read_text() + "pythonpath = .\n")
    project.env["PYTEST_PLUGINS"] = "marker_plugin"
    started = project.start("tests")
    assert started.returncode == 0, str(started)
    importers = project.root / "importers.txt"
    importers.unlink()
    proc = subprocess.Popen(
        [*command_pytest(), "tests"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "1 passed" in out
    assert "marker plugin is active" in out, out  # the run has it (the warm process imported it)
    pids = importers.read_text().split() if importers.exists() else []
    assert str(proc.pid) not in pids, (pids, proc.pid)


def test_conftests_and_tests_see_the_real_importlib_metadata(project: Project) -> None:
    # The warm process serves a run's pytest start-up from its metadata cache
    # (warm/metadata_cache.py); from the first conftest on it must be gone.
    check = textwrap.dedent(
        """
        import importlib.metadata as md

        def cached():
            return md.distributions.__module__ != "importlib.metadata" or any(
                type(d).__name__ == "CachedDistribution" for d in md.distributions()
            )
        """
    )
    test = """
        from conftest import CONFTEST_SAW_CACHE

        def test_real_metadata():
            assert not CONFTEST_SAW_CACHE
            assert not cached()
            assert md.version("pytest")
    """
    project.write(
        {
            "tests/conftest.py": check + "\nCONFTEST_SAW_CACHE = cached()\n",
            "tests/test_md.py": check + textwrap.dedent(test),
        }
    )
    assert project.start("tests").returncode == 0
    before = daemon_runs(project)
    result = project.pytest("-q", "tests")
    assert result.returncode == 0, str(result)
    assert daemon_runs(project) == before + 1
