"""Daemon lifecycle with real daemons: start, second start, crashes, stale files, warm-up.

Every daemon lives in the test's private runtime directory and is stopped by
the ``project`` fixture's teardown. Waits are bounded polls on a condition.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (
    DEFAULT_INI,
    Project,
    command_pytest,
    files_of,
    log_text,
    make_project,
    our_processes,
    pid_alive,
    record_of,
    wait_until,
)

TWO_TESTS = {
    "tests/test_a.py": """
    def test_one():
        assert True

    def test_two():
        assert 1 + 1 == 2
"""
}


def started(project: Project, *args: str) -> dict[str, object]:
    result = project.start(*args)
    assert result.returncode == 0, str(result)
    record = record_of(project)
    assert record is not None, f"no daemon record after a successful start\n{result}"
    return record


def assert_no_daemon(project: Project) -> None:
    files = files_of(project)
    left = [p.name for p in (files.socket, files.state) if p.exists()]
    assert not left, f"daemon files left in the runtime dir: {left}"
    procs = our_processes(project.root)
    assert not procs, f"daemon processes still running: {[p.cmdline() for p in procs]}"


# --- start ------------------------------------------------------------------------------------


def test_start_prints_pid_socket_log_and_warmup(project: Project) -> None:
    project.write(TWO_TESTS)
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    record = record_of(project)
    assert record is not None
    files = files_of(project)
    out = result.stdout
    assert f"daemon started for {project.root}" in out
    assert re.search(rf"^\s+pid:\s+{record['pid']}$", out, re.MULTILINE), out
    assert re.search(rf"^\s+socket:\s+{re.escape(str(files.socket))}$", out, re.MULTILINE), out
    assert re.search(rf"^\s+log:\s+{re.escape(str(files.log))}$", out, re.MULTILINE), out
    assert re.search(r"Pre-import complete: 1/1 modules in \d+\.\d\ds$", out, re.MULTILINE), out
    supervisor = [
        p for p in our_processes(project.root) if "pytest_fastcollect.supervisor" in p.cmdline()
    ]
    warm = [
        p for p in our_processes(project.root) if "pytest_fastcollect.supervisor" not in p.cmdline()
    ]
    assert [p.pid for p in supervisor] == [record["pid"]]
    # The base process (a child of the supervisor) and the project layer it forked.
    (base,) = [p for p in warm if p.ppid() == record["pid"]]
    (layer,) = [p for p in warm if p.ppid() == base.pid]
    assert layer.pid == record["warm_pid"]
    assert len(warm) == 2


def test_second_start_says_so_and_starts_nothing(project: Project) -> None:
    project.write(TWO_TESTS)
    record = started(project, "tests")
    before = sorted(p.pid for p in our_processes(project.root))
    assert len(before) == 3, before  # supervisor, base process, project layer

    again = project.start("tests")
    assert again.returncode == 0, str(again)
    assert "already running" in again.stdout, str(again)
    assert f"pid {record['pid']}" in again.stdout, str(again)
    assert "nothing started" in again.stdout, str(again)
    assert "daemon started" not in again.stdout
    assert sorted(p.pid for p in our_processes(project.root)) == before
    assert record_of(project) == record
    assert project.status()["pid"] == record["pid"]


def test_two_starts_at_once_make_one_daemon(project: Project) -> None:
    project.write(TWO_TESTS)
    cmd = [*command_pytest(), "--daemon-start", "tests"]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=project.root,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [proc.communicate(timeout=120) for proc in procs]
    record = record_of(project)
    assert record is not None
    project.started_pids.append(int(record["pid"]))
    report = "\n".join(
        f"[exit {p.returncode}]\n{o}\n{e}" for p, (o, e) in zip(procs, outs, strict=True)
    )
    assert [p.returncode for p in procs] == [0, 0], report
    assert sum("daemon started" in o for o, _ in outs) == 1, report
    assert sum("already running" in o + e for o, e in outs) == 1, report
    supervisors = [
        p for p in our_processes(project.root) if "pytest_fastcollect.supervisor" in p.cmdline()
    ]
    assert [p.pid for p in supervisors] == [record["pid"]], report


def test_start_through_a_pipe_returns_promptly(project: Project) -> None:
    project.write(TWO_TESTS)
    script = (
        f"{shlex.join(command_pytest())} --daemon-start tests/ | cat; "
        'echo "exit=${PIPESTATUS[0]}"'
    )
    begun = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", "-c", script],
            check=False,
            cwd=project.root,
            env=project.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            "`pytest --daemon-start tests/ | cat` did not return within 60 s: the daemon "
            f"keeps the pipe open\n{exc.stdout!r}"
        )
    elapsed = time.monotonic() - begun
    record = record_of(project)
    if record is not None:
        project.started_pids.append(int(record["pid"]))
    assert "exit=0" in proc.stdout, proc.stdout + proc.stderr
    assert "daemon started" in proc.stdout
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert record is not None and pid_alive(int(record["pid"]))
    assert project.status()["state"] == "ready"


def test_daemon_keeps_none_of_the_callers_file_descriptors(project: Project) -> None:
    project.write(TWO_TESTS)
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [*command_pytest(), "--daemon-start", "tests"],
            cwd=project.root,
            env=project.env,
            pass_fds=(w,),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        os.close(w)
        out, err = proc.communicate(timeout=120)
        record = record_of(project)
        assert proc.returncode == 0, out + err
        assert record is not None
        project.started_pids.append(int(record["pid"]))
        inode = os.fstat(r).st_ino
        for pid in (int(record["pid"]), int(record["warm_pid"])):
            links = []
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
            assert f"pipe:[{inode}]" not in links, f"pid {pid} kept the caller's fd: {links}"
        # With no writer left anywhere, the read end is at end-of-file.
        readable, _, _ = select.select([r], [], [], 5)
        assert readable and os.read(r, 1) == b"", "someone still holds the caller's inherited fd"
    finally:
        os.close(r)


@pytest.mark.parametrize("case", ["missing", "symlink_outside", "rootdir_outside"])
def test_bad_start_path_is_a_one_line_error_and_no_daemon(
    project: Project, tmp_path: Path, case: str
) -> None:
    project.write(TWO_TESTS)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tests").mkdir(parents=True)
    (elsewhere / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    if case == "missing":
        args = ["tests/nope"]
        words = "tests/nope does not exist"
    elif case == "symlink_outside":
        (project.root / "linked").symlink_to(elsewhere / "tests")
        args = ["linked"]
        words = f"linked is outside the project root {project.root}"
    else:
        args = ["--rootdir", str(project.root), str(elsewhere / "tests")]
        words = f"is outside the project root {project.root}"
    result = project.pytest("--daemon-start", *args)
    assert result.returncode == 4, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("pytest-fastcollect: error: "), str(result)
    assert words in lines[0], str(result)
    assert_no_daemon(project)


# --- crashes ----------------------------------------------------------------------------------


def kill_supervisor(project: Project) -> dict[str, object]:
    record = record_of(project)
    assert record is not None
    os.kill(int(record["pid"]), signal.SIGKILL)
    wait_until(lambda: not pid_alive(int(record["pid"])), what="the supervisor to die")
    # The warm process notices its control socket closing and exits on its own.
    wait_until(
        lambda: not pid_alive(int(record["warm_pid"])), what="the orphaned warm process to exit"
    )
    files = files_of(project)
    assert files.socket.exists(), "the test needs the dead daemon's socket file to be left behind"
    return record


def test_kill_supervisor_then_status_stop_start(project: Project) -> None:
    project.write(TWO_TESTS)
    started(project, "tests")
    old = kill_supervisor(project)

    status = project.pytest("--daemon-status")
    assert status.returncode == 6, str(status)
    assert status.stderr.strip() == (
        f"pytest-fastcollect: error: no daemon running for {project.root} "
        "(removed its stale files); start one with: pytest --daemon-start"
    )
    files = files_of(project)
    assert not files.socket.exists() and not files.state.exists() and not files.lock.exists()

    stop = project.stop()
    assert stop.returncode == 6, str(stop)
    assert "no daemon running" in stop.stderr

    new = started(project, "tests")
    assert new["pid"] != old["pid"]
    assert project.status()["state"] == "ready"
    run = project.pytest("-q", "tests")
    assert run.returncode == 0 and "2 passed" in run.stdout, str(run)


def test_kill_supervisor_then_stop_cleans_the_stale_files(project: Project) -> None:
    project.write(TWO_TESTS)
    started(project, "tests")
    kill_supervisor(project)
    stop = project.stop()
    assert stop.returncode == 6, str(stop)
    assert "(removed its stale files)" in stop.stderr, str(stop)
    assert_no_daemon(project)


def test_kill_supervisor_then_ordinary_run_runs_cold(project: Project) -> None:
    project.write(TWO_TESTS)
    started(project, "tests")
    kill_supervisor(project)
    run = project.pytest("-q", "tests")
    assert run.returncode == 0, str(run)
    assert "2 passed" in run.stdout
    assert "stale daemon files" in run.stderr, str(run)
    assert not files_of(project).socket.exists()


def test_kill_warm_process_is_replaced_automatically(project: Project) -> None:
    project.write(TWO_TESTS)
    record = started(project, "tests")
    old_warm = int(record["warm_pid"])
    os.kill(old_warm, signal.SIGKILL)

    def replaced() -> dict[str, object] | None:
        status = project.status()
        warm = status["warm_pid"]
        ok = (
            status["state"] == "ready"
            and warm not in (None, old_warm)
            and status["reload"]["replacements"].get("crash") == 1
        )  # type: ignore[index, union-attr]
        return status if ok else None

    status = wait_until(replaced, timeout=60, what="a new warm process replacing the killed one")
    new_warm = int(status["warm_pid"])  # type: ignore[call-overload]
    assert status["pid"] == record["pid"], "the supervisor must survive its warm process"
    assert not pid_alive(old_warm)
    assert pid_alive(new_warm)
    assert int(status["generation"]) > 1  # type: ignore[call-overload]
    assert f"Warm process {old_warm} died" in log_text(project)
    assert "Replacing warm process: the warm process died" in log_text(project)

    health = project.pytest("--daemon-health")
    assert health.returncode == 0, str(health)
    run = project.pytest("-q", "tests")
    assert run.returncode == 0 and "2 passed" in run.stdout, str(run)
    assert project.status()["metrics"]["runs"] == 1  # type: ignore[index]

    stop = project.stop()
    assert stop.returncode == 0, str(stop)
    wait_until(lambda: not pid_alive(new_warm), what="the new warm process to exit with its daemon")
    assert_no_daemon(project)

    again = started(project, "tests")
    assert again["pid"] != record["pid"]


# --- stale files ------------------------------------------------------------------------------


def plant_stale_files(project: Project) -> None:
    """A socket file nobody listens on, and a free lock: what a daemon killed long ago leaves."""
    files = files_of(project)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(files.socket))
    sock.close()
    files.lock.touch()
    assert stat.S_ISSOCK(os.lstat(files.socket).st_mode)


@pytest.mark.parametrize("verb", ["--daemon-stop", "--daemon-status", "--daemon-health"])
def test_stale_socket_is_cleaned_and_reported_as_no_daemon(project: Project, verb: str) -> None:
    plant_stale_files(project)
    result = project.pytest(verb)
    assert result.returncode == 6, str(result)
    assert result.stderr.strip() == (
        f"pytest-fastcollect: error: no daemon running for {project.root} "
        "(removed its stale files); start one with: pytest --daemon-start"
    )
    files = files_of(project)
    assert not files.socket.exists() and not files.lock.exists()


def test_start_over_a_stale_socket(project: Project) -> None:
    project.write(TWO_TESTS)
    plant_stale_files(project)
    started(project, "tests")
    assert project.status()["state"] == "ready"


# --- warm-up ----------------------------------------------------------------------------------


def test_import_failures_are_reported_logged_and_do_not_stop_the_daemon(project: Project) -> None:
    project.write(
        {
            "tests/test_ok.py": "def test_ok():\n    pass\n",
            "tests/test_syntax.py": "def test_broken(:\n    pass\n",
            "tests/test_missing.py": (
                "import fastcollect_missing_dependency_xyz\n\ndef test_m():\n    pass\n"
            ),
        }
    )
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    out = result.stdout
    assert re.search(r"Pre-import complete: 1/3 modules in \d+\.\d\ds", out), out
    assert re.search(r"Failed to import tests/test_syntax\.py: SyntaxError", out), out
    assert (
        "Failed to import tests/test_missing.py: ModuleNotFoundError: "
        "No module named 'fastcollect_missing_dependency_xyz'"
    ) in out, out

    log = log_text(project)
    syntax = project.root / "tests" / "test_syntax.py"
    missing = project.root / "tests" / "test_missing.py"
    assert re.search(rf"Failed to import {re.escape(str(syntax))}: SyntaxError", log), log
    assert re.search(
        rf"Failed to import {re.escape(str(missing))}: ModuleNotFoundError: "
        r"No module named 'fastcollect_missing_dependency_xyz'",
        log,
    ), log
    assert "Pre-import complete: 1/3 modules in" in log

    status = project.status()
    assert status["state"] == "ready"
    failures = {f["path"]: f["error"] for f in status["warmup"]["failures"]}  # type: ignore[index]
    assert set(failures) == {str(syntax), str(missing)}
    assert status["warmup"]["imported"] == 1  # type: ignore[index]
    run = project.pytest("-q", "tests/test_ok.py")
    assert run.returncode == 0 and "1 passed" in run.stdout, str(run)


def test_warm_up_in_a_project_that_turns_warnings_into_errors(project: Project) -> None:
    project.write({"pytest.ini": DEFAULT_INI + "filterwarnings =\n    error\n", **TWO_TESTS})
    cold = project.cold("-q", "tests")
    assert cold.returncode == 0, str(cold)
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    assert "Pre-import complete: 1/1 modules" in result.stdout
    assert "Failed to import" not in result.stdout
    assert "PytestAssertRewriteWarning" not in log_text(project)
    status = project.status()
    assert status["state"] == "ready" and status["warm_pid"]
    run = project.pytest("-q", "tests")
    assert run.returncode == 0 and "2 passed" in run.stdout, str(run)
    assert project.status()["metrics"]["runs"] == 1  # type: ignore[index]


CONFTEST_SPY = """
import os

_marker_dir = os.environ.get("FC_CONFTEST_MARKER_DIR")
if _marker_dir:
    open(os.path.join(_marker_dir, f"imported-by-{os.getpid()}"), "w").close()
if os.environ.get("FC_CONFTEST_RAISE"):
    raise RuntimeError("the project's conftest was imported")
"""


def test_verbs_do_not_import_the_projects_conftest(project: Project, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    project.write({"conftest.py": CONFTEST_SPY, **TWO_TESTS})
    spy = {"FC_CONFTEST_MARKER_DIR": str(markers)}

    def verb(*args: str, code: int, env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            [*command_pytest(), *args],
            cwd=project.root,
            env={**project.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == code, f"{args}: [exit {proc.returncode}]\n{out}\n{err}"
        assert not (markers / f"imported-by-{proc.pid}").exists(), (
            f"{args} imported the project's conftest"
        )

    raising = {**spy, "FC_CONFTEST_RAISE": "1"}
    verb("--daemon-status", code=6, env=raising)
    verb("--daemon-stop", code=6, env=raising)

    verb("--daemon-start", "tests", code=0, env=spy)
    record = record_of(project)
    assert record is not None
    project.started_pids.append(int(record["pid"]))
    # The control: the warm process did import the conftest, so the spy works.
    assert (markers / f"imported-by-{record['warm_pid']}").exists()

    verb("--daemon-status", code=0, env=raising)
    verb("--daemon-status", "--daemon-json", code=0, env=raising)
    verb("--daemon-health", code=0, env=raising)
    verb("--daemon-health", "--daemon-json", code=0, env=raising)
    verb("--daemon-start", "tests", code=0, env=raising)
    verb("--daemon-reload", code=0, env=raising)
    verb("--daemon-restart", code=0, env=spy)
    record = record_of(project)
    assert record is not None
    project.started_pids.append(int(record["pid"]))
    verb("--daemon-stop", code=0, env=raising)
    assert_no_daemon(project)


def test_log_has_the_lines_the_seed_document_greps_for(project: Project) -> None:
    project.write(TWO_TESTS)
    started(project, "tests")
    status = project.pytest("--daemon-status", "--daemon-json")
    assert status.returncode == 0, str(status)
    rid = json.loads(status.stdout)["request_id"]
    assert rid

    human = project.pytest("--daemon-status")
    log_path = files_of(project).log
    assert re.search(rf"^\s+log:\s+{re.escape(str(log_path))}$", human.stdout, re.MULTILINE), str(
        human
    )
    assert log_path.exists()

    log = log_text(project)
    assert re.search(r"Pre-import complete: 1/1 modules in \d+\.\d\ds$", log, re.MULTILINE), log
    assert re.search(rf"Processing request \[{rid}\] status$", log, re.MULTILINE), log
    assert re.search(rf"Request \[{rid}\] completed in \d+\.\d+s: success$", log, re.MULTILINE), log
    # `grep "Request.*completed"` as the seed document shows.
    assert any(re.search(r"Request.*completed", line) for line in log.splitlines())


def test_two_projects_side_by_side(project: Project, tmp_path: Path) -> None:
    project.write(TWO_TESTS)
    other_root = tmp_path / "other"
    other_root.mkdir()
    other = make_project(other_root)
    # Both daemons share one runtime directory, as two projects of one user do.
    other.runtime.rmdir()
    other.runtime = project.runtime
    other.env = {**project.env}
    other.write({"pytest.ini": DEFAULT_INI, "tests/test_b.py": "def test_b():\n    pass\n"})
    try:
        a = started(project, "tests")
        b = started(other, "tests")
        assert a["pid"] != b["pid"]
        assert a["socket_path"] != b["socket_path"]
        assert a["log_path"] != b["log_path"]
        sa, sb = project.status(), other.status()
        assert (sa["root"], sb["root"]) == (str(project.root), str(other.root))
        assert (sa["pid"], sb["pid"]) == (a["pid"], b["pid"])
        assert sa["socket_path"] != sb["socket_path"]

        ra = project.pytest("-q", "tests")
        rb = other.pytest("-q", "tests")
        assert "2 passed" in ra.stdout and "1 passed" in rb.stdout, f"{ra}\n{rb}"
        assert project.status()["metrics"]["runs"] == 1  # type: ignore[index]
        assert other.status()["metrics"]["runs"] == 1  # type: ignore[index]

        assert project.stop().returncode == 0
        assert other.status()["pid"] == b["pid"], (
            "stopping one project's daemon must leave the other"
        )
        assert other.stop().returncode == 0
    finally:
        other.cleanup()
