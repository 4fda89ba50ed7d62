"""Exit codes and standard streams at the edges, warm exactly as cold (issue 10.7).

Each case runs the same command cold (``--no-daemon``) and through the
daemon, from a shell that closes a standard stream where the case says so,
and compares the exit status and what reached the streams still open. The
warm run must really have gone through the daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Project, Result, command_pytest, daemon_runs

pytestmark = pytest.mark.timeout(240)

FILES = {
    "conftest.py": """\
        import os


        def pytest_unconfigure(config):
            if os.environ.get("RAISE_UNCONFIGURE"):
                raise RuntimeError("unconfigure failed")
    """,
    "tests/test_a.py": """\
        import os


        def test_a():
            pass


        def test_closes_stdout_and_stderr():
            if os.environ.get("CLOSE_FDS"):
                os.close(1)
                os.close(2)
    """,
    "tests/test_thread.py": """\
        import os
        import threading
        import time


        def test_starts_a_thread_that_never_ends():
            if os.environ.get("HANG_THREAD"):
                threading.Thread(target=time.sleep, args=(3600,)).start()
                open(os.environ["HANG_THREAD"], "w").close()
    """,
}


@pytest.fixture
def warm(project: Project) -> Iterator[Project]:
    project.write(FILES)
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    yield project


def _shell(project: Project, line: str, env: dict[str, str] | None = None) -> Result:
    """Run ``line`` with /bin/sh in the project: ``PYTEST`` is the pytest command."""
    pytest_cmd = " ".join(command_pytest())
    return project.command(
        ["/bin/sh", "-c", line.replace("PYTEST", pytest_cmd)], env=env, timeout=120
    )


def _both(project: Project, line: str, env: dict[str, str] | None = None) -> tuple[Result, Result]:
    """(warm, cold) runs of ``line``; the warm one must have been served by the daemon."""
    before = daemon_runs(project)
    warm = _shell(project, line.replace("PYTEST", "PYTEST -p no:cacheprovider"), env)
    assert daemon_runs(project) == before + 1, f"not served by the daemon:\n{warm}"
    cold = _shell(project, line.replace("PYTEST", "PYTEST -p no:cacheprovider --no-daemon"), env)
    return warm, cold


def test_a_pytest_unconfigure_that_raises(warm: Project) -> None:
    hot, cold = _both(warm, "PYTEST -q tests/test_a.py", {"RAISE_UNCONFIGURE": "1"})
    assert cold.returncode == 1, str(cold)
    assert hot.returncode == cold.returncode, f"{hot}\n{cold}"
    assert hot.stderr.splitlines()[-1] == "RuntimeError: unconfigure failed", str(hot)
    assert hot.stderr.startswith("Traceback (most recent call last):"), str(hot)
    assert "pytest_fastcollect" not in hot.stderr, str(hot)


def test_stderr_closed(warm: Project, tmp_path: Path) -> None:
    out = tmp_path / "out"
    hot, cold = _both(warm, f"PYTEST -q tests/test_a.py >{out}.$$ 2>&-; echo $?; cat {out}.$$")
    assert hot.stdout == cold.stdout, f"{hot}\n{cold}"


def test_stdout_closed(warm: Project) -> None:
    hot, cold = _both(warm, "PYTEST -q tests/test_a.py >&-")
    assert hot.returncode == cold.returncode, f"{hot}\n{cold}"
    assert hot.stderr.splitlines()[-1] == cold.stderr.splitlines()[-1], f"{hot}\n{cold}"
    assert "pytest_fastcollect" not in hot.stderr, str(hot)


def test_stdin_closed(warm: Project) -> None:
    hot, cold = _both(warm, "PYTEST -q tests/test_a.py <&-")
    assert hot.returncode == cold.returncode == 0, f"{hot}\n{cold}"
    assert hot.stdout.splitlines()[-1].startswith("2 passed"), str(hot)


def test_a_test_that_closes_stdout_and_stderr_under_s(warm: Project) -> None:
    hot, cold = _both(warm, "PYTEST -s -q tests/test_a.py", {"CLOSE_FDS": "1"})
    assert cold.returncode == 1, str(cold)
    assert hot.returncode == cold.returncode, f"{hot}\n{cold}"
    assert hot.stdout == cold.stdout, f"{hot}\n{cold}"


def _interrupt_at_exit(project: Project, tmp_path: Path, cold: bool) -> Result:
    """A test leaves a thread that never ends; Ctrl-C while the interpreter waits for it."""
    marker = tmp_path / f"thread-started-{cold}"
    cmd = [*command_pytest(), *(["--no-daemon"] if cold else []), "-q", "tests/test_thread.py"]
    proc = subprocess.Popen(
        cmd,
        cwd=project.root,
        env={**project.env, "HANG_THREAD": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        head = ""
        while "passed" not in head:  # the summary, printed before the interpreter exits
            line = proc.stdout.readline()
            assert line, f"the run ended early: {head}{proc.communicate()}"
            head += line
        assert marker.exists()
        # From the summary to the wait for threads: the session's own teardown.
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        out = head + out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return Result(cmd, proc.returncode, out, err)


def test_ctrl_c_while_a_thread_that_never_ends_is_waited_for(warm: Project, tmp_path: Path) -> None:
    before = daemon_runs(warm)
    hot = _interrupt_at_exit(warm, tmp_path, cold=False)
    assert daemon_runs(warm) == before + 1
    cold = _interrupt_at_exit(warm, tmp_path, cold=True)
    assert hot.returncode == cold.returncode == 0, f"{hot}\n{cold}"
    # Python 3.13 prints a plain traceback where earlier versions said "Exception ignored".
    assert "KeyboardInterrupt" in cold.stderr and "threading" in cold.stderr, str(cold)
    assert hot.stderr == cold.stderr, f"{hot}\n{cold}"
