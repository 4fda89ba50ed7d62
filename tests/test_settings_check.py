"""Bad ``daemon_*`` values are refused up front, in one line that names the setting (issue 11.9).

A bad value must stop a run before its first test (cold or handed off), a
start before anything is spawned, and the message names the setting and
the values it takes, whatever pytest's own typed parsing says.
"""

from __future__ import annotations

import pytest

from pytest_fastcollect import settings
from pytest_fastcollect.client import route

from helpers import DEFAULT_INI, Project
from transcript import expect

TESTS = {"tests/test_a.py": "def test_a():\n    pass\n"}
BAD = {
    "daemon_autostart": "maybe",
    "daemon_max_connections": "x",
    "daemon_max_request_bytes": "12",
    "daemon_request_timeout": "soon",
    "daemon_debounce_ms": "-1",
    "daemon_learn_imports": "maybe",
    "daemon_log_level": "LOUD",
}


def _message(name: str, value: str) -> str:
    return (
        f"ini option {name} = {value!r} is not valid; "
        f"it takes {settings.INI_BY_NAME[name].accepts()}"
    )


def test_every_setting_has_a_bad_value_here() -> None:
    assert set(BAD) == {s.name for s in settings.INI_SETTINGS}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_value_in_the_ini_stops_a_cold_run_before_its_tests(
    project: Project, name: str
) -> None:
    project.write({**TESTS, "pytest.ini": DEFAULT_INI + f"{name} = {BAD[name]}\n"})
    expect(
        project,
        project.pytest("-q", "tests"),
        4,
        stderr=f"ERROR: {_message(name, BAD[name])}\n\n",
    )


def test_bad_value_given_with_o_stops_a_run(project: Project) -> None:
    project.write(TESTS)
    expect(
        project,
        project.pytest("-q", "-o", "daemon_max_connections=0", "tests"),
        4,
        stderr=f"ERROR: {_message('daemon_max_connections', '0')}\n\n",
    )


def test_bad_value_stops_a_run_the_daemon_would_serve(project: Project) -> None:
    project.write(TESTS)
    assert project.start("tests").returncode == 0
    expect(
        project,
        project.pytest("-q", "-o", "daemon_debounce_ms=-1", "tests"),
        4,
        stderr=f"ERROR: {_message('daemon_debounce_ms', '-1')}\n\n",
    )
    assert project.status()["metrics"]["runs"] == 0  # type: ignore[index]


def test_bad_value_stops_a_start(project: Project) -> None:
    project.write({**TESTS, "pytest.ini": DEFAULT_INI + "daemon_learn_imports = maybe\n"})
    expect(
        project,
        project.pytest("--daemon-start", "tests"),
        4,
        stderr=f"pytest-fastcollect: error: {_message('daemon_learn_imports', 'maybe')}\n",
    )
    assert list(project.runtime.glob("*.json")) == []


def test_accepted_values_read_well() -> None:
    """The help and the errors say "a whole number", never "a int"."""
    assert (
        settings.INI_BY_NAME["daemon_max_connections"].accepts() == "a whole number of at least 1"
    )
    assert settings.INI_BY_NAME["daemon_request_timeout"].accepts() == "a number of at least 0.1"
    assert settings.INI_BY_NAME["daemon_autostart"].accepts() == "true or false"
    assert "DEBUG" in settings.INI_BY_NAME["daemon_log_level"].accepts()


def test_help_shows_numeric_settings_typed(project: Project) -> None:
    if not settings._pytest_has_numeric_ini():
        pytest.skip("pytest before 8.4 has no int or float ini type")
    result = project.pytest("--help")
    assert result.returncode == 0, str(result)
    for s in settings.INI_SETTINGS:
        if s.kind in ("int", "float", "bool"):
            assert f"{s.name} ({s.kind}):" in result.stdout, s.name


@pytest.mark.parametrize(
    "args,expected",
    [
        (["-o", "daemon_debounce_ms=-1"], True),
        (["-odaemon_debounce_ms=-1"], True),
        (["--override-ini=daemon_autostart=maybe"], True),
        (["--override-ini", "daemon_log_level=DEBUG", "tests"], True),
        (["-o", "addopts=-q", "-q"], False),
        (["tests/daemon_x.py", "-q"], False),
    ],
)
def test_the_start_up_hook_leaves_setting_overrides_to_the_plugin(
    args: list[str], expected: bool
) -> None:
    """The hook would hand the run off unchecked; the plugin checks the value first."""
    assert route._overrides_a_setting(args) is expected
