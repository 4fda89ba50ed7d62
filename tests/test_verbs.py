"""Transcript tests for every ``--daemon-*`` verb: the command, its output lines, its exit code.

Templates and their placeholders are described in transcript.py.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from pytest_fastcollect.wire import protocol as p

from helpers import Project, Result, files_of, frame, raw_exchange, record_of
from transcript import expect

FILES = {
    "tests/test_a.py": "def test_a():\n    pass\n",
    "tests/test_b.py": "def test_b():\n    pass\n",
}
NO_DAEMON = (
    "pytest-fastcollect: error: no daemon running for {root}; "
    "start one with: pytest --daemon-start\n"
)


def started(project: Project, *paths: str) -> Result:
    project.write(FILES)
    result = project.start(*paths)
    assert result.returncode == 0, str(result)
    return result


STARTED = """
    pytest-fastcollect: daemon started for {root}
      pid:    {pid}
      socket: {socket}
      log:    {log}
      Pre-import complete: 2/2 modules in {f}s
"""

HEALTHY = """
    Status: healthy
    Checks:
      - socket_alive: True
      - running: True
      - warm_process_alive: {warm}
      - warm_process_responsive: True
      - warm_process_fork_safe: True (1 OS thread)
      - request_error_rate: 0.00 (0%)
      - memory_rss_bytes: {f} MiB (supervisor {f} MiB, base {f} MiB, warm {f} MiB)
      - zombies: 0
      - file_watcher: inotify
      - pending_changes_age_s: 0.0
      - import_failures: 0
      - leaked_workers: 0
    Reloads:
      reloads:         0 (0 modules; mean -, p95 -)
      last reload:     none yet
      replacements:    none
      pending changes: 0
"""


# --- without a daemon -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--daemon-status"],
        ["--daemon-status", "--daemon-json"],
        ["--daemon-health"],
        ["--daemon-health", "--daemon-json"],
        ["--daemon-stop"],
        ["--daemon-reload"],
    ],
)
def test_verbs_without_a_daemon(project: Project, args: list[str]) -> None:
    result = project.pytest(*args)
    expect(project, result, 6, stderr=NO_DAEMON)
    assert list(project.runtime.iterdir()) == [], "a verb that found no daemon left files behind"


def test_daemon_json_alone_is_a_usage_error(project: Project) -> None:
    result = project.pytest("--daemon-json")
    expect(
        project,
        result,
        4,
        stderr="ERROR: --daemon-json goes with --daemon-status or --daemon-health\n\n",
    )


def test_two_verbs_at_once_are_a_usage_error(project: Project) -> None:
    project.write(FILES)
    result = project.pytest("--daemon-start", "--daemon-stop")
    expect(
        project,
        result,
        4,
        stderr=(
            "ERROR: --daemon-start and --daemon-stop do not go together; "
            "give one --daemon-* command\n\n"
        ),
    )
    assert record_of(project) is None


def test_restart_without_a_daemon_starts_one(project: Project) -> None:
    project.write(FILES)
    result = project.pytest("--daemon-restart", "tests")
    record = record_of(project)
    assert record is not None
    project.started_pids.append(int(record["pid"]))
    expect(project, result, 0, stdout=STARTED)


# --- with a daemon ----------------------------------------------------------------------------


STATUS = """
    pytest-fastcollect daemon for {root}
      state:          ready (generation 1)
      pid:            {pid} (warm process: {warm})
      uptime:         0:00:{n}
      socket:         {socket}
      log:            {log}
      versions:       pytest-fastcollect {*}, protocol 1, Python {*}, pytest {*}
      warm paths:     tests
      cached modules: {n} (2 from the project)
      warm-up:        2/2 modules in {f}s
      learned:        0 library imports from runs (0 not learnable)
      requests:       0 total, 0 ok, 0 failed (error rate 0.0%); runs 0, collects 0
      watcher:        inotify ({root}; inotify watches: {n})
      reloads:        0 (0 modules; mean -, p95 -); pending changes: 0
      replacements:   none
      processes:
        role        pid      RSS          PSS          CPU s   threads  fds   children  zombies
        supervisor  {pid}{*}
        base        {n}{*}
        warm        {warm}{*}
"""


def test_start_start_status_json_health_json(project: Project) -> None:
    """One daemon, the read-only verbs in order (so the status shows zero requests)."""
    expect(project, started(project, "tests"), 0, stdout=STARTED)
    expect(
        project,
        project.pytest("--daemon-start", "tests"),
        0,
        stdout=(
            "pytest-fastcollect: a daemon is already running for {root} (pid {pid}); "
            "nothing started (pytest --daemon-restart replaces it)\n"
        ),
    )
    expect(project, project.pytest("--daemon-status"), 0, stdout=STATUS)

    result = project.pytest("--daemon-status", "--daemon-json")
    assert result.returncode == 0 and result.stderr == "", str(result)
    data: dict[str, Any] = json.loads(result.stdout)
    record = record_of(project)
    assert record is not None
    assert data["kind"] == "status"
    assert (data["pid"], data["warm_pid"], data["root"]) == (
        record["pid"],
        record["warm_pid"],
        str(project.root),
    )
    assert data["log_path"] == str(files_of(project).log)
    assert data["socket_path"] == str(files_of(project).socket)
    assert data["metrics"]["total_requests"] == 1
    assert data["warmup"]["imported"] == data["warmup"]["total"] == 2
    assert p.StatusResponse.model_validate(data).pid == record["pid"]
    # Counts are documented as ints, the timeout as seconds (a float).
    assert data["limits"] == {
        "max_connections": 10,
        "max_request_bytes": 10 * 1024 * 1024,
        "request_timeout": 30.0,
    }
    assert [type(v) for v in data["limits"].values()] == [int, int, float]

    expect(project, project.pytest("--daemon-health"), 0, stdout=HEALTHY)

    result = project.pytest("--daemon-health", "--daemon-json")
    assert result.returncode == 0 and result.stderr == "", str(result)
    data = json.loads(result.stdout)
    assert data["kind"] == "health" and data["status"] == "healthy"
    assert all(check["ok"] for check in data["checks"].values()), data
    assert data["checks"]["request_error_rate"]["detail"] == "0 of 3 requests failed; limit 10%"
    assert p.HealthResponse.model_validate(data).status is p.HealthVerdict.HEALTHY
    assert data["reload"]["reloads"] == 0 and data["reload"]["last"] is None


def test_health_shows_reload_statistics(project: Project) -> None:
    """Issue 11.1: health is where people look for reload figures, in text and JSON."""
    started(project, "tests")
    project.write({"tests/test_a.py": "def test_a():\n    assert 1 + 1 == 2\n"})
    run = project.pytest("-q", "tests/test_a.py")
    assert run.returncode == 0 and "1 passed" in run.stdout, str(run)
    expect(
        project,
        project.pytest("--daemon-health"),
        0,
        stdout="""
        Status: healthy
        Checks:
          - socket_alive: True
          - running: True
          - warm_process_alive: {warm}
          - warm_process_fork_safe: True (1 OS thread)
          - request_error_rate: 0.00 (0%)
          - memory_rss_bytes: {f} MiB (supervisor {f} MiB, base {f} MiB, warm {f} MiB)
          - zombies: 0
          - file_watcher: inotify
          - pending_changes_age_s: 0.0
          - import_failures: 0
          - leaked_workers: 0
        Reloads:
          reloads:         1 (1 modules; mean {f} ms, p95 {f} ms)
          last reload:     {n}:{n}:{n} ({n}:{n}:{n} ago), 1 modules in {f} ms (reimport; changed: tests/test_a.py)
          replacements:    none
          pending changes: 0
    """,
    )
    result = project.pytest("--daemon-health", "--daemon-json")
    assert result.returncode == 0, str(result)
    reload = json.loads(result.stdout)["reload"]
    assert (reload["reloads"], reload["modules_reloaded"], reload["pending_changes"]) == (1, 1, 0)
    assert reload["last"]["files"] == ["tests/test_a.py"]
    assert reload["last"]["action"] == "reimport" and reload["last"]["duration_ms"] > 0
    assert reload["mean_ms"] == reload["p95_ms"] == reload["last"]["duration_ms"]
    assert reload["replacements"] == {}
    memory = json.loads(result.stdout)["checks"]["memory_rss_bytes"]
    assert isinstance(memory["value"], int) and memory["display"].endswith(" MiB)")


def test_health_not_healthy_exits_7(project: Project) -> None:
    started(project, "tests")
    for _ in range(3):
        response = raw_exchange(files_of(project).socket, frame(b"{not json"))
        assert isinstance(response, p.ErrorResponse)
    expect(
        project,
        project.pytest("--daemon-health"),
        7,
        stdout="""
        Status: degraded
        Checks:
          - socket_alive: True
          - running: True
          - warm_process_alive: {warm}
          - warm_process_responsive: True
          - warm_process_fork_safe: True (1 OS thread)
          - request_error_rate: 1.00 (100%)  <- degraded  [3 of 3 requests failed; limit 10%]
          - memory_rss_bytes: {f} MiB (supervisor {f} MiB, base {f} MiB, warm {f} MiB)
          - zombies: 0
          - file_watcher: inotify
          - pending_changes_age_s: 0.0
          - import_failures: 0
          - leaked_workers: 0
        Reloads:
          reloads:         0 (0 modules; mean -, p95 -)
          last reload:     none yet
          replacements:    none
          pending changes: 0
    """,
    )
    result = project.pytest("--daemon-health", "--daemon-json")
    assert result.returncode == 7, str(result)
    assert json.loads(result.stdout)["status"] == "degraded"


def test_reload(project: Project) -> None:
    started(project, "tests")
    old = record_of(project)
    assert old is not None
    expect(
        project,
        project.pytest("--daemon-reload"),
        0,
        stdout="""
        pytest-fastcollect: warm process replaced (generation 2) in {f}s
    """,
    )
    status = project.status()
    assert status["pid"] == old["pid"]
    assert status["warm_pid"] != old["warm_pid"]
    assert status["generation"] == 2
    assert status["reload"]["replacements"] == {"manual": 1}  # type: ignore[index]


def test_restart_replaces_the_daemon_and_keeps_its_warm_paths(project: Project) -> None:
    project.write(FILES)
    first = project.start("tests/test_a.py")
    assert first.returncode == 0, str(first)
    old = record_of(project)
    assert old is not None
    result = project.pytest("--daemon-restart")
    new = record_of(project)
    assert new is not None
    project.started_pids.append(int(new["pid"]))
    assert new["pid"] != old["pid"]
    expect(
        project,
        result,
        0,
        stdout=f"""
        pytest-fastcollect: stopped the daemon (pid {old["pid"]}) for {{root}}
        pytest-fastcollect: daemon started for {{root}}
          pid:    {{pid}}
          socket: {{socket}}
          log:    {{log}}
          Pre-import complete: 1/1 modules in {{f}}s
    """,
    )
    assert project.status()["warm_paths"] == ["tests/test_a.py"]


def test_restart_with_new_paths(project: Project) -> None:
    project.write(FILES)
    assert project.start("tests/test_a.py").returncode == 0
    old = record_of(project)
    assert old is not None
    result = project.pytest("--daemon-restart", "tests")
    new = record_of(project)
    assert new is not None
    project.started_pids.append(int(new["pid"]))
    expect(
        project,
        result,
        0,
        stdout=f"pytest-fastcollect: stopped the daemon (pid {old['pid']}) for {{root}}\n"
        + textwrap.dedent(STARTED).lstrip("\n"),
    )


def test_stop_then_stop_again(project: Project) -> None:
    started(project, "tests")
    record = record_of(project)
    expect(
        project,
        project.stop(),
        0,
        record=record,
        stdout="""
        pytest-fastcollect: stopped the daemon (pid {pid}) for {root}
    """,
    )
    assert record_of(project) is None
    files = files_of(project)
    assert not files.socket.exists() and not files.lock.exists()
    expect(project, project.stop(), 6, stderr=NO_DAEMON)


def test_verbs_from_a_subdirectory_find_the_projects_daemon(project: Project) -> None:
    started(project, "tests")
    result = project.pytest("--daemon-status", "--daemon-json", cwd=project.root / "tests")
    assert result.returncode == 0, str(result)
    assert json.loads(result.stdout)["root"] == str(project.root)


BROKEN = "import no_such_module_anywhere\n\n\ndef test_broken():\n    pass\n"


def test_status_lists_import_failures_under_warm_up_until_fixed(project: Project) -> None:
    """Issue 11.12: failures follow the warm-up line, and a fixed file is no longer listed."""
    project.write({**FILES, "tests/test_broken.py": BROKEN})
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    lines = project.pytest("--daemon-status").stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  warm-up:"))
    assert lines[at].startswith("  warm-up:        2/3 modules in ")
    assert lines[at + 1] == (
        "    Failed to import tests/test_broken.py: "
        "ModuleNotFoundError: No module named 'no_such_module_anywhere'"
    ), lines
    assert lines[at + 2].startswith("  learned:"), lines
    health = json.loads(project.pytest("--daemon-health", "--daemon-json").stdout)
    assert health["checks"]["import_failures"]["value"] == 1

    project.write({"tests/test_broken.py": "def test_broken():\n    pass\n"})
    run = project.pytest("-q", "tests")
    assert run.returncode == 0 and "3 passed" in run.stdout, str(run)
    status = project.status()
    assert status["warmup"]["failures"] == [], status["warmup"]  # type: ignore[index]
    assert "Failed to import" not in project.pytest("--daemon-status").stdout
    health = json.loads(project.pytest("--daemon-health", "--daemon-json").stdout)
    assert health["checks"]["import_failures"]["value"] == 0
