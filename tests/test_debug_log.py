"""DEBUG logging says why the daemon did what it did (issue 11.7).

With ``daemon_log_level = DEBUG``: each batch of changes gets its decision
and reason, each re-import its closure size, each run whether it was served
warm or refused and why. The older advice, lowering the daemon logger's
level from a conftest, works too: the warm process reports that level and
the supervisor logs at it while that warm process serves.
"""

from __future__ import annotations

from collections.abc import Callable

from helpers import Project, log_text, wait_for_log

NOTICE = "pytest-fastcollect:"


def edit(proj: Project, line: str = "EXTRA = 1") -> None:
    """Change a test module (its closure is itself: re-imported, never a replacement)."""
    path = proj.root / "tests" / "test_money.py"
    path.write_text(path.read_text() + f"\n{line}\n")


def _debug_lines(proj: Project) -> list[str]:
    return [line for line in log_text(proj).splitlines() if " DEBUG " in line]


def test_debug_level_explains_reloads_and_hand_offs(example: Callable[[str], Project]) -> None:
    proj = example("basic")
    ini = proj.root / "pytest.ini"
    ini.write_text(ini.read_text() + "daemon_log_level = DEBUG\n")
    assert proj.start("tests").returncode == 0
    edit(proj)
    assert proj.pytest("-q", "tests/test_money.py").returncode == 0
    wait_for_log(
        proj,
        r"DEBUG .*Reload decision for tests/test_money\.py: re-import the closure of tests/test_money\.py$",
    )
    wait_for_log(proj, r"DEBUG .*Closure of test_money: 1 modules \(1 test modules\): test_money$")
    wait_for_log(
        proj, r"DEBUG .*Run \[\w+\] served warm: order \w+ on warm process \d+ \(generation \d+\)"
    )

    extra = proj.root / "extra"
    extra.mkdir()
    (extra / "helper_mod.py").write_text("")
    refused = proj.pytest("-q", "tests/test_money.py", env={"PYTHONPATH": str(extra)})
    assert NOTICE in refused.stderr, str(refused)
    wait_for_log(
        proj, r"DEBUG .*Run \[\w+\] refused \(the client runs it cold\): this run's sys\.path has "
    )

    conftest = proj.root / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + "\n# touched\n")
    assert proj.pytest("-q", "tests/test_money.py").returncode == 0
    # extra/helper_mod.py's save may reach the watcher late and share the batch.
    wait_for_log(
        proj,
        r"DEBUG .*Reload decision for (?:[^:]*, )?tests/conftest\.py(?:, [^:]*)?: "
        r"re-import the closure of tests/conftest\.py$",
    )
    wait_for_log(proj, r"DEBUG .*Conftest \S+/tests/conftest\.py: reloadable$")

    ini = proj.root / "pytest.ini"
    ini.write_text(ini.read_text() + "# touched\n")
    assert proj.pytest("-q", "tests/test_money.py").returncode == 0
    wait_for_log(
        proj,
        r"DEBUG .*Reload decision for pytest\.ini: replace the warm process "
        r"\(config: pytest\.ini changed\)$",
    )


def test_info_level_has_no_debug_lines(example: Callable[[str], Project]) -> None:
    proj = example("basic")
    assert proj.start("tests").returncode == 0
    edit(proj)
    assert proj.pytest("-q", "tests/test_money.py").returncode == 0
    wait_for_log(proj, r"INFO .*Reloaded \d+ modules")
    assert _debug_lines(proj) == []


SEED_ADVICE = """
import logging
logging.getLogger('pytest_fastcollect.daemon').setLevel(logging.DEBUG)
logging.getLogger('pytest_fastcollect.daemon_client').setLevel(logging.DEBUG)
"""


def test_conftest_that_lowers_the_daemon_logger_level(example: Callable[[str], Project]) -> None:
    """The seed document's advice: the conftest's level applies while its warm process serves."""
    proj = example("basic")
    conftest = proj.root / "tests" / "conftest.py"
    original = conftest.read_text()
    conftest.write_text(original + SEED_ADVICE)
    assert proj.start("tests").returncode == 0
    wait_for_log(proj, r"INFO .*Log level DEBUG, set by a conftest \(daemon_log_level is INFO\)")
    edit(proj)
    assert proj.pytest("-q", "tests/test_money.py").returncode == 0
    wait_for_log(proj, r"DEBUG .*Reload decision for tests/test_money\.py")

    conftest.write_text(original)  # the advice removed: a new warm process, INFO again
    assert proj.pytest("-q", "tests/test_money.py").returncode == 0
    wait_for_log(proj, r"INFO .*Log level back to INFO \(daemon_log_level\)")
    count = len(_debug_lines(proj))
    edit(proj, "MORE = 2")
    assert proj.pytest("-q", "tests/test_money.py").returncode == 0
    wait_for_log(proj, r"INFO .*Reloaded 1 modules in [\d.]+ ms \(changed: tests/test_money\.py\)")
    assert len(_debug_lines(proj)) == count
