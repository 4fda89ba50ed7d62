"""The processes of runs: live ones for status, leftovers for health.

Runs in the supervisor. A parallel run's worker lists its xdist fork server
and every worker it forked in a record file in the daemon's cache directory
(``paths.xdist_record``; written by warm/xdist_fork.py, plain JSON, checked
here). Status shows each running run with those processes; when a run ends
the record is read once more and removed, and any of its processes still
alive a moment later is a leaked worker: the health check
``leaked_workers`` is then unhealthy.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psutil
from pydantic import BaseModel, ConfigDict, ValidationError

from pytest_fastcollect.paths import xdist_record
from pytest_fastcollect.supervisor import health
from pytest_fastcollect.wire.protocol import HealthCheck, ProcessInfo

log = logging.getLogger("pytest_fastcollect.daemon.run_workers")

# A process killed with its run's group can take a moment to be gone; one
# still there after this is not dying, it was left behind.
LEAK_GRACE_S = 1.0


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Worker(_Record):
    gateway: str
    pid: int


class XdistRecord(_Record):
    fork_server: int
    workers: list[Worker]


def read_record(path: str) -> XdistRecord | None:
    try:
        with open(path, "rb") as fh:
            return XdistRecord.model_validate_json(fh.read())
    except (OSError, ValidationError):
        return None


@dataclass(frozen=True)
class _Leftover:
    pid: int
    role: str
    created: float
    run_id: str
    ended: float


class RunWorkers:
    def __init__(self, cache_dir: str, grace: float = LEAK_GRACE_S) -> None:
        self.cache_dir = cache_dir
        self.grace = grace
        self._lock = threading.Lock()
        self._leftovers: list[_Leftover] = []
        self._reported: set[tuple[int, float]] = set()

    def live(
        self, running: Mapping[str, int], tree: health.Tree | None = None, full: bool = True
    ) -> list[ProcessInfo]:
        """Each running run (order id -> pid), then its xdist processes.

        ``tree`` and ``full`` as for ``health.process_info``: the status's one
        reading of the process table, and PSS only when asked for."""
        out: list[ProcessInfo] = []
        for run_id, pid in list(running.items()):
            info = health.process_info("run", pid, tree=tree, full=full)
            if info is not None:
                out.append(info)
            record = read_record(xdist_record(self.cache_dir, run_id))
            if record is None:
                continue
            for role, xpid in _roles(record):
                info = health.process_info(role, xpid, tree=tree, full=full)
                if info is not None:
                    out.append(info)
        return out

    def finished(self, order_id: str, run_id: str) -> None:
        """A run ended: remember what of it is still alive, remove its record.

        ``order_id`` names the record (the warm process's order); ``run_id`` is
        the request id the log and health name the run by."""
        path = xdist_record(self.cache_dir, order_id)
        record = read_record(path)
        try:
            os.unlink(path)
        except OSError:
            pass
        if record is None:
            return
        log.info(
            "Run [%s] forked %d xdist workers from its fork server (pid %d)",
            run_id,
            len(record.workers),
            record.fork_server,
        )
        now = time.monotonic()
        found = []
        for role, pid in _roles(record):
            created = _alive_since(pid)
            if created is not None:
                found.append(_Leftover(pid, role, created, run_id, now))
        if found:
            with self._lock:
                self._leftovers.extend(found)

    def leaked(self) -> list[_Leftover]:
        """Processes of ended runs still alive after the grace period (forgets the gone ones)."""
        now = time.monotonic()
        with self._lock:
            alive = [x for x in self._leftovers if _alive_since(x.pid) == x.created]
            self._leftovers = alive
            leaked = [x for x in alive if now - x.ended >= self.grace]
            for x in leaked:
                if (x.pid, x.created) not in self._reported:
                    self._reported.add((x.pid, x.created))
                    log.warning("Leaked worker: %s %d outlived run [%s]", x.role, x.pid, x.run_id)
        return leaked

    def check(self) -> HealthCheck:
        leaked = self.leaked()
        return HealthCheck(
            ok=not leaked,
            value=len(leaked),
            detail="processes of ended runs still alive: "
            + ", ".join(f"{x.role} {x.pid} (run {x.run_id})" for x in leaked)
            if leaked
            else "xdist workers and fork servers outlive no run",
        )


def _roles(record: XdistRecord) -> list[tuple[str, int]]:
    return [("xdist-fork", record.fork_server)] + [
        (f"xdist-{w.gateway}", w.pid) for w in record.workers
    ]


def _alive_since(pid: int) -> float | None:
    """The create time of ``pid`` if it runs (a zombie is dead), else None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None
