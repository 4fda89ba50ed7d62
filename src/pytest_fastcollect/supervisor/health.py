"""Resource figures from psutil, the health checks and their verdict.

Runs in the supervisor. Every figure is read fresh on each request; nothing
here is estimated. Each check compares one figure with a named threshold
(``Thresholds``); a failing check is "degraded" or "unhealthy", and the
verdict is the worst of them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import psutil

from pytest_fastcollect.wire.protocol import (
    DaemonState,
    HealthCheck,
    HealthVerdict,
    Metrics,
    ProcessInfo,
)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.1  # failed requests / all requests
    max_rss_bytes: int = 4 * 1024**3  # supervisor + warm process
    max_pending_age: float = 5.0  # seconds a change may wait to be applied
    max_zombies: int = 0


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the checks look at, gathered by the supervisor core."""

    state: DaemonState
    state_detail: str
    socket_path: str
    warm_pid: int | None
    fork_safe: bool | None  # None: no verdict yet
    fork_detail: str
    processes: list[ProcessInfo]
    metrics: Metrics
    pending_age: float
    watcher: str
    import_failures: int


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def checks(facts: Facts, limits: Thresholds | None = None) -> dict[str, HealthCheck]:
    t = limits or Thresholds()
    warm = next((x for x in facts.processes if x.role == "warm"), None)
    rss = sum(x.rss_bytes for x in facts.processes)
    zombies = sum(x.zombies for x in facts.processes)
    rate = facts.metrics.error_rate
    ready = facts.state is DaemonState.READY
    return {
        "socket_alive": HealthCheck(ok=True, value=True, detail=facts.socket_path),
        "running": HealthCheck(ok=ready, value=ready, detail=facts.state_detail),
        "warm_process_alive": HealthCheck(ok=warm is not None, value=facts.warm_pid),
        "warm_process_fork_safe": HealthCheck(
            ok=facts.fork_safe is not False,
            value=facts.fork_safe,
            display=f"{facts.fork_safe} ({warm.threads} OS thread{'s' if warm.threads != 1 else ''})"
            if warm
            else "",
            detail=facts.fork_detail,
        ),
        "request_error_rate": HealthCheck(
            ok=rate <= t.max_error_rate,
            value=rate,
            display=f"{rate:.2f} ({rate:.0%})",
            detail=f"{facts.metrics.failed_requests} of {facts.metrics.total_requests} "
            f"requests failed; limit {t.max_error_rate:.0%}",
            severity="degraded",
        ),
        "memory_rss_bytes": HealthCheck(
            ok=rss <= t.max_rss_bytes,
            value=rss,
            display=_mib(rss),
            detail=f"limit {_mib(t.max_rss_bytes)}",
            severity="degraded",
        ),
        "zombies": HealthCheck(ok=zombies <= t.max_zombies, value=zombies, severity="degraded"),
        "file_watcher": HealthCheck(
            ok=facts.watcher in ("inotify", "fsevents", "kqueue"),
            value=facts.watcher,
            detail="polling or no watcher: changes are found by the per-run stat sweep",
            severity="degraded",
        ),
        "pending_changes_age_s": HealthCheck(
            ok=facts.pending_age < t.max_pending_age,
            value=round(facts.pending_age, 3),
            detail=f"limit {t.max_pending_age:g} s",
            severity="degraded",
        ),
        "import_failures": HealthCheck(
            ok=True,
            value=facts.import_failures,
            detail="test modules that failed to import during warm-up",
            severity="degraded",
        ),
    }


def process_info(role: str, pid: int, exclude: set[int] | None = None) -> ProcessInfo | None:
    """``exclude``: children counted elsewhere (the base's project layer and its runs)."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            mem = proc.memory_info()
            cpu = proc.cpu_times()
            children = _children(proc, exclude or set())
            zombies = 0
            for child in children:
                try:
                    if child.status() == psutil.STATUS_ZOMBIE:
                        zombies += 1
                except psutil.Error:
                    pass
            try:
                pss: int | None = int(getattr(proc.memory_full_info(), "pss", 0)) or None
            except (psutil.AccessDenied, AttributeError):
                pss = None
            return ProcessInfo(
                role=role,
                pid=pid,
                rss_bytes=mem.rss,
                pss_bytes=pss,
                cpu_percent=proc.cpu_percent(interval=None),
                cpu_seconds=cpu.user + cpu.system,
                threads=proc.num_threads(),
                open_fds=proc.num_fds(),
                children=len(children),
                zombies=zombies,
            )
    except psutil.Error:
        return None


def _children(proc: psutil.Process, exclude: set[int]) -> list[psutil.Process]:
    out = []
    for child in proc.children():
        if child.pid in exclude:
            continue
        out.append(child)
        try:
            out.extend(child.children(recursive=True))
        except psutil.Error:
            pass
    return out


def inotify_watches(pid: int) -> int | None:
    """Count inotify watches held by ``pid`` (Linux: /proc/PID/fdinfo)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    if not fd_dir.is_dir():
        return None
    total = 0
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) != "anon_inode:inotify":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except OSError:
            continue
        total += sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))
    return total


def verdict(checks: dict[str, HealthCheck]) -> HealthVerdict:
    failing = [c for c in checks.values() if not c.ok]
    if any(c.severity == "unhealthy" for c in failing):
        return HealthVerdict.UNHEALTHY
    if failing:
        return HealthVerdict.DEGRADED
    return HealthVerdict.HEALTHY
