"""Unit tests of wire/framing.py and the protocol models, without any daemon.

Frames travel over socketpairs in this process; the models are validated
from raw bytes exactly as the supervisor and the client do.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest

from pytest_fastcollect.wire import framing
from pytest_fastcollect.wire import protocol as p
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


# --- protocol models --------------------------------------------------------------------------


def validate_request(data: object) -> p.Request:
    return p.request_adapter().validate_json(json.dumps(data).encode())


@pytest.mark.parametrize(
    ("model", "command"),
    [
        (p.StatusRequest(), "status"),
        (p.HealthRequest(), "health"),
        (p.CollectRequest(root="/src/app"), "collect"),
        (p.ReloadRequest(), "reload"),
        (p.StopRequest(), "stop"),
        (p.SignalRequest(signum=2), "signal"),
        (
            p.RunRequest(
                args=["-q"],
                cwd="/src/app",
                env={"A": "1"},
                umask=0o22,
                python="/usr/bin/python3",
                sys_path=["/src/app"],
            ),
            "run",
        ),
    ],
)
def test_every_request_round_trips_through_the_union(model: p.Request, command: str) -> None:
    raw = p.dump(model)
    assert isinstance(raw, bytes)
    data = json.loads(raw)
    assert data["command"] == command
    assert data["protocol_version"] == p.PROTOCOL_VERSION
    assert data["request_id"]
    back = p.request_adapter().validate_json(raw)
    assert type(back) is type(model)
    assert back == model


def test_request_ids_are_fresh() -> None:
    assert p.StatusRequest().request_id != p.StatusRequest().request_id


def test_extra_field_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        validate_request({"command": "status", "bogus": 1})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_extra_field_in_a_nested_model_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        validate_request({"command": "collect", "root": ".", "filters": {"-k": "x", "--lf": True}})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_unknown_command_is_a_union_tag_error() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        validate_request({"command": "frobnicate"})
    assert info.value.errors()[0]["type"] == "union_tag_invalid"


def test_missing_command_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        validate_request({"request_id": "x"})
    assert info.value.errors()[0]["type"] == "union_tag_not_found"


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'"status"', b"\xff\xfe"])
def test_malformed_json_is_a_validation_error(raw: bytes) -> None:
    with pytest.raises(pydantic.ValidationError):
        p.request_adapter().validate_json(raw)


def test_protocol_version_is_carried_and_defaults_to_the_current_one() -> None:
    assert validate_request({"command": "status"}).protocol_version == p.PROTOCOL_VERSION
    assert validate_request({"command": "status", "protocol_version": 99}).protocol_version == 99


def test_request_id_is_bounded() -> None:
    validate_request({"command": "status", "request_id": "a" * 64})
    with pytest.raises(pydantic.ValidationError):
        validate_request({"command": "status", "request_id": "a" * 65})


@pytest.mark.parametrize("umask", [-1, 0o1000])
def test_run_request_umask_is_bounded(umask: int) -> None:
    with pytest.raises(pydantic.ValidationError):
        validate_request(
            {
                "command": "run",
                "args": [],
                "cwd": "/",
                "env": {},
                "umask": umask,
                "python": "python",
                "sys_path": [],
            }
        )


@pytest.mark.parametrize("signum", [0, 65])
def test_signal_number_is_bounded(signum: int) -> None:
    with pytest.raises(pydantic.ValidationError):
        validate_request({"command": "signal", "signum": signum})


def test_collect_filters_use_the_seed_documents_keys() -> None:
    filters = p.CollectFilters.model_validate({"-k": "test_user", "-m": "slow", "paths": ["tests"]})
    assert (filters.keyword, filters.markers, filters.paths) == ("test_user", "slow", ["tests"])
    on_wire = json.loads(p.dump(p.CollectRequest(root="/r", filters=filters)))
    assert on_wire["filters"] == {"-k": "test_user", "-m": "slow", "paths": ["tests"]}
    with pytest.raises(pydantic.ValidationError):
        p.CollectFilters.model_validate({"-x": True})


def test_collect_request_needs_a_root() -> None:
    with pytest.raises(pydantic.ValidationError):
        validate_request({"command": "collect"})


def test_responses_are_discriminated_by_kind() -> None:
    err = p.response_adapter().validate_json(
        p.dump(p.ErrorResponse(code=p.ErrorCode.TOO_LARGE, message="m"))
    )
    assert isinstance(err, p.ErrorResponse)
    assert err.code is p.ErrorCode.TOO_LARGE
    stop = p.response_adapter().validate_json(b'{"kind": "stop", "pid": 12}')
    assert isinstance(stop, p.StopResponse)
    assert stop.pid == 12
    with pytest.raises(pydantic.ValidationError):
        p.response_adapter().validate_json(b'{"kind": "stop", "pid": 12, "extra": 1}')
    with pytest.raises(pydantic.ValidationError):
        p.response_adapter().validate_json(b'{"kind": "nonsense"}')


def test_error_codes_are_stable_strings() -> None:
    assert {c.value for c in p.ErrorCode} >= {
        "bad_request",
        "unknown_command",
        "too_large",
        "timeout",
        "version_mismatch",
        "outside_root",
        "not_ready",
        "busy",
        "internal",
    }
    with pytest.raises(pydantic.ValidationError):
        p.response_adapter().validate_json(b'{"kind": "error", "code": "oops", "message": "m"}')


def test_collect_response_has_the_seed_documents_fields() -> None:
    resp = p.CollectResponse(
        node_ids=["t.py::test_a"],
        count=1,
        errors=[],
        exit_code=0,
        collection_time=0.01,
        generation=1,
    )
    data = json.loads(p.dump(resp))
    assert data["collection_time"] == 0.01
    assert data["node_ids"] == ["t.py::test_a"]


def test_health_check_values_and_verdicts() -> None:
    from pytest_fastcollect.supervisor.health import verdict

    ok = p.HealthCheck(ok=True, value=1)
    soft = p.HealthCheck(ok=False, value=0.5, severity="degraded")
    hard = p.HealthCheck(ok=False, value=None)
    assert verdict({"a": ok}) is p.HealthVerdict.HEALTHY
    assert verdict({"a": ok, "b": soft}) is p.HealthVerdict.DEGRADED
    assert verdict({"a": ok, "b": soft, "c": hard}) is p.HealthVerdict.UNHEALTHY
    with pytest.raises(pydantic.ValidationError):
        p.HealthCheck(ok=True, value=1, severity="fatal")  # type: ignore[arg-type]


def test_start_events_are_one_json_line_each() -> None:
    ready = p.StartReady(
        pid=1, socket_path="/s", log_path="/l", warmup=p.WarmupStats(imported=1, total=2)
    )
    for event in (p.StartProgress(done=1, total=2), ready, p.StartFailed(message="no")):
        line = p.dump(event)
        assert b"\n" not in line
        assert p.start_event_adapter().validate_json(line) == event


def test_daemon_record_round_trips() -> None:
    record = p.DaemonRecord(
        pid=5,
        create_time=1.5,
        root="/r",
        socket_path="/s",
        log_path="/l",
        version="0",
        warm_args=["tests"],
    )
    assert p.DaemonRecord.model_validate_json(record.model_dump_json()) == record
    with pytest.raises(pydantic.ValidationError):
        p.DaemonRecord.model_validate_json(b'{"pid": 5}')


# --- the pydantic-free run codec stays in step with the models --------------------------------


def test_lite_run_request_validates_against_the_model() -> None:
    from pytest_fastcollect.wire import lite

    raw = lite.encode_run(
        ["-q", "tests"], "/src/app", {"A": "1"}, 0o22, "/usr/bin/python3", ["/src/app"]
    )
    req = p.request_adapter().validate_json(raw)
    assert isinstance(req, p.RunRequest)
    assert (req.args, req.cwd, req.env, req.umask, req.fd_count) == (
        ["-q", "tests"],
        "/src/app",
        {"A": "1"},
        0o22,
        3,
    )
    sig = p.request_adapter().validate_json(lite.encode_signal(15))
    assert isinstance(sig, p.SignalRequest)
    assert sig.signum == 15


@pytest.mark.parametrize(
    "model",
    [
        p.Notice(message="reloading 1 module(s)"),
        p.RunRefused(reason="the warm process is not available"),
        p.RunStarted(pid=12, generation=3),
        p.RunFinished(exit_code=1),
        p.RunFinished(exit_code=130, signal=2, message="interrupted"),
        p.ErrorResponse(code=p.ErrorCode.BUSY, message="busy"),
    ],
)
def test_every_run_response_decodes_in_the_lite_codec(model: pydantic.BaseModel) -> None:
    from pytest_fastcollect.wire import lite

    decoded = lite.decode_run_response(p.dump(model))
    data = model.model_dump(mode="json")
    fields = {name: getattr(decoded, name) for name in type(decoded).__slots__}
    assert fields, "decoded into an empty object"
    for name, value in fields.items():
        assert data[name] == value, name


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"kind": "status"}',
        b'{"kind": "run_started", "pid": "1"}',
        b'{"kind": "run_finished", "exit_code": true}',
    ],
)
def test_lite_codec_refuses_what_the_models_would(raw: bytes) -> None:
    from pytest_fastcollect.wire import lite

    with pytest.raises(lite.LiteProtocolError):
        lite.decode_run_response(raw)
