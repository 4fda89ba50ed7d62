"""The socket protocol: pydantic v2 models for every request and response.

Spoken by the client and the supervisor (the warm process has its own, ``wire/warm.py``).
Every model forbids extra fields; requests and responses are discriminated unions,
validated straight from the raw frame bytes with ``TypeAdapter.validate_json``.
"""

from __future__ import annotations

import enum
import functools
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pytest_fastcollect.wire.version import PROTOCOL_VERSION as PROTOCOL_VERSION


class _Model(BaseModel):
    # defer_build: schemas are built on first use, so a client that only
    # runs tests never pays for the status and health models.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


# What a process turns into a log line, a file name or a path must be
# checked here: ids are a strict pattern (no newline can forge a log line),
# and no string that becomes a path, an argument or an environment entry
# may hold a NUL byte (the OS refuses it with ValueError, deep inside).
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
NoNul = Annotated[str, Field(pattern=r"^[^\x00]*$")]
EnvName = Annotated[str, Field(pattern=r"^[^\x00=]+$")]


class _Request(_Model):
    protocol_version: int = PROTOCOL_VERSION
    request_id: str = Field(default_factory=new_request_id, pattern=REQUEST_ID_PATTERN)


# --- requests ---------------------------------------------------------------


class StatusRequest(_Request):
    command: Literal["status"] = "status"
    # Also the figures that cost the daemon time (PSS: a walk of every page table).
    full: bool = False


class HealthRequest(_Request):
    command: Literal["health"] = "health"


class CollectFilters(_Model):
    """What ``DaemonClient.collect(root, filters=...)`` accepts."""

    keyword: NoNul | None = Field(default=None, alias="-k")
    markers: NoNul | None = Field(default=None, alias="-m")
    paths: list[NoNul] = Field(default_factory=list)


class CollectRequest(_Request):
    command: Literal["collect"] = "collect"
    root: NoNul
    filters: CollectFilters = Field(default_factory=CollectFilters)


class RunRequest(_Request):
    command: Literal["run"] = "run"
    args: list[NoNul]
    cwd: Annotated[str, Field(pattern=r"^/[^\x00]*$")]  # absolute
    env: dict[EnvName, NoNul]
    umask: int = Field(ge=0, le=0o777)
    python: NoNul
    sys_path: list[NoNul]
    # The client's sys.argv[0]: pytest names itself after it in usage errors
    # ("python -m pytest"), and tests may read it.
    argv0: NoNul = Field(default="pytest", max_length=4096)
    # Sent with SCM_RIGHTS: the client's stdin, stdout and stderr.
    fd_count: int = Field(default=3, ge=0, le=3)
    # Standard streams the client was started without (``2>&-``): the run
    # gets them closed too (``/dev/null`` travels in their place).
    closed_fds: list[Annotated[int, Field(ge=0, le=2)]] = Field(default_factory=list, max_length=3)


class SignalRequest(_Request):
    """Sent on an open run connection: forward a signal to the run's process group."""

    command: Literal["signal"] = "signal"
    signum: int = Field(ge=1, le=64)


class ReloadRequest(_Request):
    command: Literal["reload"] = "reload"


class StopRequest(_Request):
    command: Literal["stop"] = "stop"


class WatchRequest(_Request):
    """Watch mode's long poll: answered once the changes after ``cursor`` are quiet
    and applied (or after ``timeout`` s with none); with no ``cursor`` (or another
    daemon's ``epoch``), at once with the cursor the client's next request starts at.
    """

    command: Literal["watch"] = "watch"
    cursor: int | None = Field(default=None, ge=0)
    epoch: str | None = Field(default=None, max_length=64)
    timeout: float = Field(default=60.0, gt=0, le=3600)
    # The test files the client's arguments select (its last run collected
    # them); None: every test file the daemon knows of.
    test_files: list[str] | None = None
    # pytest's python_files patterns, for test files created since.
    patterns: list[str] = Field(default_factory=list)


class AffectedRequest(_Request):
    """Which test files changes to ``paths`` can affect (``DaemonClient.affected``)."""

    command: Literal["affected"] = "affected"
    paths: list[str]
    test_files: list[str] | None = None
    patterns: list[str] = Field(default_factory=list)
    # Collect the affected files in the warm process, to list their node ids.
    collect: bool = False


Request = Annotated[
    StatusRequest
    | HealthRequest
    | CollectRequest
    | RunRequest
    | SignalRequest
    | ReloadRequest
    | StopRequest
    | WatchRequest
    | AffectedRequest,
    Field(discriminator="command"),
]


@functools.cache
def request_adapter() -> TypeAdapter[Request]:
    return TypeAdapter(Request)


# --- responses --------------------------------------------------------------


class ErrorCode(str, enum.Enum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_COMMAND = "unknown_command"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    VERSION_MISMATCH = "version_mismatch"
    OUTSIDE_ROOT = "outside_root"
    NOT_READY = "not_ready"
    BUSY = "busy"
    DUPLICATE_ID = "duplicate_id"  # a request with this id is still in progress
    INTERNAL = "internal"


class ErrorResponse(_Model):
    kind: Literal["error"] = "error"
    request_id: str | None = None
    code: ErrorCode
    message: str


class DaemonState(str, enum.Enum):
    WARMING = "warming"
    READY = "ready"
    RELOADING = "reloading"
    REPLACING = "replacing"
    FAILED = "failed"
    STOPPING = "stopping"


class Metrics(_Model):
    total_requests: int = 0
    successful_requests: int = 0
    failed_requests: int = 0
    error_rate: float = 0.0
    by_command: dict[str, int] = Field(default_factory=dict)
    runs: int = 0  # run requests served warm
    runs_refused: int = 0  # run requests the daemon refused (the client ran them cold)
    collects: int = 0
    standby_runs: int = 0  # runs handed to a prepared standby worker (warm/standby.py)
    fresh_runs: int = 0  # runs forked afresh
    prepared_runs: int = 0  # of those, prepared for their exact command (warm/standby_run.py)
    collect_cache_hits: int = 0  # collects answered from the cache (supervisor/collects.py)


class ImportFailure(_Model):
    path: str
    error: str


class WarmupStats(_Model):
    imported: int = 0
    total: int = 0
    seconds: float = 0.0
    failures: list[ImportFailure] = Field(default_factory=list)
    learned_imports: int = 0  # library modules runs imported, now imported in the warm process
    unlearnable_imports: int = 0  # failed their trial import: runs keep importing them
    pending_imports: int = 0  # recorded by runs, to be learned when the daemon is idle


class LastReload(_Model):
    at: float
    files: list[str]
    modules: int
    duration_ms: float
    action: str


class ReloadStats(_Model):
    reloads: int = 0
    modules_reloaded: int = 0
    replacements: dict[str, int] = Field(default_factory=dict)
    last: LastReload | None = None
    mean_ms: float | None = None
    p95_ms: float | None = None
    pending_changes: int = 0
    events_seen: int = 0
    watcher: str = "none"


class ConnectionStats(_Model):
    """Connections now, and how runs fared for a slot since the daemon started."""

    open: int = 0  # connections being served, whatever they wait for
    reading: int = 0  # still sending their request (they hold no slot)
    max_reading: int = 0  # beyond it the longest idle reader is closed, else busy
    running: int = 0  # runs, collects and reloads holding a slot
    max_running: int = 0  # daemon_max_connections
    slot_waits: int = 0  # requests that found every slot taken and waited
    max_slot_wait_ms: float = 0.0
    busy: int = 0  # answered busy (no slot within the bounded wait, or too many readers)
    evicted: int = 0  # idle readers closed to make room for a new connection
    # A slot freed while a request waited is handed to it at once; these
    # measure that hand-over (a late one would be a run waiting beside a free slot).
    max_handover_ms: float = 0.0
    late_handovers: int = 0  # hand-overs that took longer than 1 s


class ProcessInfo(_Model):
    role: str
    pid: int
    rss_bytes: int
    pss_bytes: int | None = None
    cpu_percent: float
    cpu_seconds: float
    threads: int
    open_fds: int
    children: int
    zombies: int


class Versions(_Model):
    plugin: str
    protocol: int
    python: str
    pytest: str


class StatusResponse(_Model):
    kind: Literal["status"] = "status"
    request_id: str | None = None
    pid: int
    state: DaemonState
    uptime: float
    root: str
    socket_path: str
    log_path: str
    versions: Versions
    generation: int
    warm_pid: int | None
    warm_paths: list[str]
    cached_modules: int
    project_modules: int
    watched_paths: list[str]
    # Directories of loaded project code that only the per-run stat sweep
    # covers (a network file system, too many directories), with why.
    unwatched_paths: dict[str, str] = Field(default_factory=dict)
    inotify_watches: int | None = None
    metrics: Metrics
    warmup: WarmupStats
    reload: ReloadStats
    connections: ConnectionStats = Field(default_factory=ConnectionStats)
    processes: list[ProcessInfo]
    # Counts stay ints (max_connections 10, not 10.0); durations are floats.
    limits: dict[str, int | float]


class HealthVerdict(str, enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class HealthCheck(_Model):
    ok: bool
    value: float | int | str | bool | None
    display: str = ""  # the value as people read it ("0.02 (2%)", "75.1 MiB"); else str(value)
    detail: str = ""
    severity: Literal["degraded", "unhealthy"] = "unhealthy"


class HealthResponse(_Model):
    kind: Literal["health"] = "health"
    request_id: str | None = None
    status: HealthVerdict
    pid: int
    generation: int
    uptime: float
    checks: dict[str, HealthCheck]
    # The same reload statistics as status: health is where people look for them.
    reload: ReloadStats = Field(default_factory=ReloadStats)


class CollectError(_Model):
    nodeid: str
    message: str


class CollectResponse(_Model):
    kind: Literal["collect"] = "collect"
    request_id: str | None = None
    node_ids: list[str]
    count: int
    errors: list[CollectError]
    exit_code: int
    collection_time: float
    generation: int
    cached: bool = False  # answered from the collect cache (nothing changed since)


class Notice(_Model):
    """Something the client shows the user while a run waits (e.g. a reload)."""

    kind: Literal["notice"] = "notice"
    message: str


class RunRefused(_Model):
    """The daemon will not serve this run warm; the client runs cold instead."""

    kind: Literal["run_refused"] = "run_refused"
    request_id: str | None = None
    reason: str


class RunStarted(_Model):
    kind: Literal["run_started"] = "run_started"
    request_id: str | None = None
    pid: int
    generation: int


class RunFinished(_Model):
    kind: Literal["run_finished"] = "run_finished"
    request_id: str | None = None
    exit_code: int
    signal: int | None = None
    message: str | None = None


class ReloadResponse(_Model):
    kind: Literal["reload"] = "reload"
    request_id: str | None = None
    generation: int
    duration_ms: float


class StopResponse(_Model):
    kind: Literal["stop"] = "stop"
    request_id: str | None = None
    pid: int
    runs: int = 0  # runs in progress, given ``grace`` seconds to finish
    grace: float = 0.0


class Selection(_Model):
    """The test files some changes can affect; ``everything`` when the graph cannot tell."""

    everything: bool
    reasons: list[str] = Field(default_factory=list)  # why everything
    test_files: list[str] = Field(default_factory=list)  # absolute paths
    # To run along with any part of the tests: their imports register into
    # other modules, and a full run would have imported them.
    companions: list[str] = Field(default_factory=list)


class WatchResponse(_Model):
    kind: Literal["watch"] = "watch"
    request_id: str | None = None
    epoch: str
    cursor: int
    changed: list[str]  # absolute paths, since the request's cursor
    # The request's cursor was another daemon's, or too old: changes may have
    # been missed, so the selection is everything.
    lost: bool = False
    generation: int
    ready_ms: float | None = None  # from the last save of the batch until it was applied
    reloaded: int = 0  # modules re-imported for the batch
    replaced: list[str] = Field(default_factory=list)  # why the warm process was replaced
    selection: Selection | None = None  # None: nothing changed (a start or a timeout)


class AffectedResponse(_Model):
    kind: Literal["affected"] = "affected"
    request_id: str | None = None
    generation: int
    everything: bool
    reasons: list[str]
    test_files: list[str]
    companions: list[str] = Field(default_factory=list)
    # node ids of the affected files, where known (``collect=True``); a file
    # that failed to collect has none.
    node_ids: dict[str, list[str]] = Field(default_factory=dict)


Response = Annotated[
    ErrorResponse
    | StatusResponse
    | HealthResponse
    | CollectResponse
    | Notice
    | RunRefused
    | RunStarted
    | RunFinished
    | ReloadResponse
    | StopResponse
    | WatchResponse
    | AffectedResponse,
    Field(discriminator="kind"),
]


@functools.cache
def response_adapter() -> TypeAdapter[Response]:
    return TypeAdapter(Response)


# --- start-up progress (supervisor -> the starting client, over a pipe) -------


class StartProgress(_Model):
    event: Literal["progress"] = "progress"
    done: int
    total: int


class StartReady(_Model):
    event: Literal["ready"] = "ready"
    pid: int
    socket_path: str
    log_path: str
    warmup: WarmupStats


class StartFailed(_Model):
    event: Literal["failed"] = "failed"
    message: str
    # Another supervisor holds the lock: a concurrent start won the race.
    already_running: bool = False


StartEvent = Annotated[StartProgress | StartReady | StartFailed, Field(discriminator="event")]


@functools.cache
def start_event_adapter() -> TypeAdapter[StartEvent]:
    return TypeAdapter(StartEvent)


def dump(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True).encode()


# --- the daemon's record on disk (<key>.json in the runtime directory) --------


class DaemonRecord(_Model):
    """Written by the supervisor once it holds the lock; read by stop and status."""

    pid: int
    create_time: float
    root: str
    socket_path: str
    log_path: str
    version: str
    warm_pid: int | None = None
    warm_args: list[str] = Field(default_factory=list)
    cwd: str = ""
