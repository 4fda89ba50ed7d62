"""The run path's codec, without pydantic: the client's hot path.

Importing pydantic costs a pytest client ~50-90 ms, as much as the rest of
the hand-off. So the hand-off and the thin client encode ``RunRequest`` and
``SignalRequest`` and decode the five run responses by hand here. The daemon
still validates every request with the pydantic models and sends only
model-dumped responses; tests/test_framing_unit.py-style tests keep this
module and ``protocol`` in step (every encoded request validates against the
model; every model-dumped response decodes here).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_fastcollect.wire.version import PROTOCOL_VERSION


class LiteProtocolError(Exception):
    pass


@dataclass(frozen=True)
class Notice:
    message: str


@dataclass(frozen=True)
class Refused:
    reason: str


@dataclass(frozen=True)
class Started:
    pid: int
    generation: int


@dataclass(frozen=True)
class Finished:
    exit_code: int
    signal: int | None
    message: str | None


@dataclass(frozen=True)
class Error:
    code: str
    message: str


RunResponse = Notice | Refused | Started | Finished | Error


def encode_run(
    args: Sequence[str],
    cwd: str,
    env: dict[str, str],
    umask: int,
    python: str,
    sys_path: Sequence[str],
    argv0: str = "pytest",
) -> bytes:
    return json.dumps(
        {
            "protocol_version": PROTOCOL_VERSION,
            "request_id": uuid.uuid4().hex[:16],
            "command": "run",
            "args": list(args),
            "cwd": cwd,
            "env": env,
            "umask": umask,
            "python": python,
            "sys_path": list(sys_path),
            "argv0": argv0,
            "fd_count": 3,
        }
    ).encode()


def encode_signal(signum: int) -> bytes:
    return json.dumps(
        {
            "protocol_version": PROTOCOL_VERSION,
            "request_id": uuid.uuid4().hex[:16],
            "command": "signal",
            "signum": signum,
        }
    ).encode()


def _field(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], optional: bool = False
) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise LiteProtocolError(f"field {name!r} missing or of the wrong type")
    return value


def decode_run_response(raw: bytes) -> RunResponse:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise LiteProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LiteProtocolError("not an object")
    kind = data.get("kind")
    if kind == "notice":
        return Notice(_field(data, "message", str))
    if kind == "run_refused":
        return Refused(_field(data, "reason", str))
    if kind == "run_started":
        return Started(_field(data, "pid", int), _field(data, "generation", int))
    if kind == "run_finished":
        return Finished(
            _field(data, "exit_code", int),
            _field(data, "signal", int, optional=True),
            _field(data, "message", str, optional=True),
        )
    if kind == "error":
        return Error(_field(data, "code", str), _field(data, "message", str))
    raise LiteProtocolError(f"unexpected response kind {kind!r}")
