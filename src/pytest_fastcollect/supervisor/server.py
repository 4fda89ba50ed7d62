"""Accept loop, connection limits, peer check, and dispatch to handlers.

Runs in the supervisor: one thread accepts, one thread per connection. A bad
request gets a typed error response and a log line; nothing a client sends
can stop the daemon serving everyone else.

Two limits, so that idle connections cannot starve the work (``slots.py``):

- a connection still sending its request holds no slot; at most
  ``max_readers`` do at once, and when they are all taken the longest idle
  one (connected for more than ``IDLE_GRACE``) is closed with a ``timeout``
  error to make room, else the newcomer gets ``busy`` at once;
- a run, collect or reload needs one of ``daemon_max_connections`` slots: it
  waits at most ``SLOT_WAIT`` for one (first come, first served), then gets
  ``busy``; status, health and stop need none and are always answered.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import threading
import time

import pydantic

from pytest_fastcollect.supervisor.core import Incoming, Supervisor
from pytest_fastcollect.supervisor.slots import Readers, RunSlots
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire.framing import (
    FrameTimeout,
    FrameTooLarge,
    PeerClosed,
    recv_frame,
    send_frame,
)

log = logging.getLogger("pytest_fastcollect.daemon.server")

# The kernel caps this at net.core.somaxconn; a burst of clients queues here
# instead of failing their connect() with EAGAIN.
BACKLOG = 1024
# A run, collect or reload waits this long for a slot before it is told busy.
SLOT_WAIT = 2.0
# A reader idle for longer than this may be closed to make room for a newcomer.
IDLE_GRACE = 1.0
SLOT_COMMANDS = frozenset({"run", "collect", "reload"})


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process on the other end (SO_PEERCRED / LOCAL_PEERCRED)."""
    if sys.platform.startswith("linux"):
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    if sys.platform == "darwin":
        local_peercred, sol_local = 0x001, 0
        raw = conn.getsockopt(sol_local, local_peercred, struct.calcsize("IIh"))
        _version, uid, _ngroups = struct.unpack("IIh", raw[: struct.calcsize("IIh")])
        return int(uid)
    return None


def max_readers(max_connections: int) -> int:
    return max(64, 4 * max_connections)


class Server:
    def __init__(self, supervisor: Supervisor, listener: socket.socket) -> None:
        self.sup = supervisor
        self.listener = listener
        self.limits = supervisor.config.settings
        self.slots = RunSlots(self.limits.max_connections)
        self.readers = Readers(max_readers(self.limits.max_connections), IDLE_GRACE)
        self._ids_lock = threading.Lock()
        self._in_progress: set[str] = set()
        self._open = 0
        self._handling = 0  # requests between validation and their reply
        self._handled = threading.Condition(self._ids_lock)
        self._closed = False
        supervisor.connection_stats = self.connection_stats

    def serve_forever(self) -> None:
        # Until the listener is closed, not merely until stopping: while runs in
        # progress drain, status and a second stop must still be answered.
        while not self._closed:
            listener = self.listener
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._closed:
                    return
                if listener is self.listener:
                    time.sleep(0.01)  # not a swapped listener: do not spin on a broken one
                continue
            threading.Thread(target=self._handle, args=(conn,), name="conn", daemon=True).start()

    def replace_listener(self, listener: socket.socket | None) -> None:
        """Serve on a new socket (the old file was removed), or stop listening (None).

        Wakes the accept loop either way."""
        old = self.listener
        if listener is not None:
            self.listener = listener
        else:
            self._closed = True
        try:
            # shutdown() wakes the thread blocked in accept(); close() alone does not.
            old.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        old.close()

    def wait_replies(self, timeout: float) -> None:
        """Let requests in hand send their answers (the last frames of stopped runs,
        the answer to a second stop) before the process exits."""
        deadline = time.monotonic() + timeout
        with self._handled:
            while self._handling and time.monotonic() < deadline:
                self._handled.wait(0.05)

    def connection_stats(self) -> p.ConnectionStats:
        return self.slots.stats(self._open, self.readers)

    def _handle(self, conn: socket.socket) -> None:
        with self._ids_lock:
            self._open += 1
        try:
            with conn:
                uid = peer_uid(conn)
                if uid is not None and uid != os.getuid():
                    log.warning(
                        "Refused connection from uid %d (daemon runs as uid %d)", uid, os.getuid()
                    )
                    self.sup.count("refused", ok=False)
                    return
                self._serve_one(conn)
        finally:
            with self._ids_lock:
                self._open -= 1

    def _reply(self, conn: socket.socket, response: pydantic.BaseModel) -> None:
        try:
            send_frame(conn, p.dump(response))
        except OSError:
            pass

    def _fail(
        self,
        conn: socket.socket,
        code: p.ErrorCode,
        message: str,
        request_id: str | None = None,
        command: str = "invalid",
    ) -> None:
        log.warning("Request [%s] rejected: %s: %s", request_id or "-", code.value, message)
        self.sup.count(command, ok=False)
        self._reply(conn, p.ErrorResponse(request_id=request_id, code=code, message=message))

    def _busy(self, conn: socket.socket, message: str, request_id: str | None = None) -> None:
        log.warning("Request [%s] answered busy: %s", request_id or "-", message)
        self.sup.count("busy", ok=False)
        self._reply(
            conn, p.ErrorResponse(request_id=request_id, code=p.ErrorCode.BUSY, message=message)
        )

    def _read_request(self, conn: socket.socket) -> tuple[bytes, list[int]] | None:
        """The request frame and its descriptors; None once the client was answered."""
        reader = self.readers.enter(conn)
        if reader is None:
            self._busy(
                conn, f"the daemon is busy: {self.readers.limit} connections are sending requests"
            )
            return None
        try:
            return recv_frame(
                conn,
                self.limits.max_request_bytes,
                timeout=self.limits.request_timeout,
                want_fds=True,
            )
        except FrameTooLarge as exc:
            self._fail(conn, p.ErrorCode.TOO_LARGE, str(exc))
        except FrameTimeout:
            self._fail(
                conn,
                p.ErrorCode.TIMEOUT,
                f"no complete request within {self.limits.request_timeout:g}s",
            )
        except PeerClosed as exc:
            if reader.evicted:
                self._fail(
                    conn,
                    p.ErrorCode.TIMEOUT,
                    "closed: no complete request while the daemon needed room for other clients",
                )
            elif exc.mid_frame:
                log.warning("Request [-] rejected: client disconnected mid-frame")
                self.sup.count("invalid", ok=False)
        except OSError as exc:
            log.warning("Request [-] rejected: %s", exc)
        finally:
            self.readers.leave(reader)
        return None

    def _parse(self, conn: socket.socket, raw: bytes, fds: list[int]) -> p.Request | None:
        try:
            req: p.Request = p.request_adapter().validate_json(raw)
        except pydantic.ValidationError as exc:
            _close_fds(fds)
            unknown = any(e["type"] == "union_tag_invalid" for e in exc.errors())
            code = p.ErrorCode.UNKNOWN_COMMAND if unknown else p.ErrorCode.BAD_REQUEST
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            self._fail(conn, code, f"{first['msg']} at '{where}'" if where else first["msg"])
            return None
        if req.protocol_version != p.PROTOCOL_VERSION:
            _close_fds(fds)
            self._fail(
                conn,
                p.ErrorCode.VERSION_MISMATCH,
                f"protocol version {req.protocol_version} is not {p.PROTOCOL_VERSION}; "
                "restart the daemon with pytest --daemon-restart",
                req.request_id,
                req.command,
            )
            return None
        return req

    def _serve_one(self, conn: socket.socket) -> None:
        frame = self._read_request(conn)
        if frame is None:
            return
        raw, fds = frame
        req = self._parse(conn, raw, fds)
        if req is None:
            return
        with self._ids_lock:
            duplicate = req.request_id in self._in_progress
            if not duplicate:
                self._in_progress.add(req.request_id)
                self._handling += 1
        if duplicate:
            _close_fds(fds)
            self._fail(
                conn,
                p.ErrorCode.DUPLICATE_ID,
                f"request id {req.request_id} is already in use by a request in progress; "
                "use a new id for each request",
                req.request_id,
                req.command,
            )
            return
        try:
            self._dispatch(conn, req, fds)
        finally:
            with self._ids_lock:
                self._in_progress.discard(req.request_id)
                self._handling -= 1
                self._handled.notify_all()

    def _dispatch(self, conn: socket.socket, req: p.Request, fds: list[int]) -> None:
        needs_slot = req.command in SLOT_COMMANDS
        if needs_slot and not self.slots.acquire(SLOT_WAIT):
            _close_fds(fds)
            self._busy(
                conn,
                f"the daemon is busy: {self.slots.size} runs, collects or reloads in progress",
                req.request_id,
            )
            return
        try:
            self._run_handler(conn, req, fds)
        finally:
            if needs_slot:
                self.slots.release()

    def _run_handler(self, conn: socket.socket, req: p.Request, fds: list[int]) -> None:
        log.info("Processing request [%s] %s", req.request_id, req.command)
        started = time.perf_counter()
        incoming = Incoming(conn, fds)
        try:
            handler = getattr(self.sup, f"handle_{req.command}")
            response = handler(req, incoming)
        except Exception as exc:
            log.exception("Request [%s] %s failed", req.request_id, req.command)
            response = p.ErrorResponse(
                request_id=req.request_id,
                code=p.ErrorCode.INTERNAL,
                message=f"{type(exc).__name__}: {exc}",
            )
        finally:
            incoming.close_fds()
        ok = not isinstance(response, p.ErrorResponse)
        # A refused run ran cold in the client: count it apart from served runs.
        self.sup.count("run_refused" if isinstance(response, p.RunRefused) else req.command, ok=ok)
        self._reply(conn, response)
        log.info(
            "Request [%s] completed in %.4fs: %s",
            req.request_id,
            time.perf_counter() - started,
            "success" if ok else f"error: {getattr(response, 'message', '')}",
        )
        if isinstance(req, p.StopRequest):
            self.sup.stop_event.set()


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
