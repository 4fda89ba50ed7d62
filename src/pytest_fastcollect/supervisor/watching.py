"""Watch mode in the supervisor: a numbered log of file events, and the commands it serves.

Runs in the supervisor (threads). ``ChangeLog`` numbers every file event
under the project (more than the reloader cares for: files tests may read
count too) and, as a ``Stats`` listener, every reload and replacement. A
watch client's cursor says which events it has seen: saves made while it
was running tests are in its next answer, never lost.

``WatchRoom`` serves ``watch`` (a long poll: wait for events after the
cursor, let them go quiet, apply them to the warm process under the reload
lock, then select the affected test files) and ``affected``. While a watch
waits it also runs the stat sweep now and then, so a change the watcher
missed (or a package installed outside the project) still wakes it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable

from pytest_fastcollect.supervisor.affected import (
    Affected,
    Registrants,
    in_project,
    is_transient,
)
from pytest_fastcollect.supervisor.freshness import PACKAGES_CHANGED, Freshness
from pytest_fastcollect.supervisor.slot import WarmSlot
from pytest_fastcollect.wire import protocol as p

WAKE = 0.25  # how often a waiting watch checks that its client is still there
SWEEP_EVERY = 1.0  # how often a waiting watch stats the loaded files
HISTORY = 20_000  # entries kept; a client further behind selects everything

# Runs.collect: a collect in a fork of the warm process.
Collect = Callable[[p.CollectRequest], p.CollectResponse | p.ErrorResponse]


@dataclasses.dataclass(frozen=True)
class Entry:
    seq: int
    at: float  # time.monotonic()
    path: str | None = None  # a file event
    reloaded: int = 0  # a reload: modules re-imported
    replaced: str | None = None  # a replacement: its reason


@dataclasses.dataclass
class Batch:
    paths: list[str]
    last_save: float  # monotonic time of the last file event
    reloaded: int
    replaced: list[str]
    lost: bool  # entries after the cursor were dropped from the history


def _relevant(path: str, root: str) -> bool:
    return os.path.basename(path) == PACKAGES_CHANGED or in_project(path, root)


class ChangeLog:
    def __init__(
        self, root: str, quiet: float, outside: Callable[[str], bool] | None = None
    ) -> None:
        self.root = root
        self.quiet = quiet
        # Loaded project code outside the rootdir (symlink targets, editable
        # installs): its saves count too (``Freshness.relevant``).
        self._outside = outside
        self.epoch = os.urandom(8).hex()  # a restarted daemon's cursors mean nothing here
        self._cond = threading.Condition()
        self._entries: collections.deque[Entry] = collections.deque(maxlen=HISTORY)
        self._seq = 0
        self._last_save = 0.0

    def cursor(self) -> int:
        with self._cond:
            return self._seq

    def _append(self, **fields: object) -> None:
        self._seq += 1
        self._entries.append(Entry(seq=self._seq, at=time.monotonic(), **fields))  # type: ignore[arg-type]

    def note(self, paths: Iterable[str]) -> None:
        """File events (the watcher's thread, the sweep)."""
        keep = sorted(
            {
                os.path.realpath(x)
                for x in paths
                if _relevant(x, self.root) or (self._outside is not None and self._outside(x))
            }
        )
        if not keep:
            return
        with self._cond:
            for path in keep:
                self._append(path=path)
            self._last_save = time.monotonic()
            self._cond.notify_all()

    def reloaded(self, last: p.LastReload) -> None:
        with self._cond:
            self._append(reloaded=last.modules)

    def replaced(self, reason: str) -> None:
        with self._cond:
            self._append(replaced=reason)

    def paths_since(self, since: int) -> set[str]:
        with self._cond:
            return {e.path for e in self._entries if e.seq > since and e.path is not None}

    def wait(
        self,
        since: int,
        timeout: float,
        keep_waiting: Callable[[], bool],
        poll: Callable[[int], None],
    ) -> bool:
        """Wait until file events after ``since`` have been quiet for ``quiet`` seconds.

        False on timeout, or when ``keep_waiting()`` says the client is gone.
        ``poll(since)`` runs between waits (outside the lock).
        """
        deadline = time.monotonic() + timeout
        next_poll = 0.0
        while True:
            with self._cond:
                now = time.monotonic()
                if self._has_files_after(since):
                    left = self.quiet - (now - self._last_save)
                    if left <= 0:
                        return True
                    self._cond.wait(left)
                    continue
                if now >= deadline:
                    return False
                self._cond.wait(min(WAKE, deadline - now))
            if not keep_waiting():
                return False
            if time.monotonic() >= next_poll:
                poll(since)
                next_poll = time.monotonic() + SWEEP_EVERY

    def _has_files_after(self, since: int) -> bool:
        for entry in reversed(self._entries):
            if entry.seq <= since:
                return False
            if entry.path is not None:
                return True
        return False

    def batch(self, since: int, until: int) -> Batch:
        with self._cond:
            entries = [e for e in self._entries if since < e.seq <= until]
            lost = bool(self._entries) and self._entries[0].seq > since + 1
            last_save = self._last_save
        return Batch(
            paths=sorted({e.path for e in entries if e.path is not None}),
            last_save=last_save,
            reloaded=sum(e.reloaded for e in entries),
            replaced=[e.replaced for e in entries if e.replaced is not None],
            lost=lost,
        )


def client_connected(conn: socket.socket) -> bool:
    """A watch client sends nothing after its request: readable means it hung up."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return True
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except (OSError, ValueError):
        return False


class WatchRoom:
    def __init__(
        self, slot: WarmSlot, records: Freshness, log: ChangeLog, collect: Collect
    ) -> None:
        self.slot = slot
        self.records = records
        self.log = log
        self.root = slot.root
        self.engine = Affected(slot.root, slot.graph)
        self._collect = collect
        slot.stats.listeners.append(log)

    # -- watch ----------------------------------------------------------------------------

    def watch(self, req: p.WatchRequest, conn: socket.socket) -> p.WatchResponse:
        log = self.log
        if req.cursor is None or req.epoch != log.epoch:
            # A start, or a cursor of another daemon: from now on. Learn the
            # conftests as they are, so the next edit of one can be judged.
            self.select([], req.test_files, req.patterns)
            lost = req.cursor is not None
            return p.WatchResponse(
                request_id=req.request_id,
                epoch=log.epoch,
                cursor=log.cursor(),
                changed=[],
                lost=lost,
                generation=self.slot.generation,
                selection=p.Selection(
                    everything=True,
                    reasons=["another daemon answered before: changes may have been missed"],
                )
                if lost
                else None,
            )
        since = req.cursor
        deadline = time.monotonic() + req.timeout
        while True:
            quiet = log.wait(
                since,
                max(deadline - time.monotonic(), 0.0),
                lambda: client_connected(conn),
                self._catch_missed,
            )
            if not quiet:
                return self._nothing(req, since)
            applied_at = self._apply()
            until = log.cursor()
            batch = log.batch(since, until)
            changed = [x for x in batch.paths if not is_transient(x) and not os.path.isdir(x)]
            if changed or batch.lost:
                break
            since = until  # only an editor's temporary files came and went
        selection = self.select(batch.paths, req.test_files, req.patterns)
        if batch.lost:
            selection.everything = True
            selection.reasons.insert(0, "changes were missed (too many to keep)")
        return p.WatchResponse(
            request_id=req.request_id,
            epoch=log.epoch,
            cursor=until,
            changed=changed,
            lost=batch.lost,
            generation=self.slot.generation,
            ready_ms=round(max(applied_at - batch.last_save, 0.0) * 1000, 1),
            reloaded=batch.reloaded,
            replaced=batch.replaced,
            selection=selection,
        )

    def _nothing(self, req: p.WatchRequest, cursor: int) -> p.WatchResponse:
        return p.WatchResponse(
            request_id=req.request_id,
            epoch=self.log.epoch,
            cursor=cursor,
            changed=[],
            generation=self.slot.generation,
        )

    def _catch_missed(self, since: int) -> None:
        """The sweep's finds go to the reloader's pending set: note them here too."""
        if self.slot.stopping.is_set():
            return
        self.records.sweep()
        pending = self.records.pending()
        if pending:
            self.log.note(pending - self.log.paths_since(since))

    def _apply(self) -> float:
        """Apply every pending change, as a run would before forking; when it was done."""
        with self.slot.hold() as held:
            self.records.sweep()
            ready = self.slot.state in (p.DaemonState.READY, p.DaemonState.FAILED)
            if ready and self.records.has_pending():
                held.apply_pending(None)
        return time.monotonic()

    # -- selection ------------------------------------------------------------------------

    def select(
        self, changed: list[str], test_files: list[str] | None, patterns: list[str]
    ) -> p.Selection:
        wp = self.slot.current
        table = dict(wp.modules) if wp is not None else {}
        tests = set(wp.test_files) if wp is not None else set()
        tests |= {os.path.realpath(f.path) for f in self.slot.warmup.failures}
        candidates = None if test_files is None else [os.path.realpath(t) for t in test_files]
        iso = self.slot.isolation
        registrants = Registrants(
            known=None if iso.registrants is None else dict(iso.registrants),
            suspects=frozenset(iso.suspects(wp)) if wp is not None else frozenset(),
        )
        found = self.engine.select(
            [os.path.realpath(x) for x in changed],
            table,
            tests,
            candidates,
            patterns or ("test_*.py", "*_test.py"),
            registrants,
        )
        return p.Selection(
            everything=found.everything,
            reasons=found.reasons,
            test_files=found.test_files,
            companions=found.companions,
        )

    def affected(self, req: p.AffectedRequest) -> p.AffectedResponse | p.ErrorResponse:
        paths = [os.path.realpath(os.path.join(self.root, x)) for x in req.paths]
        outside = [x for x in paths if x != self.root and not x.startswith(self.root + os.sep)]
        if outside:
            return p.ErrorResponse(
                request_id=req.request_id,
                code=p.ErrorCode.OUTSIDE_ROOT,
                message=f"{outside[0]} resolves outside the project root {self.root}",
            )
        self._apply()
        selection = self.select(paths, req.test_files, req.patterns)
        node_ids = self._node_ids(selection.test_files) if req.collect else {}
        return p.AffectedResponse(
            request_id=req.request_id,
            generation=self.slot.generation,
            everything=selection.everything,
            reasons=selection.reasons,
            test_files=selection.test_files,
            companions=selection.companions,
            node_ids=node_ids,
        )

    def _node_ids(self, files: list[str]) -> dict[str, list[str]]:
        """Node ids of these test files, by file, from a collect in the warm process."""
        if not files:
            return {}
        found = self._collect(
            p.CollectRequest(root=self.root, filters=p.CollectFilters(paths=files))
        )
        out: dict[str, list[str]] = {}
        wanted = set(files)
        if isinstance(found, p.CollectResponse):
            for nodeid in found.node_ids:
                path = os.path.realpath(os.path.join(self.root, nodeid.split("::", 1)[0]))
                if path in wanted:
                    out.setdefault(path, []).append(nodeid)
        return out
