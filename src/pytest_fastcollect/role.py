"""Which part this process plays, and what the plugin must do for a run worker.

A leaf module (standard library only, imports nothing of ours), so that the
plugin and the warm process can both reach it without importing each other.
The plugin module is loaded in every pytest process; it asks ``current()``
what to do:

- ``CLIENT``: a user's pytest process: verbs and the hand-off;
- ``WARM``: the warm process warming up: nothing;
- ``WORKER``: a run forked from the warm process: the plugin calls
  ``run_worker_hooks(early_config)`` at ``pytest_load_initial_conftests``,
  which runs what the warm side registered (the option check, removing the
  metadata cache) exactly once, for the run itself.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from typing import Any


class Role(enum.Enum):
    CLIENT = "client"
    WARM = "warm"
    WORKER = "worker"


class _State:
    role = Role.CLIENT
    hooks: list[Callable[[Any], None]] = []
    handoff_tried = False


def current() -> Role:
    return _State.role


@contextlib.contextmanager
def warm() -> Iterator[None]:
    """The warm process's own pytest sessions (warm-up, re-warm): the plugin stays out."""
    saved, _State.role = _State.role, Role.WARM
    try:
        yield
    finally:
        _State.role = saved


def become_worker() -> None:
    """Called once warm-up is over: every later pytest session here is a forked run's."""
    _State.role = Role.WORKER


def set_worker_hooks(hooks: list[Callable[[Any], None]]) -> None:
    """What the next run's ``pytest_load_initial_conftests`` must do (set in the forked child)."""
    _State.hooks = list(hooks)


def run_worker_hooks(early_config: Any) -> None:
    """Run the hooks once: a pytest that a test starts in this process (pytester's
    runpytest) has other options and must not be checked or refused half-way."""
    hooks, _State.hooks = _State.hooks, []
    for hook in hooks:
        hook(early_config)


def claim_handoff() -> bool:
    """True the first time only: a process hands its run off at most once."""
    if _State.handoff_tried:
        return False
    _State.handoff_tried = True
    return True


def handoff_claimed() -> bool:
    return _State.handoff_tried
