"""A run's timeline for the benchmark: when each phase of a warm run began.

Runs in a run worker, and only when the run's environment names a file in
``PYTEST_FASTCOLLECT_TIMELINE`` (``bench/bench_overhead.py`` sets it); any
other run never registers anything. The times are ``time.monotonic()``, one
clock for every process of the machine (CLOCK_MONOTONIC on Linux), so the
benchmark can put them beside the moments it started and reaped the client,
and beside the supervisor's (``ForkOrder.stamps``: the request received, the
fork ordered). One JSON object per run is appended to the file at exit.

Registering an object as a plugin is the one thing this changes in the run:
fine for a benchmark, and the reason it is never done otherwise.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

from pytest_fastcollect.settings import ENV_TIMELINE
from pytest_fastcollect.wire import warm as wm


class _State:
    path: str | None = None
    marks: dict[str, float] = {}


def begin(order: wm.ForkOrder, standby: bool = False) -> None:
    """The worker starts serving ``order`` (right after the fork, or the standby's hand-off)."""
    path = order.env.get(ENV_TIMELINE)
    if order.mode != "run" or not path or _State.path is not None:
        return
    _State.path = path
    _State.marks = {**order.stamps, "standby": float(standby)}
    _stamp(_State.marks, "worker")


def _stamp(marks: dict[str, float], name: str) -> None:
    """When ``name`` happened, and this process's CPU time then (``cpu_<name>``)."""
    marks[name] = time.monotonic()
    marks[f"cpu_{name}"] = time.process_time()


def hooks() -> list[Callable[[Any], None]]:
    """The worker hooks to add: none unless this run keeps a timeline."""
    return [register] if _State.path is not None else []


def register(early_config: Any) -> None:
    """A worker hook (``pytest_load_initial_conftests``): follow the session's phases."""
    if _State.path is not None:
        _stamp(_State.marks, "initial_conftests")
        early_config.pluginmanager.register(_Phases(_State.marks), "fastcollect-timeline")


class _Phases:
    def __init__(self, marks: dict[str, float]) -> None:
        self.marks = marks
        self.marks["bodies"] = 0.0

    def _mark(self, name: str) -> None:
        if name not in self.marks:
            _stamp(self.marks, name)

    def pytest_configure(self) -> None:
        self._mark("configured")

    def pytest_sessionstart(self) -> None:
        self._mark("session_start")

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self) -> Generator[None, object, object]:
        self._mark("collection_start")
        try:
            return (yield)
        finally:
            self._mark("collection_finish")

    def pytest_runtest_logstart(self) -> None:
        self._mark("tests_start")

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.marks["bodies"] += float(getattr(report, "duration", 0.0) or 0.0)

    def pytest_runtest_logfinish(self) -> None:
        _stamp(self.marks, "tests_end")

    def pytest_sessionfinish(self) -> None:
        self._mark("session_finish")

    def pytest_unconfigure(self) -> None:
        self._mark("unconfigure")


def finish(code: int) -> None:
    """The run is over: append its timeline (the exit comes right after)."""
    path = _State.path
    if path is None:
        return
    _stamp(_State.marks, "exit")
    _State.marks["code"] = float(code)
    line = (json.dumps(_State.marks) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass
