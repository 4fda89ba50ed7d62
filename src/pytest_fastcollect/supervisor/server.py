"""Accept loop, connection limits, peer check, and dispatch to handlers.

Runs in the supervisor: one thread accepts, one thread per connection. A bad
request gets a typed error response and a log line; nothing a client sends
can stop the daemon serving everyone else.
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
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire.framing import (
    FrameTimeout,
    FrameTooLarge,
    PeerClosed,
    recv_frame,
    send_frame,
)

log = logging.getLogger("pytest_fastcollect.daemon.server")


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


class Server:
    def __init__(self, supervisor: Supervisor, listener: socket.socket) -> None:
        self.sup = supervisor
        self.listener = listener
        self.limits = supervisor.config.settings
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)

    def serve_forever(self) -> None:
        while not self.sup.stop_event.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                if self.sup.stop_event.is_set():
                    return
                continue
            threading.Thread(target=self._handle, args=(conn,), name="conn", daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                log.warning(
                    "Refused connection from uid %d (daemon runs as uid %d)", uid, os.getuid()
                )
                self.sup.count("refused", ok=False)
                return
            # Beyond the limit a connection waits for a slot (as long as a
            # request may take to arrive) rather than failing a burst of clients.
            if not self._slots.acquire(timeout=self.limits.request_timeout):
                log.warning(
                    "Refused connection: %d connections already open", self.limits.max_connections
                )
                self.sup.count("busy", ok=False)
                self._reply(
                    conn,
                    p.ErrorResponse(
                        code=p.ErrorCode.BUSY,
                        message=(
                            f"the daemon already serves {self.limits.max_connections} connections; try again"
                        ),
                    ),
                )
                return
            try:
                self._serve_one(conn)
            finally:
                self._slots.release()

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

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            raw, fds = recv_frame(
                conn,
                self.limits.max_request_bytes,
                timeout=self.limits.request_timeout,
                want_fds=True,
            )
        except FrameTooLarge as exc:
            self._fail(conn, p.ErrorCode.TOO_LARGE, str(exc))
            return
        except FrameTimeout:
            self._fail(
                conn,
                p.ErrorCode.TIMEOUT,
                f"no complete request within {self.limits.request_timeout:g}s",
            )
            return
        except PeerClosed as exc:
            if exc.mid_frame:
                log.warning("Request [-] rejected: client disconnected mid-frame")
                self.sup.count("invalid", ok=False)
            return
        except OSError as exc:
            log.warning("Request [-] rejected: %s", exc)
            return
        try:
            req = p.request_adapter().validate_json(raw)
        except pydantic.ValidationError as exc:
            for fd in fds:
                os.close(fd)
            unknown = any(e["type"] == "union_tag_invalid" for e in exc.errors())
            code = p.ErrorCode.UNKNOWN_COMMAND if unknown else p.ErrorCode.BAD_REQUEST
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            self._fail(conn, code, f"{first['msg']} at '{where}'" if where else first["msg"])
            return
        if req.protocol_version != p.PROTOCOL_VERSION:
            for fd in fds:
                os.close(fd)
            self._fail(
                conn,
                p.ErrorCode.VERSION_MISMATCH,
                f"protocol version {req.protocol_version} is not {p.PROTOCOL_VERSION}; "
                "restart the daemon with pytest --daemon-restart",
                req.request_id,
                req.command,
            )
            return
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
