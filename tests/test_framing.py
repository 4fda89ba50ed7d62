"""Unit tests of wire/framing.py: length-prefixed frames and fd passing over socketpairs."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_fastcollect.wire import framing
from pytest_fastcollect.wire.framing import (
    FrameTimeout,
    FrameTooLarge,
    PeerClosed,
    recv_frame,
    send_frame,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def open_fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


# --- framing ----------------------------------------------------------------------------------


def test_header_is_four_byte_big_endian_length(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    send_frame(a, b"hello")
    assert b.recv(100) == b"\x00\x00\x00\x05hello"


@pytest.mark.parametrize("payload", [b"", b"x", b'{"command": "status"}', bytes(range(256)) * 10])
def test_round_trip(pair: tuple[socket.socket, socket.socket], payload: bytes) -> None:
    a, b = pair
    send_frame(a, payload)
    got, fds = recv_frame(b, 1 << 20, timeout=5)
    assert got == payload
    assert fds == []


def test_large_frame_round_trip_through_a_writer_thread(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    payload = os.urandom(3 * 1024 * 1024 + 17)
    writer = threading.Thread(target=send_frame, args=(a, payload))
    writer.start()
    got, _ = recv_frame(b, 4 * 1024 * 1024, timeout=10)
    writer.join(10)
    assert got == payload


def test_frames_in_sequence_are_kept_apart(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    for i in range(5):
        send_frame(a, f"frame {i}".encode())
    assert [recv_frame(b, 100, timeout=5)[0] for _ in range(5)] == [
        f"frame {i}".encode() for i in range(5)
    ]


def test_size_limit_is_checked_on_the_header_before_any_body(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    # Only the header of an 11 MB frame: the reader must refuse at once, not wait for the body.
    a.sendall(struct.pack(">I", 11 * 1024 * 1024))
    started = time.monotonic()
    with pytest.raises(FrameTooLarge) as info:
        recv_frame(b, 10 * 1024 * 1024, timeout=5)
    assert time.monotonic() - started < 1.0
    assert info.value.size == 11 * 1024 * 1024
    assert info.value.limit == 10 * 1024 * 1024
    assert "exceeds the limit" in str(info.value)


def test_frame_exactly_at_the_limit_is_accepted(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    send_frame(a, b"x" * 1000)
    assert recv_frame(b, 1000, timeout=5)[0] == b"x" * 1000


def test_nothing_sent_times_out(pair: tuple[socket.socket, socket.socket]) -> None:
    _a, b = pair
    started = time.monotonic()
    with pytest.raises(FrameTimeout):
        recv_frame(b, 100, timeout=0.2)
    assert 0.15 < time.monotonic() - started < 2.0


def test_timeout_bounds_the_whole_frame_not_each_recv(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    stop = threading.Event()

    def trickle() -> None:
        a.sendall(struct.pack(">I", 100))
        while not stop.wait(0.05):
            try:
                a.sendall(b"x")
            except OSError:
                return

    writer = threading.Thread(target=trickle)
    writer.start()
    started = time.monotonic()
    try:
        with pytest.raises(FrameTimeout):
            recv_frame(b, 1000, timeout=0.5)
        # 100 bytes at one per 50 ms would take 5 s; the limit is for the whole frame.
        assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        writer.join(5)


def test_peer_closed_between_frames_is_not_mid_frame(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.close()
    with pytest.raises(PeerClosed) as info:
        recv_frame(b, 100, timeout=5)
    assert info.value.mid_frame is False


@pytest.mark.parametrize(
    "sent", [b"\x00\x00", struct.pack(">I", 50), struct.pack(">I", 50) + b"partial"]
)
def test_peer_closed_mid_frame(pair: tuple[socket.socket, socket.socket], sent: bytes) -> None:
    a, b = pair
    a.sendall(sent)
    a.close()
    with pytest.raises(PeerClosed) as info:
        recv_frame(b, 100, timeout=5)
    assert info.value.mid_frame is True
    assert "mid-frame" in str(info.value)


@pytest.mark.parametrize("want_fds", [False, True])
def test_peer_closed_mid_frame_with_or_without_fd_reception(
    pair: tuple[socket.socket, socket.socket], want_fds: bool
) -> None:
    a, b = pair
    a.sendall(b"\x00")
    a.close()
    with pytest.raises(PeerClosed) as info:
        recv_frame(b, 100, timeout=5, want_fds=want_fds)
    assert info.value.mid_frame is True


def test_fds_pass_with_the_frame(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        send_frame(a, b"with fds", fds=(w, r))
        payload, fds = recv_frame(b, 100, timeout=5, want_fds=True)
        assert payload == b"with fds"
        assert len(fds) == 2
        assert all(fd not in (r, w) for fd in fds)
        os.write(fds[0], b"through the passed fd")
        assert os.read(r, 100) == b"through the passed fd"
        for fd in fds:
            os.close(fd)
    finally:
        os.close(r)
        os.close(w)


def test_passed_fds_are_closed_when_the_frame_is_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        before = open_fds()
        a.sendmsg(
            [struct.pack(">I", 5000)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", w))]
        )
        with pytest.raises(FrameTooLarge):
            recv_frame(b, 100, timeout=5, want_fds=True)
        assert open_fds() == before, "a received fd leaked after a refused frame"
    finally:
        os.close(r)
        os.close(w)


def test_passed_fds_are_closed_when_the_peer_closes_mid_frame(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        a.sendmsg([b"\x00\x00"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", w))])
        a.close()
        before = open_fds()
        with pytest.raises(PeerClosed):
            recv_frame(b, 100, timeout=5, want_fds=True)
        assert open_fds() == before, "a received fd leaked after a broken frame"
    finally:
        os.close(r)
        os.close(w)


def test_framing_knows_no_pydantic() -> None:
    source = Path(framing.__file__).read_text()
    assert "pydantic" not in source.replace("Knows nothing of pydantic", "")
