"""Counters of the daemon: requests by command, reloads, replacements.

Runs in the supervisor; owns its data and its lock. Readers get protocol
models (``Metrics``, ``ReloadStats``) built from a consistent copy.
Listeners (watch mode's change log) hear of each reload and replacement as
it is counted, outside the lock.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from typing import Protocol

from pytest_fastcollect.wire import protocol as p

# The reload history kept for the mean and p95 (older reloads only count).
HISTORY = 1000


class ReloadListener(Protocol):
    def reloaded(self, last: p.LastReload) -> None: ...
    def replaced(self, reason: str) -> None: ...


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = Counter[str]()
        self._by_command = Counter[str]()
        self._reload_times: list[float] = []
        self._reloads = 0
        self._modules_reloaded = 0
        self._replacements = Counter[str]()
        self._last: p.LastReload | None = None
        self.listeners: list[ReloadListener] = []
        self._served = Counter[str]()  # "standby", "fresh", "collect_cache"

    def count_request(self, command: str, ok: bool) -> None:
        with self._lock:
            self._requests["total"] += 1
            self._requests["ok" if ok else "failed"] += 1
            self._by_command[command] += 1

    def count_served(self, how: str) -> None:
        with self._lock:
            self._served[how] += 1

    def count_reload(
        self, files: list[str], modules: int, duration_ms: float, action: str
    ) -> p.LastReload:
        last = p.LastReload(
            at=time.time(),
            files=files,
            modules=modules,
            duration_ms=round(duration_ms, 2),
            action=action,
        )
        with self._lock:
            self._reloads += 1
            self._modules_reloaded += modules
            self._reload_times.append(duration_ms)
            del self._reload_times[:-HISTORY]
            self._last = last
        for listener in self.listeners:
            listener.reloaded(last)
        return last

    def count_replacement(self, reason: str) -> None:
        with self._lock:
            self._replacements[reason] += 1
        for listener in self.listeners:
            listener.replaced(reason)

    def metrics(self) -> p.Metrics:
        with self._lock:
            total = self._requests["total"]
            failed = self._requests["failed"]
            return p.Metrics(
                total_requests=total,
                successful_requests=self._requests["ok"],
                failed_requests=failed,
                error_rate=round(failed / total, 4) if total else 0.0,
                by_command=dict(self._by_command),
                runs=self._by_command["run"],
                runs_refused=self._by_command["run_refused"],
                collects=self._by_command["collect"],
                standby_runs=self._served["standby"],
                fresh_runs=self._served["fresh"],
                prepared_runs=self._served["prepared"],
                collect_cache_hits=self._served["collect_cache"],
            )

    def reloads(self, pending: int, events_seen: int, watcher: str) -> p.ReloadStats:
        with self._lock:
            times = list(self._reload_times)
            reloads, modules = self._reloads, self._modules_reloaded
            replacements, last = dict(self._replacements), self._last
        p95 = None
        if times:
            ordered = sorted(times)
            p95 = round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 2)
        return p.ReloadStats(
            reloads=reloads,
            modules_reloaded=modules,
            replacements=replacements,
            last=last,
            mean_ms=round(statistics.fmean(times), 2) if times else None,
            p95_ms=p95,
            pending_changes=pending,
            events_seen=events_seen,
            watcher=watcher,
        )
