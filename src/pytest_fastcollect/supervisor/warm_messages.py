"""Pydantic models for what the warm process tells the supervisor.

The warm process writes plain JSON (it must not import pydantic); every
message is validated here before the supervisor acts on it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Failure(_Event):
    path: str
    error: str


class ModuleReport(_Event):
    cached_modules: int
    modules: list[tuple[str, str]]
    env_keys: list[str]
    test_files: list[str] = Field(default_factory=list)


class Progress(_Event):
    ev: Literal["progress"]
    done: int
    total: int


class Ready(ModuleReport):
    ev: Literal["ready"]
    pid: int
    key: dict[str, Any]
    imported: int
    total: int
    seconds: float
    failures: list[Failure]
    warm_paths: list[str]


class WarmFailed(_Event):
    ev: Literal["warm_failed"]
    error: str


class Forked(_Event):
    ev: Literal["forked"]
    id: str
    pid: int


class Exited(_Event):
    ev: Literal["exited"]
    id: str
    pid: int
    code: int
    imports: list[str] = Field(default_factory=list)  # library modules the run imported


class Tainted(_Event):
    ev: Literal["tainted"]
    id: str
    threads: int


class Reloaded(ModuleReport):
    ev: Literal["reloaded"]
    id: str
    ok: bool
    reason: str
    reimported: int
    failures: list[Failure]
    duration_ms: float


class Learned(ModuleReport):
    ev: Literal["learned"]
    id: str
    imported: list[str]
    rejected: dict[str, str]
    deferred: list[str]
    tainted: str
    duration_ms: float


WarmEvent = Annotated[
    Progress | Ready | WarmFailed | Forked | Exited | Tainted | Reloaded | Learned,
    Field(discriminator="ev"),
]
WARM_EVENT_ADAPTER: TypeAdapter[WarmEvent] = TypeAdapter(WarmEvent)
