"""Unit tests of the protocol models, validated from raw bytes as the supervisor and the client do."""

from __future__ import annotations

import json

import pydantic
import pytest

from pytest_fastcollect.wire import protocol as p

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
