"""The daemon's own pytest sessions (warm-up, re-warm) write no reports,
logs or coverage data: only the user's runs do, exactly as cold runs do.

The options come from where users keep them: ``addopts`` in the ini file
and ini values. A cold ``--cov`` run leaves coverage data behind; a warm-up
that measured coverage would have erased it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import Project, daemon_runs, log_text, wait_until

pytestmark = pytest.mark.timeout(240)

INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
addopts = --junitxml=report.xml {extra}
log_file = run.log
log_file_level = INFO
"""
TEST = """\
import logging


def test_logs():
    logging.getLogger("t").info("LOGGED-BY-A-TEST")
"""


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file the runs write, with its content and modification time."""
    found = {}
    for path in sorted(root.iterdir()):
        if path.is_file() and (
            path.name.startswith(".coverage") or path.suffix in (".xml", ".log")
        ):
            found[path.name] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def _edit_and_wait_for_the_rewarm(proj: Project) -> None:
    """Save the test file; the reload purges its module, a re-warm session imports it again."""
    before = log_text(proj).count("Re-warmed")
    path = proj.root / "tests" / "test_a.py"
    path.write_text(path.read_text() + "\n# saved again\n")
    wait_until(lambda: log_text(proj).count("Re-warmed") > before, 60, "a re-warm")


def test_reports_and_logs_are_written_by_runs_only(project: Project) -> None:
    proj = project
    proj.write({"pytest.ini": INI.format(extra=""), "tests/test_a.py": TEST})
    started = proj.start("tests")
    assert started.returncode == 0, str(started)
    assert _files(proj.root) == {}, "the warm-up wrote the user's files"

    runs = daemon_runs(proj)
    served = proj.pytest("-q", "-p", "no:randomly")
    assert served.returncode == 0 and daemon_runs(proj) == runs + 1, str(served)
    written = _files(proj.root)
    assert set(written) == {"report.xml", "run.log"}, written
    assert b'tests="1"' in written["report.xml"][0]
    assert b"LOGGED-BY-A-TEST" in written["run.log"][0]

    _edit_and_wait_for_the_rewarm(proj)
    assert _files(proj.root) == written, "a re-warm rewrote the run's report or log"


def test_coverage_data_of_a_cold_run_survives_the_daemon(project: Project) -> None:
    proj = project
    proj.write({"pytest.ini": INI.format(extra="--cov=tests"), "tests/test_a.py": TEST})
    cold = proj.cold("-q", "-p", "no:randomly")
    assert cold.returncode == 0, str(cold)
    written = _files(proj.root)
    assert {".coverage", "report.xml", "run.log"} <= set(written), written

    started = proj.start("tests")
    assert started.returncode == 0, str(started)
    assert _files(proj.root) == written, "the warm-up measured coverage or rewrote a report"
    _edit_and_wait_for_the_rewarm(proj)
    assert _files(proj.root) == written, "a re-warm measured coverage or rewrote a report"
