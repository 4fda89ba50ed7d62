"""Length-prefixed frames over a Unix stream socket, with optional fd passing.

Spoken by every process. Knows nothing of pydantic: a frame is bytes. The size
cap is checked on the 4-byte header, before any body is read, so an oversized
frame costs the reader nothing. It takes any socket object, and uses ``_socket``
for the constants, and ``struct`` for descriptor arrays: ``socket`` imports
``enum`` and ``selectors``, and ``array`` imports ``collections``, costs the
client's start-up is spared.
"""

from __future__ import annotations

import _socket
import os
import select
import struct
import time

HEADER = struct.Struct(">I")
MAX_FDS = 8
FD_SIZE = struct.calcsize("i")  # SCM_RIGHTS carries C ints


class FrameError(Exception):
    """The peer sent something that is not a frame we accept."""


class FrameTooLarge(FrameError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class FrameTimeout(FrameError):
    pass


class PeerClosed(FrameError):
    """The peer closed the connection (cleanly between frames, or mid-frame)."""

    def __init__(self, mid_frame: bool) -> None:
        super().__init__("peer closed the connection" + (" mid-frame" if mid_frame else ""))
        self.mid_frame = mid_frame


def send_frame(sock: _socket.socket, payload: bytes, fds: tuple[int, ...] = ()) -> None:
    data = HEADER.pack(len(payload)) + payload
    if fds:
        # The ancillary data rides on the first byte of the message; the reader
        # collects it with recvmsg on the header.
        rights = struct.pack(f"{len(fds)}i", *fds)
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        if sent < len(data):
            sock.sendall(data[sent:])
    else:
        sock.sendall(data)


def _wait_readable(sock: _socket.socket, deadline: float | None) -> None:
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FrameTimeout("timed out reading a frame")
    readable, _, _ = select.select([sock], [], [], remaining)
    if not readable:
        raise FrameTimeout("timed out reading a frame")


def _recv_exact(sock: _socket.socket, n: int, deadline: float | None, started: bool) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        _wait_readable(sock, deadline)
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise PeerClosed(mid_frame=started or got > 0)
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_frame(
    sock: _socket.socket,
    max_size: int,
    timeout: float | None = None,
    want_fds: bool = False,
) -> tuple[bytes, list[int]]:
    """Read one frame. Returns (payload, received fds).

    ``timeout`` bounds the whole frame, not each recv, so a peer that trickles
    one byte at a time cannot hold a connection open past the limit.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    fds: list[int] = []
    header = b""
    if want_fds:
        _wait_readable(sock, deadline)
        msg, ancdata, _flags, _addr = sock.recvmsg(
            HEADER.size, _socket.CMSG_SPACE(MAX_FDS * FD_SIZE)
        )
        for level, kind, cdata in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                count = len(cdata) // FD_SIZE
                fds.extend(struct.unpack(f"{count}i", cdata[: count * FD_SIZE]))
        if not msg:
            _close_all(fds)
            raise PeerClosed(mid_frame=False)
        header = msg
    try:
        if len(header) < HEADER.size:
            header += _recv_exact(sock, HEADER.size - len(header), deadline, bool(header))
        (size,) = HEADER.unpack(header)
        if size > max_size:
            raise FrameTooLarge(size, max_size)
        payload = _recv_exact(sock, size, deadline, True) if size else b""
    except BaseException:
        _close_all(fds)
        raise
    return payload, fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def read_to_eof(fd: int) -> bytes:
    """Everything a pipe delivers until its last writer closes it (blocking)."""
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
