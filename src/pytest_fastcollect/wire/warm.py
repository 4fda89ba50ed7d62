"""Orders from the supervisor to the warm process, and the events it sends back.

Spoken on the control socket between the supervisor and the warm process,
and imported by both sides. Each message is a frozen dataclass; ``encode``
turns one into a JSON frame. The warm process never imports pydantic: it
builds orders from the decoded JSON with ``decode_order`` (the supervisor is
the only writer of that socket). The supervisor validates every event
against these same classes with pydantic (``supervisor/lifecycle.py``)
before it acts on it; ``__pydantic_config__`` is read there and only there.

Ids in orders are the supervisor's own, never a client's request id: a
client cannot make two orders collide nor put text into a file name.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Literal

_FORBID = {"extra": "forbid"}  # pydantic's ConfigDict, as a plain dict


class ReloadFailure(str, enum.Enum):
    """Why an in-place reload could not be trusted; the supervisor replaces the process."""

    ALIVE = "alive"  # an object of a purged module is still referenced elsewhere
    REIMPORT_ERROR = "reimport-error"  # importing a purged module again raised
    PLAIN_IMPORT = "plain-import"  # a module pytest rewrites came back without rewriting


def encode(message: Any) -> bytes:
    return json.dumps(dataclasses.asdict(message)).encode()


# --- orders (supervisor -> warm process) ---------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ForkOrder:
    op: Literal["fork"] = "fork"
    id: str
    mode: Literal["run", "collect"]
    args: list[str]
    cwd: str
    env: dict[str, str]
    umask: int
    argv0: str = "pytest"
    closed_fds: list[int] = dataclasses.field(default_factory=list)  # stdio the client lacks
    # When the supervisor received the request and ordered the fork (time.monotonic,
    # one clock for every process on the machine): for the run's timeline (timeline.py).
    stamps: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReloadOrder:
    op: Literal["reload"] = "reload"
    id: str
    modules: list[str]  # purge these
    reimport: list[str]  # then import these again (project modules, never test modules)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RewarmOrder:
    op: Literal["rewarm"] = "rewarm"
    id: str
    files: list[str]  # test modules to import again through pytest's collection


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrialOrder:
    """Trial-import library modules in a forked child; answered by ``Trialled`` when
    the child is done, while the warm process goes on serving."""

    op: Literal["trial"] = "trial"
    id: str
    modules: list[str]  # library modules runs imported
    # module -> the file it must come from (the project layer's), else it is refused
    expected: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScanOrder:
    """To a project layer: find the registrant modules (``warm/registrants.py``) in a
    forked child, answered by ``Scanned`` while the layer goes on serving."""

    op: Literal["scan"] = "scan"
    id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerOrder:
    """To the base process: fork a project layer, connected by a new control socket
    (sent back with ``LayerForked``)."""

    op: Literal["layer"] = "layer"
    id: str
    env: dict[str, str]  # the environment the project layer warms up with


@dataclasses.dataclass(frozen=True, kw_only=True)
class LearnOrder:
    """Import modules whose trial passed (a few at a time, so runs can come between)."""

    op: Literal["learn"] = "learn"
    id: str
    modules: list[str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExitOrder:
    """Exit once the running workers have finished (the process was retired)."""

    op: Literal["exit"] = "exit"
    id: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PingOrder:
    """Answer at once (``Pong``): the supervisor checks that the process still answers.

    ``changed``: files changed that the layer need not reload (new, touched, not
    imported): a standby prepared before them is discarded (standby_run.py)."""

    op: Literal["ping"] = "ping"
    id: str
    changed: bool = False


Order = (
    ForkOrder
    | ReloadOrder
    | RewarmOrder
    | TrialOrder
    | LearnOrder
    | ScanOrder
    | LayerOrder
    | ExitOrder
    | PingOrder
)
ORDERS: dict[str, type[Order]] = {
    "fork": ForkOrder,
    "layer": LayerOrder,
    "reload": ReloadOrder,
    "rewarm": RewarmOrder,
    "trial": TrialOrder,
    "learn": LearnOrder,
    "scan": ScanOrder,
    "exit": ExitOrder,
    "ping": PingOrder,
}


def decode_order(raw: bytes) -> Order:
    data = json.loads(raw)
    return ORDERS[data["op"]](**data)


# --- events (warm process -> supervisor) ---------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarmKey:
    """What the warm process baked in at import time (see ``fingerprint.py``)."""

    __pydantic_config__ = _FORBID
    python: str
    sys_path: list[str]  # as the interpreter set it up, absolute (fingerprint.py)
    options: dict[str, str]
    env: dict[str, str | None]  # None: the variable was not set
    ini_pythonpath: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ForkVerdict:
    """Whether the warm process may fork now (``warm/threads.py``), and why not."""

    __pydantic_config__ = _FORBID
    safe: bool
    reason: str
    os_threads: int | None
    native: dict[str, int]  # threads besides the main one, per library


@dataclasses.dataclass(frozen=True, kw_only=True)
class Failure:
    __pydantic_config__ = _FORBID
    path: str
    error: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModuleReport:
    """The project modules the warm process holds now."""

    __pydantic_config__ = _FORBID
    cached_modules: int
    modules: list[tuple[str, str]]  # (module name, real path)
    env_keys: list[str]
    test_files: list[str]
    conftests: list[str]  # every conftest imported, in sys.modules or not


@dataclasses.dataclass(frozen=True, kw_only=True)
class Progress:
    __pydantic_config__ = _FORBID
    ev: Literal["progress"] = "progress"
    done: int
    total: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ready(ModuleReport):
    ev: Literal["ready"] = "ready"
    pid: int
    key: WarmKey
    imported: int
    total: int
    seconds: float
    failures: list[Failure]
    warm_paths: list[str]
    fork: ForkVerdict
    # Library modules the warm-up imported beyond the base's (name, real file):
    # the base learns them, so the next project layer finds them warm.
    libraries: list[tuple[str, str]]
    env_written: list[str]  # environment variables set while the project was imported
    # A level a conftest set on the daemon's loggers (logging.DEBUG = 10), or None.
    log_level: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarmFailed:
    __pydantic_config__ = _FORBID
    ev: Literal["warm_failed"] = "warm_failed"
    error: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Forked:
    __pydantic_config__ = _FORBID
    ev: Literal["forked"] = "forked"
    id: str
    pid: int
    standby: bool = False  # handed to the prepared standby worker (warm/standby.py)
    why_fresh: str = ""  # else why it was forked afresh ("" when no standby is kept)
    prepared: bool = False  # the standby was prepared for this exact run (warm/standby_run.py)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Exited:
    __pydantic_config__ = _FORBID
    ev: Literal["exited"] = "exited"
    id: str
    pid: int
    code: int  # os.waitstatus_to_exitcode: negative for a signal
    imports: list[str] = dataclasses.field(default_factory=list)  # library modules it imported


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tainted:
    """The warm process cannot fork safely; the order was not carried out."""

    __pydantic_config__ = _FORBID
    ev: Literal["tainted"] = "tainted"
    id: str
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reloaded(ModuleReport):
    ev: Literal["reloaded"] = "reloaded"
    id: str
    failure: ReloadFailure | None  # None: the reload succeeded
    reason: str
    reimported: int
    failures: list[Failure]
    duration_ms: float
    conftests_imported: list[str]  # conftests this re-warm's session ran (none for a reload)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Learned(ModuleReport):
    ev: Literal["learned"] = "learned"
    id: str
    imported: list[str]
    rejected: dict[str, str]
    deferred: list[str]
    tainted: str
    duration_ms: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pong:
    __pydantic_config__ = _FORBID
    ev: Literal["pong"] = "pong"
    id: str


# A trial verdict: not tried, because an earlier module failed its trial.
NOT_TRIED = "not tried yet"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trialled:
    __pydantic_config__ = _FORBID
    ev: Literal["trialled"] = "trialled"
    id: str
    results: dict[str, str | None]  # module -> why its import is not invisible, or None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scanned:
    __pydantic_config__ = _FORBID
    ev: Literal["scanned"] = "scanned"
    id: str
    registrants: dict[str, str]  # module file -> what it registered where
    complete: bool  # False: the scan failed; treat every module as a registrant


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaseReady:
    """The base process holds pytest, the plugins and the libraries it learned."""

    __pydantic_config__ = _FORBID
    ev: Literal["base_ready"] = "base_ready"
    pid: int
    key: WarmKey
    fork: ForkVerdict
    cached_modules: int
    seconds: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerForked:
    """Sent with one descriptor: the supervisor's end of the new layer's control socket."""

    __pydantic_config__ = _FORBID
    ev: Literal["layer_forked"] = "layer_forked"
    id: str
    pid: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerExited:
    __pydantic_config__ = _FORBID
    ev: Literal["layer_exited"] = "layer_exited"
    pid: int
    code: int


Event = (
    Progress
    | Ready
    | WarmFailed
    | Forked
    | Exited
    | Tainted
    | Reloaded
    | Trialled
    | Learned
    | Scanned
    | BaseReady
    | LayerForked
    | LayerExited
    | Pong
)


# --- what a collect worker writes to its result pipe -----------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollectedError:
    __pydantic_config__ = _FORBID
    nodeid: str
    message: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollectResult:
    __pydantic_config__ = _FORBID
    node_ids: list[str]
    errors: list[CollectedError]
    exit_code: int
    # What the collection read and listed (project paths, absolute): while they stay
    # as they are, so does the result (supervisor/collects.py).
    files: list[str] = dataclasses.field(default_factory=list)
    dirs: list[str] = dataclasses.field(default_factory=list)
