"""The public API (``pytest_fastcollect.daemon_client``) against real daemons.

The seed document's Python examples are copied here verbatim and run in a
subprocess whose working directory is the project root, exactly as a user
would paste them; only the placeholder ``/path/to/your/project`` is replaced
by the project's path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_fastcollect.daemon_client import (
    DaemonClient,
    DaemonConnectionError,
    DaemonError,
    get_socket_path,
    stop_daemon,
)

from helpers import Project, files_of, our_processes, pid_alive, record_of, wait_until

# shared/seed/daemon-troubleshooting.md, "Debugging > Manual Testing" (verbatim).
SEED_MANUAL_TESTING = """
from pytest_fastcollect.daemon_client import DaemonClient, get_socket_path

# Get socket path for your project
socket_path = get_socket_path("/path/to/your/project")

# Create client
client = DaemonClient(socket_path)

# Test connection
if client.is_daemon_running():
    print("Daemon is running!")

    # Get status
    status = client.get_status()
    print(f"Status: {status}")

    # Get health
    health = client.get_health()
    print(f"Health: {health}")
else:
    print("Daemon is not running")
"""

# "Troubleshooting Performance > Check Cache Hit Rate" (verbatim; uses `client` from above).
SEED_CACHE_HIT_RATE = """
status = client.get_status()
cached = status['cached_modules']
print(f"Cached modules: {cached}")
"""

# "Debugging > Enable Debug Logging" (verbatim).
SEED_DEBUG_LOGGING = """
# In your test setup or conftest.py
import logging
logging.getLogger('pytest_fastcollect.daemon').setLevel(logging.DEBUG)
logging.getLogger('pytest_fastcollect.daemon_client').setLevel(logging.DEBUG)
"""

# "Advanced Topics > Programmatic Usage" (verbatim).
SEED_PROGRAMMATIC_USAGE = """
from pytest_fastcollect.daemon_client import (
    DaemonClient,
    get_socket_path,
    stop_daemon
)

# Get socket for current project
socket_path = get_socket_path(".")

# Create client
client = DaemonClient(socket_path)

# Check if running
if not client.is_daemon_running():
    print("Daemon not running, start it with: pytest --daemon-start tests/")
    exit(1)

# Request collection
response = client.collect(".", filters={"-k": "test_user"})
print(f"Collection took {response['collection_time']}s")

# Get metrics
status = client.get_status()
metrics = status['metrics']
print(f"Total requests: {metrics['total_requests']}")
print(f"Success rate: {metrics['successful_requests'] / metrics['total_requests'] * 100}%")

# Stop when done
stop_daemon(socket_path)
"""

PROJECT_FILES = {
    "tests/test_accounts.py": """
        import pytest

        def test_user_login():
            pass

        @pytest.mark.slow
        def test_user_export():
            pass

        def test_admin_login():
            pass
    """,
    "tests/test_orders.py": """
        import pytest

        @pytest.mark.parametrize("n", [1, 2])
        def test_order_total(n):
            assert n

        class TestRefund:
            def test_user_refund(self):
                pass
    """,
}


def started(project: Project) -> dict[str, Any]:
    project.write(PROJECT_FILES)
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    record = record_of(project)
    assert record is not None
    return record


def run_snippet(project: Project, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def cold_ids(project: Project, *args: str) -> list[str]:
    result = project.cold("--collect-only", "-q", *args)
    assert result.returncode in (0, 5), str(result)
    return [line for line in result.stdout.splitlines() if "::" in line]


# --- the seed document's examples -------------------------------------------------------------


def test_seed_manual_testing_example(project: Project) -> None:
    started(project)
    code = (
        SEED_MANUAL_TESTING.replace("/path/to/your/project", str(project.root))
        + SEED_CACHE_HIT_RATE
        + SEED_DEBUG_LOGGING
    )
    result = run_snippet(project, code)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Daemon is running!", result.stdout
    assert lines[1].startswith("Status: {") and "'metrics': {" in lines[1], lines[1]
    assert f"'root': '{project.root}'" in lines[1]
    assert lines[2].startswith("Health: {") and "'status': 'healthy'" in lines[2], lines[2]
    match = re.fullmatch(r"Cached modules: (\d+)", lines[3])
    assert match, lines[3]
    assert int(match.group(1)) == project.status()["cached_modules"]
    assert int(match.group(1)) > 100, "the warm process has pytest and the test modules imported"
    assert len(lines) == 4, result.stdout


def test_seed_programmatic_usage_example(project: Project) -> None:
    record = started(project)
    result = run_snippet(project, SEED_PROGRAMMATIC_USAGE)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"Collection took \d+\.\d+(e-\d+)?s", lines[0]), lines
    # is_daemon_running() and collect() were the two requests before get_status().
    assert lines[1:] == ["Total requests: 2", "Success rate: 100.0%"], lines
    # stop_daemon returned only once the daemon had exited and cleaned up.
    assert not pid_alive(int(record["pid"]))
    wait_until(lambda: not our_processes(project.root), what="the warm process to exit")
    files = files_of(project)
    assert not files.socket.exists() and not files.state.exists()


def test_seed_programmatic_usage_example_without_a_daemon(project: Project) -> None:
    project.write(PROJECT_FILES)
    result = run_snippet(project, SEED_PROGRAMMATIC_USAGE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "Daemon not running, start it with: pytest --daemon-start tests/\n"
    assert result.stderr == ""


def test_seed_manual_testing_example_without_a_daemon(project: Project) -> None:
    result = run_snippet(
        project, SEED_MANUAL_TESTING.replace("/path/to/your/project", str(project.root))
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "Daemon is not running\n"


# --- what each call returns -------------------------------------------------------------------


@pytest.fixture
def api_env(project: Project) -> Any:
    """Point this process's API calls at the project's private runtime dir."""
    saved = os.environ.get("PYTEST_FASTCOLLECT_RUNTIME_DIR")
    os.environ["PYTEST_FASTCOLLECT_RUNTIME_DIR"] = str(project.runtime)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PYTEST_FASTCOLLECT_RUNTIME_DIR"]
        else:
            os.environ["PYTEST_FASTCOLLECT_RUNTIME_DIR"] = saved


def test_get_socket_path(project: Project, api_env: None, tmp_path: Path) -> None:
    expected = str(files_of(project).socket)
    assert get_socket_path(project.root) == expected
    assert get_socket_path(str(project.root) + "/") == expected
    link = tmp_path / "link-to-proj"
    link.symlink_to(project.root)
    assert get_socket_path(link) == expected, "a symlinked root is the same project"
    cwd = os.getcwd()
    os.chdir(project.root)
    try:
        assert get_socket_path(".") == expected
    finally:
        os.chdir(cwd)
    assert len(os.fsencode(expected)) < 100


def test_client_calls_return_what_the_docs_say(project: Project, api_env: None) -> None:
    record = started(project)
    client = DaemonClient(get_socket_path(project.root))
    assert client.is_daemon_running() is True

    status = client.get_status()
    for key in (
        "pid",
        "state",
        "uptime",
        "root",
        "socket_path",
        "log_path",
        "versions",
        "generation",
        "warm_pid",
        "cached_modules",
        "metrics",
        "warmup",
        "reload",
        "processes",
        "limits",
    ):
        assert key in status, key
    assert status["pid"] == record["pid"]
    assert status["root"] == str(project.root)
    assert status["log_path"] == str(files_of(project).log)
    assert status["state"] == "ready"
    for key in ("total_requests", "successful_requests", "failed_requests", "error_rate"):
        assert key in status["metrics"], key
    roles = {proc["role"]: proc for proc in status["processes"]}
    # The base process (pytest and the libraries, no project code) is listed too.
    assert set(roles) == {"supervisor", "base", "warm"}
    assert roles["warm"]["pid"] == status["warm_pid"] == record["warm_pid"]
    # Real figures from psutil, not placeholders.
    # Measured while serving this request: its connection thread is one more than now.
    threads_now = psutil.Process(int(record["pid"])).num_threads()
    assert threads_now <= roles["supervisor"]["threads"] <= threads_now + 2, (roles, threads_now)
    assert roles["supervisor"]["rss_bytes"] > 10 * 1024 * 1024
    # No Python thread and no native pool in this project: one OS thread.
    assert roles["warm"]["threads"] == 1, "the warm process must stay single-threaded"
    assert roles["supervisor"]["children"] >= 1

    health = client.get_health()
    assert health["status"] == "healthy"
    assert health["pid"] == record["pid"]
    for name, check in health["checks"].items():
        assert set(check) == {"ok", "value", "display", "detail", "severity"}, name
        assert check["ok"] is True, (name, check)
    assert {"socket_alive", "running", "request_error_rate"} <= set(health["checks"])

    collected = client.collect(project.root, filters={"-k": "login"})
    assert set(collected) >= {
        "node_ids",
        "count",
        "errors",
        "exit_code",
        "collection_time",
        "generation",
    }
    assert collected["node_ids"] == cold_ids(project, "-k", "login")
    assert collected["count"] == 2

    reloaded = client.reload()
    assert reloaded["generation"] > status["generation"]
    assert reloaded["duration_ms"] > 0
    after = client.get_status()
    assert after["warm_pid"] != record["warm_pid"]
    assert after["reload"]["replacements"].get("manual") == 1

    stopped = client.stop()
    assert stopped["pid"] == record["pid"]
    wait_until(lambda: not pid_alive(int(record["pid"])), what="the daemon to exit after stop()")
    assert client.is_daemon_running() is False
    assert stop_daemon(get_socket_path(project.root)) is False


COLLECT_FILTERS: list[dict[str, Any]] = [
    {"-k": "test_user"},
    {"-k": "login and not admin"},
    {"-m": "slow"},
    {"-m": "not slow", "-k": "user"},
    {"paths": ["tests/test_orders.py"]},
    {"paths": ["tests/test_orders.py::TestRefund"]},
    {"-k": "nothing_matches_this"},
    {},
]


def test_collect_agrees_with_a_cold_collect_only(project: Project, api_env: None) -> None:
    project.write(
        {
            "pytest.ini": "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
            "markers =\n    slow: slow tests\n"
        }
    )
    started(project)
    client = DaemonClient(get_socket_path(project.root))
    for filters in COLLECT_FILTERS:
        args: list[str] = []
        if "-k" in filters:
            args += ["-k", filters["-k"]]
        if "-m" in filters:
            args += ["-m", filters["-m"]]
        args += filters.get("paths", [])
        response = client.collect(project.root, filters=filters)
        expected = cold_ids(project, *args)
        assert response["node_ids"] == expected, filters
        assert response["count"] == len(expected), filters
    assert client.get_status()["metrics"]["collects"] == len(COLLECT_FILTERS)


def test_collect_reports_an_import_error_as_pytest_does(project: Project, api_env: None) -> None:
    started(project)
    project.write({"tests/test_broken.py": "def test_broken(:\n    pass\n"})
    response = DaemonClient(get_socket_path(project.root)).collect(project.root)
    cold = project.cold("--collect-only", "-q")
    assert response["exit_code"] == cold.returncode == 2
    assert [e["nodeid"] for e in response["errors"]] == ["tests/test_broken.py"]
    assert "SyntaxError" in response["errors"][0]["message"]


def test_no_daemon_raises_the_seed_documents_connection_error(
    project: Project, api_env: None
) -> None:
    client = DaemonClient(get_socket_path(project.root))
    assert client.is_daemon_running() is False
    with pytest.raises(ConnectionError) as info:
        client.get_status()
    assert isinstance(info.value, DaemonConnectionError)
    assert re.match(
        r"Cannot connect to daemon at .+\.sock\. Is the daemon running\?", str(info.value)
    )
    assert stop_daemon(get_socket_path(project.root)) is False


def test_error_response_is_raised_as_daemon_error(
    project: Project, api_env: None, tmp_path: Path
) -> None:
    started(project)
    client = DaemonClient(get_socket_path(project.root))
    with pytest.raises(DaemonError, match=r"^outside_root: "):
        client.collect(tmp_path)
    assert client.is_daemon_running()


def test_stop_daemon_waits_for_the_daemon_to_exit(project: Project, api_env: None) -> None:
    record = started(project)
    assert stop_daemon(get_socket_path(project.root)) is True
    assert not pid_alive(int(record["pid"]))
    assert not files_of(project).socket.exists()
