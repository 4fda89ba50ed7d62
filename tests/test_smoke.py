"""End to end: start, run through the daemon, status, health, stop."""

from __future__ import annotations

from helpers import Project


def test_start_run_status_stop(project: Project) -> None:
    project.write(
        {
            "tests/test_a.py": """
        def test_ok():
            assert True

        def test_bad():
            assert 1 == 2
    """
        }
    )
    started = project.start("tests")
    assert started.returncode == 0, str(started)
    assert "Pre-import complete: 1/1 modules in" in started.stdout

    warm = project.pytest("-q", "tests")
    cold = project.cold("-q", "tests")
    assert warm.returncode == cold.returncode == 1
    assert "1 failed, 1 passed" in warm.stdout
    assert project.status()["metrics"]["runs"] == 1  # type: ignore[index]

    stopped = project.stop()
    assert stopped.returncode == 0, str(stopped)
    assert project.record() is None
