"""Resource figures from psutil and the health verdict.

Runs in the supervisor. Every figure is read fresh on each request; nothing
here is estimated.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from pytest_fastcollect.wire.protocol import HealthCheck, HealthVerdict, ProcessInfo


def process_info(role: str, pid: int) -> ProcessInfo | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            mem = proc.memory_info()
            cpu = proc.cpu_times()
            children = proc.children(recursive=True)
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
