"""Unit tests of supervisor/health.py: each check against its named threshold, and the verdict."""

from __future__ import annotations

import pydantic
import pytest

from pytest_fastcollect.supervisor import health
from pytest_fastcollect.wire import protocol as p


def facts(**overrides: object) -> health.Facts:
    values: dict[str, object] = {
        "state": p.DaemonState.READY,
        "state_detail": "state ready",
        "socket_path": "/run/x.sock",
        "warm_pid": 2,
        "fork_safe": True,
        "fork_detail": "one OS thread",
        "processes": [proc("supervisor", 1), proc("warm", 2)],
        "metrics": p.Metrics(total_requests=10, successful_requests=10),
        "pending_age": 0.0,
        "watcher": "inotify",
        "import_failures": 0,
    }
    values.update(overrides)
    return health.Facts(**values)  # type: ignore[arg-type]


def proc(role: str, pid: int, rss: int = 50 * 1024 * 1024, threads: int = 1) -> p.ProcessInfo:
    return p.ProcessInfo(
        role=role,
        pid=pid,
        rss_bytes=rss,
        cpu_percent=0.0,
        cpu_seconds=0.1,
        threads=threads,
        open_fds=5,
        children=0,
        zombies=0,
    )


def test_health_check_values_and_verdicts() -> None:
    ok = p.HealthCheck(ok=True, value=1)
    soft = p.HealthCheck(ok=False, value=0.5, severity="degraded")
    hard = p.HealthCheck(ok=False, value=None)
    assert health.verdict({"a": ok}) is p.HealthVerdict.HEALTHY
    assert health.verdict({"a": ok, "b": soft}) is p.HealthVerdict.DEGRADED
    assert health.verdict({"a": ok, "b": soft, "c": hard}) is p.HealthVerdict.UNHEALTHY
    with pytest.raises(pydantic.ValidationError):
        p.HealthCheck(ok=True, value=1, severity="fatal")  # type: ignore[arg-type]


def test_a_ready_daemon_is_healthy() -> None:
    checks = health.checks(facts())
    assert health.verdict(checks) is p.HealthVerdict.HEALTHY
    # The seed document's names and readable values.
    assert checks["socket_alive"].value is True
    assert checks["running"].value is True
    assert checks["request_error_rate"].display == "0.00 (0%)"
    assert checks["memory_rss_bytes"].display == "100.0 MiB (supervisor 50.0 MiB, warm 50.0 MiB)"


def test_error_rate_threshold_is_named_and_inclusive() -> None:
    limits = health.Thresholds(max_error_rate=0.2)
    at = facts(metrics=p.Metrics(total_requests=10, failed_requests=2, error_rate=0.2))
    over = facts(metrics=p.Metrics(total_requests=10, failed_requests=3, error_rate=0.3))
    assert health.checks(at, limits)["request_error_rate"].ok
    check = health.checks(over, limits)["request_error_rate"]
    assert not check.ok
    assert check.severity == "degraded"
    assert check.display == "0.30 (30%)"
    assert "limit 20%" in check.detail


def test_memory_threshold_counts_every_process() -> None:
    limits = health.Thresholds(max_rss_bytes=150 * 1024 * 1024)
    big = facts(
        processes=[proc("supervisor", 1, rss=100 * 1024**2), proc("warm", 2, rss=60 * 1024**2)]
    )
    check = health.checks(big, limits)["memory_rss_bytes"]
    assert not check.ok
    assert check.value == 160 * 1024**2
    assert health.verdict(health.checks(big, limits)) is p.HealthVerdict.DEGRADED


def test_pending_changes_that_wait_too_long_degrade() -> None:
    limits = health.Thresholds(max_pending_age=1.0)
    assert health.checks(facts(pending_age=0.5), limits)["pending_changes_age_s"].ok
    assert not health.checks(facts(pending_age=1.5), limits)["pending_changes_age_s"].ok


def test_no_warm_process_is_unhealthy() -> None:
    checks = health.checks(
        facts(state=p.DaemonState.FAILED, warm_pid=None, processes=[proc("supervisor", 1)])
    )
    assert not checks["running"].ok
    assert not checks["warm_process_alive"].ok
    assert health.verdict(checks) is p.HealthVerdict.UNHEALTHY


def test_a_warm_process_that_cannot_fork_is_unhealthy() -> None:
    checks = health.checks(facts(fork_safe=False, fork_detail="libgomp (OpenMP) has a pool"))
    check = checks["warm_process_fork_safe"]
    assert not check.ok and check.detail == "libgomp (OpenMP) has a pool"
    assert health.verdict(checks) is p.HealthVerdict.UNHEALTHY


def test_polling_watcher_degrades() -> None:
    checks = health.checks(facts(watcher="polling"))
    assert not checks["file_watcher"].ok
    assert health.verdict(checks) is p.HealthVerdict.DEGRADED


def test_a_warm_process_that_stopped_answering_is_unhealthy() -> None:
    checks = health.checks(facts(unresponsive="it is stopped (process state stopped)"))
    check = checks["warm_process_responsive"]
    assert not check.ok and check.severity == "unhealthy"
    assert "it is stopped" in check.detail and "being replaced" in check.detail
    assert health.verdict(checks) is p.HealthVerdict.UNHEALTHY
    assert health.checks(facts())["warm_process_responsive"].ok
