"""The daemon's files under attack, and its processes by name (issues 10.2, 10.9, 10.10, 11.3, 11.4).

Files deleted under a live daemon: a removed socket is made again and the
verbs agree; a deleted runtime directory makes the daemon exit cleanly,
removing only files that are provably its own; a start never puts a second
daemon beside one found by process. Start-up failures say their cause in
one line and leave nothing behind. ``ps`` names every process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_fastcollect import paths
from pytest_fastcollect.paths import project_files
from pytest_fastcollect.supervisor.runtime import Health, Runtime
from pytest_fastcollect.wire import protocol as p

from helpers import (
    Project,
    command_pytest,
    files_of,
    log_text,
    pid_alive,
    record_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

TESTS = {
    "tests/test_a.py": "def test_a():\n    pass\n",
    "tests/test_barrier.py": """\
        import os
        import sys
        import time


        def test_barrier():
            if not os.environ.get("BARRIER"):
                return
            # Written aside and renamed: the test reads it as soon as it exists.
            with open(os.environ["BARRIER"] + "/seen.tmp", "w") as fh:
                fh.write(f"{os.getpid()}\\n{sys.executable}\\n{sys.argv!r}\\n")
            os.rename(os.environ["BARRIER"] + "/seen.tmp", os.environ["BARRIER"] + "/seen")
            deadline = time.monotonic() + 60
            while not os.path.exists(os.environ["BARRIER"] + "/go"):
                assert time.monotonic() < deadline
                time.sleep(0.01)
    """,
}


def _started(project: Project) -> dict[str, object]:
    project.write(TESTS)
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    record = record_of(project)
    assert record is not None
    return record


def _args_of(pid: int) -> str:
    return subprocess.run(
        ["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
    ).stdout.strip()


def _pgrep(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return {int(x) for x in out.stdout.split()}


# --- the socket removed by hand (the seed document's "remove stale socket") ----------------


def test_a_removed_socket_is_made_again_and_the_verbs_agree(project: Project) -> None:
    record = _started(project)
    files = files_of(project)
    files.socket.unlink()
    run = project.pytest("-q", "tests/test_a.py")
    assert run.returncode == 0 and "pytest-fastcollect" not in run.stderr, str(run)
    status = project.pytest("--daemon-status")
    assert status.returncode == 0, str(status)
    assert f"pid:            {record['pid']}" in status.stdout, str(status)
    start = project.start("tests")
    assert start.returncode == 0 and f"(pid {record['pid']})" in start.stdout, str(start)
    run = project.pytest("-q", "tests/test_a.py")
    assert run.returncode == 0 and "pytest-fastcollect" not in run.stderr, str(run)
    assert project.status()["metrics"]["runs"] == 2  # type: ignore[index]
    assert "was removed; listening on a new one" in log_text(project)
    stop = project.stop()
    assert stop.returncode == 0 and str(record["pid"]) in stop.stdout, str(stop)
    wait_until(lambda: not pid_alive(int(record["pid"])), what="the daemon to exit")  # type: ignore[call-overload]


# --- the runtime directory deleted ----------------------------------------------------------


def test_a_deleted_runtime_dir_makes_the_daemon_exit(project: Project) -> None:
    record = _started(project)
    pids = [int(record["pid"]), int(record["warm_pid"])]  # type: ignore[call-overload]
    shutil.rmtree(project.runtime)
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), timeout=10, what=f"pid {pid} to exit")
    stop = project.stop()
    assert stop.returncode == 6, str(stop)
    # A new daemon starts, alone, and keeps its files.
    project.runtime.mkdir(mode=0o700)
    new = _started(project)
    assert new["pid"] not in pids
    files = files_of(project)
    assert files.socket.exists() and files.lock.exists() and files.state.exists()
    assert project.status()["pid"] == new["pid"]


def test_start_refuses_beside_a_daemon_found_by_process(project: Project) -> None:
    """A supervisor that cannot notice (stopped here) that its files are gone: a start
    must not put a second daemon beside it; stop finds it by its command line."""
    record = _started(project)
    sup = int(record["pid"])  # type: ignore[call-overload]
    os.kill(sup, signal.SIGSTOP)
    try:
        shutil.rmtree(project.runtime)
        project.runtime.mkdir(mode=0o700)
        start = project.start("tests")
        assert start.returncode == 8, str(start)
        assert f"(pid {sup}) without its files" in start.stderr, str(start)
        assert not files_of(project).lock.exists()
        stop = project.stop()
        assert stop.returncode == 0, str(stop)
        assert (
            f"stopped the daemon (pid {sup})" in stop.stdout and "without its files" in stop.stdout
        )
    finally:
        if pid_alive(sup):
            os.kill(sup, signal.SIGCONT)
    wait_until(lambda: not pid_alive(sup), what="the stopped supervisor to be gone")
    again = _started(project)
    assert again["pid"] != sup


def test_release_removes_only_what_is_provably_its_own(tmp_path: Path) -> None:
    """The first daemon's cleanup, after its directory was deleted and a second daemon
    made new files under the same names, leaves the second daemon's files alone."""
    directory = tmp_path / "rt"
    directory.mkdir(mode=0o700)
    files = project_files(tmp_path / "proj", directory)
    first = Runtime(files)
    first.acquire()
    first_sock = first.bind(16)
    first.write_record(
        p.DaemonRecord(
            pid=os.getpid(), create_time=0, root="/", socket_path="", log_path="", version="0"
        )
    )
    files.cache.mkdir()
    assert first.check() is Health.OK
    shutil.rmtree(directory)
    assert first.check() is Health.LOST
    directory.mkdir(mode=0o700)
    second = Runtime(files)
    second.acquire()
    second_sock = second.bind(16)
    files.state.write_text('{"pid": 1}')  # another daemon's record
    files.cache.mkdir()
    first.release()
    assert files.socket.exists() and files.lock.exists() and files.state.exists()
    assert files.cache.is_dir()
    assert second.check() is Health.OK
    # The socket removed by hand is told apart from a lost lock.
    files.socket.unlink()
    assert second.check() is Health.SOCKET_GONE
    first_sock.close()
    second_sock.close()
    second.release()
    assert not files.lock.exists()


# --- crashes and replacements ---------------------------------------------------------------


def test_a_crashed_daemon_leaves_no_cache_behind_its_stop(project: Project) -> None:
    record = _started(project)
    files = files_of(project)
    assert files.cache.is_dir()
    os.kill(int(record["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    wait_until(lambda: not pid_alive(int(record["warm_pid"])), what="the warm process to exit")  # type: ignore[call-overload]
    stop = project.stop()
    assert stop.returncode == 6 and "removed its stale files" in stop.stderr, str(stop)
    assert sorted(x.name for x in project.runtime.iterdir() if not x.name.endswith(".log")) == []


def test_the_record_names_the_warm_process_after_a_replacement(project: Project) -> None:
    record = _started(project)
    reload = project.pytest("--daemon-reload")
    assert reload.returncode == 0, str(reload)
    warm = project.status()["warm_pid"]
    assert warm != record["warm_pid"]
    assert record_of(project)["warm_pid"] == warm  # type: ignore[index]


# --- start-up failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocked", "cause"),
    [("log", "cannot write the log"), ("json.tmp", "cannot write the record")],
)
def test_a_start_up_failure_names_its_cause_and_leaves_nothing(
    project: Project, blocked: str, cause: str
) -> None:
    project.write(TESTS)
    files = files_of(project)
    # A directory where the file must go: as unwritable as a full disk or an immutable file.
    (project.runtime / f"{files.key}.{blocked}").mkdir()
    result = project.start("tests")
    assert result.returncode == 8, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and cause in lines[0] and "Is a directory" in lines[0], str(result)
    assert "see its log" not in result.stderr
    # The log is kept, as after any stop; no lock, socket, record or cache is left.
    left = {x.name for x in project.runtime.iterdir()} - {f"{files.key}.log"}
    assert left <= {f"{files.key}.{blocked}"}, left


# --- names in ps ------------------------------------------------------------------------------


def test_ps_and_pgrep_name_every_process(project: Project, tmp_path: Path) -> None:
    record = _started(project)
    sup, warm = int(record["pid"]), int(record["warm_pid"])  # type: ignore[call-overload]
    root = str(project.root)
    assert f"pytest-fastcollect supervisor for {root}" in _args_of(sup)
    assert f"pytest-fastcollect warm process for {root}" in _args_of(warm)
    roles = {x["role"]: x["pid"] for x in project.status()["processes"]}  # type: ignore[attr-defined]
    base = int(roles["base"])
    assert f"pytest-fastcollect warm base process for {root}" in _args_of(base)
    assert {sup, warm, base} <= _pgrep("pytest-fastcollect")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    run = subprocess.Popen(
        [*command_pytest(), "-q", "tests/test_barrier.py"],
        cwd=project.root,
        env={**project.env, "BARRIER": str(barrier)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: (barrier / "seen").exists() or run.poll() is not None, timeout=60)
        worker_pid, executable, argv = (barrier / "seen").read_text().splitlines()
        worker = int(worker_pid)
        assert f"pytest-fastcollect run worker for {root}: " in _args_of(worker)
        assert "tests/test_barrier.py" in _args_of(worker)
        assert worker in _pgrep(f"run worker for {root}")
        # What the run itself sees is unchanged.
        assert executable == sys.executable or os.path.realpath(executable) == os.path.realpath(
            sys.executable
        )
        assert argv.endswith("'-q', 'tests/test_barrier.py']"), argv
    finally:
        (barrier / "go").touch()
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, out + err
    assert project.status()["metrics"]["runs"] == 1  # type: ignore[index]


@pytest.mark.parametrize("data", [b"", b"/home/user/project", "/tmp/ünï".encode()])
def test_the_project_key_is_sha256_without_openssl(data: bytes) -> None:
    assert paths.sha256_hex(data) == hashlib.sha256(data).hexdigest()
    code = (
        "import sys; from pytest_fastcollect import paths; paths.project_key('/tmp'); "
        "print('_hashlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out
