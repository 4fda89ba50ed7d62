"""A control socket to one warm process: orders out, validated events in.

Runs in the supervisor. A reader thread validates every event (pydantic,
against the dataclasses of ``wire/warm.py``) and routes it: events about an
order go to that order's mailbox, the others to the owner's ``on_event``.
Order ids are the supervisor's own (``next_order_id``).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import select
import socket
import threading
from typing import Annotated

import pydantic

from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

log = logging.getLogger("pytest_fastcollect.daemon.lifecycle")

EVENT_LIMIT = 256 * 1024 * 1024
EVENT_ADAPTER: pydantic.TypeAdapter[wm.Event] = pydantic.TypeAdapter(
    Annotated[wm.Event, pydantic.Field(discriminator="ev")]
)
_order_ids = itertools.count(1)


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

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.retired = False
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
            return box.get()
        finally:
            self.done(order.id)

    def done(self, order_id: str) -> None:
        with self._mailbox_lock:
            box = self._mailboxes.pop(order_id, None)
        if box is not None:
            box.close()

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
