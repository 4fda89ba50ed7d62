"""Connection limits: slots for the work, and room for connections still sending requests.

Runs in the supervisor (connection threads). Two separate limits, so that
idle connections never hold what runs need:

- ``RunSlots``: at most N runs, collects and reloads at once. A request that
  finds them all taken queues (first come, first served) for a bounded
  time; a freed slot is handed straight to the oldest waiter, and the
  hand-over time is measured, so "a run waited while a slot was free"
  shows up as a late hand-over instead of going unseen.
- ``Readers``: connections that have not sent a complete request yet. When
  they are all taken, the longest idle one (past a grace period) is closed
  to make room, so a pile of idle connections cannot lock out a status or a
  stop; a burst of brand-new ones gets ``busy`` at once.
"""

from __future__ import annotations

import collections
import socket
import threading
import time

from pytest_fastcollect.wire import protocol as p

LATE_HANDOVER = 1.0  # seconds


class _Waiter:
    __slots__ = ("event", "granted_at", "since")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.since = time.monotonic()
        self.granted_at: float | None = None


class RunSlots:
    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._free = size
        self._queue: collections.deque[_Waiter] = collections.deque()
        self._waits = 0
        self._max_wait = 0.0
        self._busy = 0
        self._max_handover = 0.0
        self._late = 0

    def acquire(self, timeout: float) -> bool:
        """Take a slot, waiting at most ``timeout`` seconds; False: still none (busy)."""
        with self._lock:
            if self._free and not self._queue:
                self._free -= 1
                return True
            waiter = _Waiter()
            self._queue.append(waiter)
        waiter.event.wait(timeout)
        now = time.monotonic()
        with self._lock:
            self._waits += 1
            self._max_wait = max(self._max_wait, now - waiter.since)
            if waiter.granted_at is not None:
                handover = now - waiter.granted_at
                self._max_handover = max(self._max_handover, handover)
                self._late += handover > LATE_HANDOVER
                return True
            self._queue.remove(waiter)
            self._busy += 1
            return False

    def release(self) -> None:
        with self._lock:
            if self._queue:
                waiter = self._queue.popleft()
                waiter.granted_at = time.monotonic()
                waiter.event.set()
            else:
                self._free += 1

    def stats(self, open_connections: int, readers: Readers) -> p.ConnectionStats:
        reading, evicted, refused = readers.counts()
        with self._lock:
            return p.ConnectionStats(
                open=open_connections,
                reading=reading,
                max_reading=readers.limit,
                running=self.size - self._free,
                max_running=self.size,
                slot_waits=self._waits,
                max_slot_wait_ms=round(self._max_wait * 1000, 2),
                busy=self._busy + refused,
                evicted=evicted,
                max_handover_ms=round(self._max_handover * 1000, 2),
                late_handovers=self._late,
            )


class Reader:
    __slots__ = ("conn", "evicted", "since")

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.since = time.monotonic()
        self.evicted = False


class Readers:
    def __init__(self, limit: int, idle_grace: float) -> None:
        self.limit = limit
        self.idle_grace = idle_grace
        self._lock = threading.Lock()
        self._readers: collections.OrderedDict[int, Reader] = collections.OrderedDict()
        self._evicted = 0
        self._refused = 0

    def enter(self, conn: socket.socket) -> Reader | None:
        """Room for a connection to send its request; None: no room (answer busy)."""
        reader = Reader(conn)
        with self._lock:
            if len(self._readers) >= self.limit:
                oldest = next(iter(self._readers.values()))
                if reader.since - oldest.since < self.idle_grace:
                    self._refused += 1
                    return None
                self._evict(oldest)
            self._readers[id(reader)] = reader
        return reader

    def _evict(self, reader: Reader) -> None:
        del self._readers[id(reader)]
        reader.evicted = True
        self._evicted += 1
        try:
            # Its thread, waiting for bytes, reads end-of-file and answers it.
            reader.conn.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def leave(self, reader: Reader) -> None:
        with self._lock:
            self._readers.pop(id(reader), None)

    def counts(self) -> tuple[int, int, int]:
        """(reading now, evicted, refused) since the daemon started."""
        with self._lock:
            return len(self._readers), self._evicted, self._refused
