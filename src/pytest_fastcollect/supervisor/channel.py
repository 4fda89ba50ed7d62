"""A control socket to one warm process: orders out, validated events in.

Runs in the supervisor. A reader thread validates every event (pydantic,
against the dataclasses of ``wire/warm.py``) and routes it: events about an
order go to that order's mailbox, the others to the owner's ``on_event``.
Order ids are the supervisor's own (``next_order_id``).

A warm process can stop answering without dying (SIGSTOP, a debugger, a
hang). ``check_responsive`` (the supervisor's self-check, twice a second)
finds it: stopped for ``STOPPED_LIMIT``, or a ping sent while no other
order waited unanswered for ``PING_TIMEOUT``. From then on ``unresponsive``
says why, and nobody waits for it any more (``ask`` returns None).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import select
import socket
import threading
import time
from typing import Annotated

import psutil
import pydantic

from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

log = logging.getLogger("pytest_fastcollect.daemon.lifecycle")

EVENT_LIMIT = 256 * 1024 * 1024
EVENT_ADAPTER: pydantic.TypeAdapter[wm.Event] = pydantic.TypeAdapter(
    Annotated[wm.Event, pydantic.Field(discriminator="ev")]
)
_order_ids = itertools.count(1)

STOPPED_LIMIT = 2.0  # seconds in the stopped state before it counts as not answering
PING_INTERVAL = 2.0  # an idle warm process is pinged this often
PING_TIMEOUT = 5.0  # and must answer within this
ASK_POLL = 0.5  # how often a waiting order looks whether the process stopped answering


def next_order_id() -> str:
    return f"o{next(_order_ids)}"


class Mailbox:
    """A queue whose arrivals can also be waited on with select()."""

    def __init__(self) -> None:
        self._q: queue.Queue[wm.Event | None] = queue.Queue()
        self._r, self._w = os.pipe()
        self._lock = threading.Lock()
        self._closed = False
        self.fds: list[int] = []  # descriptors that came with an event

    def fileno(self) -> int:
        return self._r

    def put(self, event: wm.Event | None) -> None:
        # A closed box may still be registered (the reader broadcasts None on
        # exit): its fd numbers may belong to another file by now, e.g. a new
        # warm process's control socket, so never write after close.
        with self._lock:
            if self._closed:
                return
            self._q.put(event)
            try:
                os.write(self._w, b"x")
            except OSError:
                pass

    def get(self, timeout: float | None = None) -> wm.Event | None:
        """None means the warm process died."""
        if timeout is not None:
            ready, _, _ = select.select([self._r], [], [], timeout)
            if not ready:
                raise TimeoutError
        os.read(self._r, 1)
        return self._q.get_nowait()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._r, self._w, *self.fds):
                try:
                    os.close(fd)
                except OSError:
                    pass


class Channel:
    """Orders to, and events from, one warm process over ``sock``."""

    pid: int  # the process at the other end (set by the owner)

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.retired = False
        self.unresponsive: str | None = None  # why it stopped answering
        self._awaiting: dict[str, float] = {}  # order id -> sent, until its first answer
        self._ping: tuple[str, float] | None = None  # the ping awaiting its pong
        self._last_ping = time.monotonic()
        self._stopped_since: float | None = None
        self.running: dict[str, int] = {}  # order id -> worker pid
        self._send_lock = threading.Lock()
        self._mailboxes: dict[str, Mailbox] = {}
        self._mailbox_lock = threading.Lock()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name=name, daemon=True)

    def start_reading(self) -> None:
        self._reader.start()

    # -- for the owner ----------------------------------------------------------------------

    def on_event(self, event: wm.Event, fds: list[int]) -> None:
        """An event that is not about one order (start-up, layer exits)."""

    def on_close(self) -> None:
        """The other end closed (the process exited or was killed)."""

    # -- events -----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while True:
                raw, fds = recv_frame(self.sock, EVENT_LIMIT, want_fds=True)
                try:
                    event = EVENT_ADAPTER.validate_json(raw)
                except pydantic.ValidationError as exc:
                    log.error("Invalid message from a warm process: %s", exc)
                    _close_all(fds)
                    continue
                self._route(event, fds)
        except (FrameError, OSError):
            pass
        finally:
            self._closed.set()
            with self._mailbox_lock:
                boxes = list(self._mailboxes.values())
            for box in boxes:
                box.put(None)
            self.on_close()

    def _route(self, event: wm.Event, fds: list[int]) -> None:
        order_id = getattr(event, "id", None)
        if isinstance(event, wm.Pong):
            if self._ping is not None and self._ping[0] == event.id:
                self._ping = None
                return
            with self._mailbox_lock:
                if event.id not in self._mailboxes:
                    return
        if order_id:
            self._awaiting.pop(order_id, None)
        if isinstance(event, wm.Forked):
            self.running[event.id] = event.pid
        elif isinstance(event, wm.Exited):
            self.running.pop(event.id, None)
        with self._mailbox_lock:
            box = self._mailboxes.get(order_id) if order_id else None
        if box is None:
            self.on_event(event, fds)
            return
        box.fds.extend(fds)
        box.put(event)

    def closed(self) -> bool:
        return self._closed.is_set()

    # -- orders -----------------------------------------------------------------------------

    def request(self, order: wm.Order, fds: tuple[int, ...] = ()) -> Mailbox:
        """Send an order (its id made by ``next_order_id``); its events arrive in the mailbox."""
        box = Mailbox()
        with self._mailbox_lock:
            self._mailboxes[order.id] = box
        self._awaiting[order.id] = time.monotonic()
        try:
            with self._send_lock:
                send_frame(self.sock, wm.encode(order), fds)
        except OSError:
            box.put(None)
        return box

    def ask(self, order: wm.Order) -> wm.Event | None:
        """Send an order and wait for its single answer (None: the process died)."""
        box = self.request(order)
        try:
            return self.wait(box)
        finally:
            self.done(order.id)

    def wait(self, box: Mailbox) -> wm.Event | None:
        """The next event in ``box``; None if the process died or stopped answering."""
        while True:
            try:
                return box.get(ASK_POLL)
            except TimeoutError:
                if self.unresponsive is not None:
                    return None

    def done(self, order_id: str) -> None:
        self._awaiting.pop(order_id, None)
        with self._mailbox_lock:
            box = self._mailboxes.pop(order_id, None)
        if box is not None:
            box.close()

    # -- answering ---------------------------------------------------------------------------

    def check_responsive(self) -> str | None:
        """Why this process does not answer, or None. Cheap: a /proc read, and now and
        then a ping sent while no other order waits (it would queue behind a long one)."""
        if self.unresponsive is not None or self.closed():
            return self.unresponsive
        now = time.monotonic()
        try:
            state = psutil.Process(self.pid).status()
        except psutil.Error:
            return None
        if state in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
            self._stopped_since = self._stopped_since or now
            if now - self._stopped_since >= STOPPED_LIMIT:
                return self._give_up(f"it is stopped (process state {state})")
            return None
        self._stopped_since = None
        if self._ping is not None:
            if now - self._ping[1] > PING_TIMEOUT:
                return self._give_up(f"it did not answer a ping within {PING_TIMEOUT:g}s")
        elif not self._awaiting and now - self._last_ping >= PING_INTERVAL:
            self._send_ping(now)
        return None

    def _send_ping(self, now: float) -> None:
        self._last_ping = now
        order = wm.PingOrder(id=next_order_id())
        self._ping = (order.id, now)
        try:
            with self._send_lock:
                send_frame(self.sock, wm.encode(order))
        except OSError:
            self._ping = None  # gone: the reader thread reports it

    def _give_up(self, reason: str) -> str:
        log.warning("Warm process %d does not answer: %s", self.pid, reason)
        self.unresponsive = reason
        return reason

    def send_exit(self) -> None:
        """Ask the process to exit once its running workers finish."""
        self.retired = True
        try:
            with self._send_lock:
                send_frame(self.sock, wm.encode(wm.ExitOrder()))
        except OSError:
            pass

    def close(self) -> None:
        self.retired = True
        try:
            # Wakes the reader thread blocked in recv (close alone does not).
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
