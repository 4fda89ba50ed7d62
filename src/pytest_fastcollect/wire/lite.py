"""The run path's codec, without pydantic: the client's hot path.

Importing pydantic costs a pytest client ~50-90 ms, as much as the rest of
the hand-off. So the hand-off and the thin client encode ``RunRequest`` and
``SignalRequest`` and decode the five run responses by hand here, and watch
mode (``client/watch.py``, which the thin client runs too) its
``WatchRequest`` and ``WatchResponse``. The daemon
still validates every request with the pydantic models and sends only
model-dumped responses; tests/test_framing_unit.py-style tests keep this
module and ``protocol`` in step (every encoded request validates against the
model; every model-dumped response decodes here).
"""

from __future__ import annotations

import os

from pytest_fastcollect.wire import cjson
from pytest_fastcollect.wire.version import PROTOCOL_VERSION

# Plain classes, no dataclasses, typing or uuid: the thin client's start-up
# time is mostly imports (dataclasses alone costs it ~20 ms).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class LiteProtocolError(Exception):
    pass


class _Response:
    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, f) == getattr(other, f) for f in self.__slots__
        )

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self.__slots__))

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Notice(_Response):
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class Refused(_Response):
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Started(_Response):
    __slots__ = ("generation", "pid")

    def __init__(self, pid: int, generation: int) -> None:
        self.pid = pid
        self.generation = generation


class Finished(_Response):
    __slots__ = ("exit_code", "message", "signal")

    def __init__(self, exit_code: int, signal: int | None, message: str | None) -> None:
        self.exit_code = exit_code
        self.signal = signal
        self.message = message


class Error(_Response):
    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


def _request_id() -> str:
    return os.urandom(8).hex()


RunResponse = Notice | Refused | Started | Finished | Error


def encode_run(
    args: Sequence[str],
    cwd: str,
    env: dict[str, str],
    umask: int,
    python: str,
    sys_path: Sequence[str],
    argv0: str = "pytest",
    closed_fds: Sequence[int] = (),
) -> bytes:
    return cjson.dumps(
        {
            "protocol_version": PROTOCOL_VERSION,
            "request_id": _request_id(),
            "command": "run",
            "args": list(args),
            "cwd": cwd,
            "env": env,
            "umask": umask,
            "python": python,
            "sys_path": list(sys_path),
            "argv0": argv0,
            "fd_count": 3,
            "closed_fds": list(closed_fds),
        }
    )


def encode_signal(signum: int) -> bytes:
    return cjson.dumps(
        {
            "protocol_version": PROTOCOL_VERSION,
            "request_id": _request_id(),
            "command": "signal",
            "signum": signum,
        }
    )


def _field(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], optional: bool = False
) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise LiteProtocolError(f"field {name!r} missing or of the wrong type")
    return value


def _object(raw: bytes) -> dict[str, Any]:
    """A response frame's JSON object."""
    try:
        data = cjson.loads(raw)
    except ValueError as exc:
        raise LiteProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LiteProtocolError("not an object")
    return data


def decode_run_response(raw: bytes) -> RunResponse:
    data = _object(raw)
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


# --- watch mode ----------------------------------------------------------------------


class Watched(_Response):
    """A ``WatchResponse``; ``selection`` None: nothing changed (a start or a timeout)."""

    __slots__ = (
        "changed",
        "companions",
        "cursor",
        "epoch",
        "everything",
        "generation",
        "lost",
        "ready_ms",
        "reasons",
        "reloaded",
        "replaced",
        "selection",
    )

    def __init__(self, data: dict[str, Any]) -> None:
        self.epoch: str = _field(data, "epoch", str)
        self.cursor: int = _field(data, "cursor", int)
        self.changed: list[str] = _strings(data, "changed")
        self.lost: bool = bool(_field(data, "lost", bool, optional=True))
        self.generation: int = _field(data, "generation", int)
        ready = _field(data, "ready_ms", (int, float), optional=True)
        self.ready_ms: float | None = None if ready is None else float(ready)
        self.reloaded: int = _field(data, "reloaded", int, optional=True) or 0
        self.replaced: list[str] = _strings(data, "replaced", optional=True)
        raw = _field(data, "selection", dict, optional=True)
        self.selection: list[str] | None = None
        self.everything = False
        self.reasons: list[str] = []
        self.companions: list[str] = []
        if raw is not None:
            self.everything = bool(_field(raw, "everything", bool))
            self.reasons = _strings(raw, "reasons", optional=True)
            self.selection = _strings(raw, "test_files", optional=True)
            self.companions = _strings(raw, "companions", optional=True)


def encode_watch(
    cursor: int | None,
    epoch: str | None,
    timeout: float,
    test_files: Sequence[str] | None,
    patterns: Sequence[str],
) -> bytes:
    return cjson.dumps(
        {
            "protocol_version": PROTOCOL_VERSION,
            "request_id": _request_id(),
            "command": "watch",
            "cursor": cursor,
            "epoch": epoch,
            "timeout": timeout,
            "test_files": None if test_files is None else list(test_files),
            "patterns": list(patterns),
        }
    )


def _strings(data: dict[str, Any], name: str, optional: bool = False) -> list[str]:
    value = _field(data, name, list, optional)
    if value is None:
        return []
    if not all(isinstance(v, str) for v in value):
        raise LiteProtocolError(f"field {name!r} holds something other than strings")
    return list(value)


def decode_watch_response(raw: bytes) -> Watched | Error:
    data = _object(raw)
    kind = data.get("kind")
    if kind == "watch":
        return Watched(data)
    if kind == "error":
        return Error(_field(data, "code", str), _field(data, "message", str))
    raise LiteProtocolError(f"unexpected response kind {kind!r}")
