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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pytest_fastcollect.wire import warm as wm


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
    unresponsive: str | None = None  # why the warm process stopped answering


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _memory(total: int, processes: list[ProcessInfo]) -> str:
    """``82.1 MiB (supervisor 42.0 MiB, warm 40.1 MiB)``: the sum and who holds it."""
    parts = ", ".join(f"{x.role} {_mib(x.rss_bytes)}" for x in processes)
    return f"{_mib(total)} ({parts})" if parts else _mib(total)


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
        "warm_process_responsive": HealthCheck(
            ok=facts.unresponsive is None,
            value=facts.unresponsive is None,
            detail=f"{facts.unresponsive}; it is being replaced" if facts.unresponsive else "",
        ),
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
            display=_memory(rss, facts.processes),
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


def process_info(
    role: str,
    pid: int,
    exclude: set[int] | None = None,
    tree: Tree | None = None,
    full: bool = True,
) -> ProcessInfo | None:
    """``exclude``: children counted elsewhere (the base's project layer and its runs).
    ``tree``: the process table read once for every role (``process_tree``).
    ``full``: also PSS, which makes the kernel walk every page table of the
    process (milliseconds for a large warm process): only when asked for."""
    tree = tree if tree is not None else process_tree()
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            mem = proc.memory_info()
            cpu = proc.cpu_times()
            children = tree.descendants(pid, exclude or set())
            pss: int | None = None
            if full:
                try:
                    pss = int(getattr(proc.memory_full_info(), "pss", 0)) or None
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
                zombies=sum(1 for c in children if tree.zombie(c)),
            )
    except psutil.Error:
        return None


class Tree:
    """Parent and state of every process, read once (psutil's ``children()`` reads
    the whole process table on every call, and status asks for several)."""

    def __init__(self, parents: dict[int, int], zombies: set[int]) -> None:
        self._kids: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            self._kids.setdefault(ppid, []).append(pid)
        self._zombies = zombies

    def descendants(self, pid: int, exclude: set[int]) -> list[int]:
        out: list[int] = []
        todo = [c for c in self._kids.get(pid, []) if c not in exclude]
        while todo:
            child = todo.pop()
            out.append(child)
            todo.extend(self._kids.get(child, []))
        return out

    def zombie(self, pid: int) -> bool:
        return pid in self._zombies


def process_tree() -> Tree:
    """Linux: one pass over /proc/*/stat; elsewhere psutil's process table."""
    parents: dict[int, int] = {}
    zombies: set[int] = set()
    if not os.path.isdir("/proc/self"):
        for proc in psutil.process_iter(["ppid", "status"]):
            parents[proc.pid] = proc.info["ppid"] or 0
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                zombies.add(proc.pid)
        return Tree(parents, zombies)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            state, ppid = data[data.rindex(b")") + 2 :].split(b" ", 2)[:2]
        except (OSError, ValueError):
            continue
        parents[int(name)] = int(ppid)
        if state == b"Z":
            zombies.add(int(name))
    return Tree(parents, zombies)


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


def fork_detail(fork: wm.ForkVerdict | None) -> str:
    """The fork-safety verdict in words, for the ``fork_safe`` check."""
    if fork is None:
        return "no verdict yet"
    if not fork.safe:
        return fork.reason
    pools = ", ".join(f"{n} {name}" for name, n in sorted(fork.native.items()))
    return f"other threads belong to fork-safe pools ({pools})" if pools else "one OS thread"
