"""The status and health answers, decoded without pydantic: the quick verbs' codec.

Importing pydantic and building the status models costs a ``pytest
--daemon-status`` more than everything else it does of its own (about 100 ms
of CPU here); the verbs need a dozen small records. So, as ``lite.py`` does
for runs, this module encodes the two requests by hand and checks the two
answers against a small schema of each model: every field there with the
right type, no field the model does not have. Decoded records give
attribute access as the models do (``status.metrics.runs``,
``status.state.value``), so ``client/ui.py`` renders either.
``tests/test_lite_verbs.py`` keeps these schemas in step with
``protocol.py``: the same fields, required or not, and every model-dumped
answer decodes to what the model dumps.

Standard library only (no typing, dataclasses or enum at run time), so the
start-up hook may use it before pytest is imported.
"""

from __future__ import annotations

import os

from pytest_fastcollect.wire import cjson
from pytest_fastcollect.wire.version import PROTOCOL_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REQUIRED = object()


class LiteVerbError(Exception):
    pass


class Choice(str):
    """An enum member as the models give it: a string with ``.value``."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str(self)


class Record:
    """A decoded model: its fields as attributes; ``as_dict()`` is the model's dump."""

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)
        self._name = name

    def as_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items() if k != "_name"}

    def __repr__(self) -> str:
        return f"{self._name}({self.as_dict()!r})"


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, Choice):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- kinds: each checks and converts one JSON value --------------------------------------


class Kind:
    def decode(self, value: Any, where: str) -> Any:
        raise NotImplementedError


class Scalar(Kind):
    def __init__(self, *types: type, nullable: bool = False) -> None:
        self.types = types
        self.nullable = nullable

    def decode(self, value: Any, where: str) -> Any:
        if value is None and self.nullable:
            return None
        # JSON has one number type: an int is a float too, a bool is neither.
        ok = isinstance(value, self.types) and not (
            isinstance(value, bool) and bool not in self.types
        )
        if (
            not ok
            and float in self.types
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            return float(value)
        if not ok:
            raise LiteVerbError(f"{where}: expected {'/'.join(t.__name__ for t in self.types)}")
        return value


class OneOf(Kind):
    def __init__(self, *values: str, choice: bool = True) -> None:
        self.values = values
        self.choice = choice

    def decode(self, value: Any, where: str) -> Any:
        if value not in self.values:
            raise LiteVerbError(f"{where}: {value!r} is not one of {self.values}")
        return Choice(value) if self.choice else value


class ListOf(Kind):
    def __init__(self, item: Kind) -> None:
        self.item = item

    def decode(self, value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise LiteVerbError(f"{where}: expected a list")
        return [self.item.decode(v, f"{where}[{i}]") for i, v in enumerate(value)]


class DictOf(Kind):
    def __init__(self, item: Kind) -> None:
        self.item = item

    def decode(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise LiteVerbError(f"{where}: expected an object")
        return {str(k): self.item.decode(v, f"{where}.{k}") for k, v in value.items()}


class Schema(Kind):
    """A model: field name -> (kind, default or REQUIRED)."""

    def __init__(self, name: str, fields: dict[str, tuple[Kind, Any]], nullable: bool = False):
        self.name = name
        self.fields = fields
        self.nullable = nullable

    def decode(self, value: Any, where: str = "") -> Any:
        where = where or self.name
        if value is None and self.nullable:
            return None
        if not isinstance(value, dict):
            raise LiteVerbError(f"{where}: expected an object")
        extra = set(value) - set(self.fields)
        if extra:
            raise LiteVerbError(f"{where}: unknown field {sorted(extra)[0]!r}")
        out = {}
        for name, (kind, default) in self.fields.items():
            if name in value:
                out[name] = kind.decode(value[name], f"{where}.{name}")
            elif default is REQUIRED:
                raise LiteVerbError(f"{where}: field {name!r} missing")
            else:
                out[name] = default() if callable(default) else default
        return Record(self.name, out)


STR = Scalar(str)
INT = Scalar(int)
FLOAT = Scalar(float, int)
BOOL = Scalar(bool)
OPT_STR = Scalar(str, nullable=True)
OPT_INT = Scalar(int, nullable=True)
OPT_FLOAT = Scalar(float, int, nullable=True)
R = REQUIRED

METRICS = Schema(
    "Metrics",
    {
        "total_requests": (INT, 0),
        "successful_requests": (INT, 0),
        "failed_requests": (INT, 0),
        "error_rate": (FLOAT, 0.0),
        "by_command": (DictOf(INT), dict),
        "runs": (INT, 0),
        "runs_refused": (INT, 0),
        "collects": (INT, 0),
        "standby_runs": (INT, 0),
        "fresh_runs": (INT, 0),
        "prepared_runs": (INT, 0),
        "collect_cache_hits": (INT, 0),
    },
)
IMPORT_FAILURE = Schema("ImportFailure", {"path": (STR, R), "error": (STR, R)})
WARMUP = Schema(
    "WarmupStats",
    {
        "imported": (INT, 0),
        "total": (INT, 0),
        "seconds": (FLOAT, 0.0),
        "failures": (ListOf(IMPORT_FAILURE), list),
        "learned_imports": (INT, 0),
        "unlearnable_imports": (INT, 0),
        "pending_imports": (INT, 0),
    },
)
LAST_RELOAD = Schema(
    "LastReload",
    {
        "at": (FLOAT, R),
        "files": (ListOf(STR), R),
        "modules": (INT, R),
        "duration_ms": (FLOAT, R),
        "action": (STR, R),
    },
    nullable=True,
)
RELOAD = Schema(
    "ReloadStats",
    {
        "reloads": (INT, 0),
        "modules_reloaded": (INT, 0),
        "replacements": (DictOf(INT), dict),
        "last": (LAST_RELOAD, None),
        "mean_ms": (OPT_FLOAT, None),
        "p95_ms": (OPT_FLOAT, None),
        "pending_changes": (INT, 0),
        "events_seen": (INT, 0),
        "watcher": (STR, "none"),
    },
)
PROCESS = Schema(
    "ProcessInfo",
    {
        "role": (STR, R),
        "pid": (INT, R),
        "rss_bytes": (INT, R),
        "pss_bytes": (OPT_INT, None),
        "cpu_percent": (FLOAT, R),
        "cpu_seconds": (FLOAT, R),
        "threads": (INT, R),
        "open_fds": (INT, R),
        "children": (INT, R),
        "zombies": (INT, R),
    },
)
CONNECTIONS = Schema(
    "ConnectionStats",
    {
        "open": (INT, 0),
        "reading": (INT, 0),
        "max_reading": (INT, 0),
        "running": (INT, 0),
        "max_running": (INT, 0),
        "slot_waits": (INT, 0),
        "max_slot_wait_ms": (FLOAT, 0.0),
        "busy": (INT, 0),
        "evicted": (INT, 0),
        "max_handover_ms": (FLOAT, 0.0),
        "late_handovers": (INT, 0),
    },
)
VERSIONS = Schema(
    "Versions",
    {"plugin": (STR, R), "protocol": (INT, R), "python": (STR, R), "pytest": (STR, R)},
)
DAEMON_STATES = ("warming", "ready", "reloading", "replacing", "failed", "stopping")
STATUS = Schema(
    "StatusResponse",
    {
        "kind": (OneOf("status", choice=False), "status"),
        "request_id": (OPT_STR, None),
        "pid": (INT, R),
        "state": (OneOf(*DAEMON_STATES), R),
        "uptime": (FLOAT, R),
        "root": (STR, R),
        "socket_path": (STR, R),
        "log_path": (STR, R),
        "versions": (VERSIONS, R),
        "generation": (INT, R),
        "warm_pid": (OPT_INT, R),
        "warm_paths": (ListOf(STR), R),
        "cached_modules": (INT, R),
        "project_modules": (INT, R),
        "watched_paths": (ListOf(STR), R),
        "unwatched_paths": (DictOf(STR), dict),
        "inotify_watches": (OPT_INT, None),
        "metrics": (METRICS, R),
        "warmup": (WARMUP, R),
        "reload": (RELOAD, R),
        # An answer without it reads as the model's default: every count 0.
        "connections": (CONNECTIONS, lambda: CONNECTIONS.decode({})),
        "processes": (ListOf(PROCESS), R),
        "limits": (DictOf(FLOAT), R),
    },
)
CHECK = Schema(
    "HealthCheck",
    {
        "ok": (BOOL, R),
        "value": (Scalar(float, int, str, bool, nullable=True), R),
        "display": (STR, ""),
        "detail": (STR, ""),
        "severity": (OneOf("degraded", "unhealthy", choice=False), "unhealthy"),
    },
)
HEALTH = Schema(
    "HealthResponse",
    {
        "kind": (OneOf("health", choice=False), "health"),
        "request_id": (OPT_STR, None),
        "status": (OneOf("healthy", "degraded", "unhealthy"), R),
        "pid": (INT, R),
        "generation": (INT, R),
        "uptime": (FLOAT, R),
        "checks": (DictOf(CHECK), R),
        # Optional, as in the model: the figures of a daemon that has not reloaded.
        "reload": (RELOAD, lambda: RELOAD.decode({}, "reload")),
    },
)
ERROR = Schema(
    "ErrorResponse",
    {
        "kind": (OneOf("error", choice=False), "error"),
        "request_id": (OPT_STR, None),
        "code": (STR, R),
        "message": (STR, R),
    },
)
BY_KIND = {"status": STATUS, "health": HEALTH, "error": ERROR}


def encode_request(command: str, **fields: Any) -> bytes:
    """A ``status`` or ``health`` request (``full=True`` for status: every figure)."""
    return cjson.dumps(
        {
            "protocol_version": PROTOCOL_VERSION,
            "request_id": os.urandom(8).hex(),
            "command": command,
            **fields,
        }
    )


def decode_response(raw: bytes, expected: str) -> tuple[Record, dict[str, Any]]:
    """The answer as a record, and as plain JSON data (for ``--daemon-json``).

    ``expected``: "status" or "health"; an ``error`` answer decodes too.
    """
    try:
        data = cjson.loads(raw)
    except ValueError as exc:
        raise LiteVerbError(f"not JSON: {exc}") from exc
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in (expected, "error"):
        raise LiteVerbError(f"unexpected answer {kind!r} to {expected}")
    record = BY_KIND[kind].decode(data)
    return record, record.as_dict()
