"""Where project layers come from: the base process, started and renewed as needed.

Runs in the supervisor. ``Layers.project()`` forks a new project layer from
the base process (starting the base first when there is none, or when a
full renewal was asked for: installed packages, extensions or the
environment changed). The base also serves runs that must not come from a
project layer (``base_for_runs``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from pytest_fastcollect.supervisor.channel import Mailbox, next_order_id
from pytest_fastcollect.supervisor.lifecycle import (
    BaseProcess,
    WarmHandle,
    WarmSpec,
    WarmState,
)
from pytest_fastcollect.wire import warm as wm

log = logging.getLogger("pytest_fastcollect.daemon")

# The base learns a layer's libraries this long after the layer is adopted,
# so a user's first runs do not share the CPU with a trial import.
BASE_LEARN_DELAY = 1.0
# Modules the base imports per order: a run forked from it waits for one step.
BASE_LEARN_STEP = 50


class LayerSource(Protocol):
    """What the slot needs to get project layers (a fake one in unit tests)."""

    def project(
        self, generation: int, env: dict[str, str], on_death: Callable[[WarmHandle], None]
    ) -> WarmHandle: ...
    def renew_base(self) -> None: ...
    def base_for_runs(self) -> BaseProcess | None: ...
    def learn_libraries(self, libraries: list[tuple[str, str]], env_written: list[str]) -> None: ...
    def kill(self) -> None: ...


class Unborn:
    """A project layer that could not even be forked: its base failed."""

    def __init__(self, generation: int, error: str) -> None:
        self.generation = generation
        self.pid = 0
        self.state = WarmState.FAILED
        self.ready: wm.Ready | None = None
        self.fork: wm.ForkVerdict | None = None
        self.error: str | None = error
        self.modules: dict[str, str] = {}
        self.test_files: set[str] = set()
        self.conftests: set[str] = set()
        self.cached_modules = 0
        self.running: dict[str, int] = {}
        self.unresponsive: str | None = None

    @property
    def key(self) -> wm.WarmKey:
        raise RuntimeError("an unborn layer has no key")

    def check_responsive(self) -> str | None:
        return None

    def wait_ready(self, timeout: float | None = None) -> bool:
        return False

    def update_modules(self, report: wm.ModuleReport) -> None:
        pass

    def request(self, order: wm.Order, fds: tuple[int, ...] = ()) -> Mailbox:
        box = Mailbox()
        box.put(None)
        return box

    def ask(self, order: wm.Order) -> wm.Event | None:
        return None

    def done(self, order_id: str) -> None:
        pass

    def alive(self) -> bool:
        return False

    def retire(self) -> None:
        pass

    def kill(self) -> None:
        pass


class Layers:
    def __init__(
        self,
        spec: Callable[[dict[str, str]], WarmSpec],
        on_progress: Callable[[wm.Progress], None],
        on_base_death: Callable[[], None],
    ) -> None:
        self._spec = spec
        self._on_progress = on_progress
        self._on_base_death = on_base_death
        self._lock = threading.Lock()
        self._base: BaseProcess | None = None
        self._base_env: dict[str, str] | None = None
        self._renew = False
        self._refused: dict[str, str] = {}  # library -> why the base does not import it
        self._timer: threading.Timer | None = None
        self.learn_delay = BASE_LEARN_DELAY

    def project(
        self, generation: int, env: dict[str, str], on_death: Callable[[WarmHandle], None]
    ) -> WarmHandle:
        base = self._ready_base(env)
        if base.state is not WarmState.READY:
            return Unborn(generation, base.error or "the base process failed to start")
        layer = base.new_layer(generation, env, self._on_progress, on_death)
        if isinstance(layer, str):
            self.renew_base()  # the next attempt starts from a new base
            return Unborn(generation, layer)
        return layer

    def _ready_base(self, env: dict[str, str]) -> BaseProcess:
        with self._lock:
            base = self._base
            stale = base is None or not base.alive() or self._renew or self._env_stale(base, env)
            if stale:
                old, self._renew = base, False
                base = self._base = BaseProcess(self._spec(env), on_death=self._base_died)
                self._base_env = dict(env)
                if old is not None:
                    old.retire()
        assert base is not None
        if base.wait_ready() and stale:
            assert base.ready is not None
            log.info(
                "Base process %d ready: %d modules in %.2fs",
                base.pid,
                base.ready.cached_modules,
                base.ready.seconds,
            )
        elif not base.wait_ready():
            log.error("Base process cannot serve: %s", base.error)
        return base

    def _env_stale(self, base: BaseProcess, env: dict[str, str]) -> bool:
        """Does ``env`` change a variable the base read while importing (pytest, its
        plugins, the libraries it learned; the fixed variables)?

        A layer applies its own environment as it starts, so a variable only
        project code reads needs a new layer, not a new base. Keeping the base
        also keeps it serving the runs that come while that layer warms up.
        """
        if env == self._base_env:
            return False
        if self._base_env is None or base.ready is None:
            return True
        started_with = self._base_env
        read = frozenset(base.env_read)  # the learning thread may add to it meanwhile
        return any(env.get(name) != started_with.get(name) for name in read)

    def _base_died(self, base: BaseProcess) -> None:
        if base is self._base:
            log.warning("Base process %d died", base.pid)
            self._on_base_death()

    def renew_base(self) -> None:
        """The next project layer comes from a new base process (libraries may be stale)."""
        with self._lock:
            self._renew = True

    def base_for_runs(self) -> BaseProcess | None:
        base = self._base
        return base if base is not None and base.alive() and not self._renew else None

    # -- libraries into the base ---------------------------------------------------------

    def learn_libraries(self, libraries: list[tuple[str, str]], env_written: list[str]) -> None:
        """A project layer's warm-up imported these libraries: once the daemon is quiet,
        the base imports them too (after a trial), so the next layer finds them warm."""
        if env_written:
            # A library imported after a conftest set a variable may depend on it.
            names = ", ".join(env_written[:5])
            log.info("Libraries stay out of the base process: the project sets %s at import", names)
            return
        with self._lock:
            base = self._base
            if self._timer is not None:
                self._timer.cancel()
            if base is None:
                return
            wanted = {n: f for n, f in libraries if n not in self._refused}
            self._timer = threading.Timer(self.learn_delay, self._learn, args=(base, wanted))
            self._timer.daemon = True
            self._timer.start()

    def _learn(self, base: BaseProcess, wanted: dict[str, str]) -> None:
        if base is not self._base or not base.alive() or not wanted:
            return
        trial = wm.TrialOrder(id=next_order_id(), modules=sorted(wanted), expected=wanted)
        trialled = base.ask(trial)
        if not isinstance(trialled, wm.Trialled):
            return
        passed = [n for n, reason in sorted(trialled.results.items()) if reason is None]
        for name, reason in trialled.results.items():
            if reason is not None and reason != wm.NOT_TRIED:
                self._refused[name] = reason
                log.debug("The base process does not import %s: it %s", name, reason)
        imported = 0
        started = time.perf_counter()
        for i in range(0, len(passed), BASE_LEARN_STEP):
            if base is not self._base or not base.alive():
                return
            order = wm.LearnOrder(id=next_order_id(), modules=passed[i : i + BASE_LEARN_STEP])
            event = base.ask(order)
            if not isinstance(event, wm.Learned):
                return
            imported += len(event.imported)
            self._refused.update(event.rejected)
            base.cached_modules = event.cached_modules
            base.env_read.update(event.env_keys)
            if event.tainted:
                log.warning(
                    "The base process %s; it is replaced with the next layer", event.tainted
                )
                self.renew_base()
                return
        if imported:
            elapsed = (time.perf_counter() - started) * 1000
            log.info("Base process learned %d library modules in %.1f ms", imported, elapsed)

    def kill(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            base, self._base = self._base, None
        if base is not None:
            for pid in list(base.running.values()):
                _killpg(pid)
            base.kill()


def _killpg(pid: int) -> None:
    import os
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
