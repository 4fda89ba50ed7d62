"""The current warm process, its generation, and every change made to it.

Runs in the supervisor. ``WarmSlot`` owns the reload lock, and the
operations that change the warm process (adopt, replace, apply pending
changes, re-warm, learn, make fresh for a run) are methods of ``Held``,
which only ``WarmSlot.hold()`` hands out, with the lock held. Whoever can
call them holds the lock; nothing else can.

The daemon's reported state is derived, not stored twice: the current warm
process's own state, plus what the slot is doing right now.

A run never waits for a warm-up (never slower than cold): a run that needs
a new warm process starts the replacement in the background and goes cold;
runs that arrive while one warms up go cold at once, with a notice. Idle
work holds the lock in short steps and gives way between them to a run
that waits (``ReloadLock.urgent_waiting``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from pytest_fastcollect.supervisor import changes, reloader
from pytest_fastcollect.supervisor.freshness import Freshness
from pytest_fastcollect.supervisor.graph import ImportGraph
from pytest_fastcollect.supervisor.isolation import Isolation
from pytest_fastcollect.supervisor.layers import LayerSource
from pytest_fastcollect.supervisor.lifecycle import WarmHandle, WarmState, loaded_files
from pytest_fastcollect.supervisor.stats import Stats
from pytest_fastcollect.wire import protocol as p

log = logging.getLogger("pytest_fastcollect.daemon")

Notify = Callable[[str], None]

# What a new base process is needed for: the libraries it holds may be stale.
# Not a new environment: the layer applies it, and the layer source renews the
# base only when a variable the base read changed (``Layers._ready_base``).
FULL_RENEWAL = frozenset(
    {
        changes.Replace.PACKAGES,
        changes.Replace.EXTENSION,
        changes.Replace.MANUAL,
    }
)


class Refused(Exception):
    """The daemon cannot serve this request warm now (the message says why)."""


class Restarting(Refused):
    """A new project layer is warming up: a run can still come from the base process."""


class ReloadLock:
    """One holder at a time; a run (``urgent``) that would wait for a warm-up gives up."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._urgent = 0
        self._warming: str | None = None  # why a new warm process is being warmed

    @contextlib.contextmanager
    def acquire(self, urgent: bool) -> Iterator[None]:
        with self._cond:
            self._urgent += urgent
            try:
                while True:
                    if urgent and self._warming is not None:
                        raise Restarting(f"the warm process is restarting ({self._warming})")
                    if not self._held:
                        break
                    self._cond.wait()
                self._held = True
            finally:
                self._urgent -= urgent
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    def urgent_waiting(self) -> bool:
        with self._cond:
            return self._urgent > 0

    def warming(self, reason: str | None) -> None:
        """A replacement warms up (reason) or is over (None): waiting runs go cold now."""
        with self._cond:
            self._warming = reason
            self._cond.notify_all()


class SlotListener(Protocol):
    """Idle work hears of new warm processes and of reloads (with purged test modules)."""

    def adopted(self, wp: WarmHandle) -> None: ...
    def reloaded(self, wp: WarmHandle, purged_tests: list[str]) -> None: ...


class WarmSlot:
    def __init__(
        self,
        root: str,
        layers: LayerSource,
        env: dict[str, str],
        records: Freshness,
        stats: Stats,
        graph: ImportGraph | None = None,
    ) -> None:
        self.root = root
        self.layers = layers
        self.records = records
        self.stats = stats
        self.graph = graph or ImportGraph()
        self.isolation = Isolation(root, self.graph)
        self.listener: SlotListener | None = None
        self.lock = ReloadLock()
        self._current: WarmHandle | None = None
        self._adopted_once = False
        self.generation = 0
        self.activity: p.DaemonState | None = None  # RELOADING or REPLACING, while it lasts
        self.stopping = threading.Event()
        self.warm_env = dict(env)
        self.warmup = p.WarmupStats()
        self.spawned_ns = 0
        self.warmup_ns = 0  # when the adopted process's warm-up began (spawned_ns then)
        # Why the current warm process cannot serve (a failed warm-up, or it
        # cannot fork safely); None while it serves. Cleared by an adoption.
        self.failure: str | None = None

    @property
    def current(self) -> WarmHandle | None:
        """For reading (status, health); changes go through ``hold()``."""
        return self._current

    @property
    def state(self) -> p.DaemonState:
        wp = self._current
        if self.stopping.is_set():
            return p.DaemonState.STOPPING
        if self.activity is not None:
            return self.activity
        if wp is None or (wp.state is WarmState.STARTING and not self._adopted_once):
            return p.DaemonState.WARMING
        if self.failure is not None:
            return p.DaemonState.FAILED
        return p.DaemonState.READY

    @contextlib.contextmanager
    def hold(self, for_run: bool = False) -> Iterator[Held]:
        """The reload lock, and the operations that need it. ``for_run``: a run
        that must not wait for a warm-up (Refused instead)."""
        with self.lock.acquire(urgent=for_run):
            yield Held(self, for_run)

    def start(self) -> WarmHandle:
        """The first warm process. Not under the lock: runs that arrive meanwhile
        are refused at once (``fresh``) and run cold, never waiting for warm-up."""
        wp = self._new_process()
        self._current = wp
        if wp.wait_ready():
            with self.hold() as held:
                held.adopt(wp)
        else:
            self.failure = wp.error or "the warm process failed to start"
            log.error("Warm process cannot serve: %s", self.failure)
            wp.kill()
        return wp

    def _new_process(self) -> WarmHandle:
        self.generation += 1
        self.spawned_ns = time.time_ns()
        return self.layers.project(self.generation, self.warm_env, self.on_death)

    def apply_when_quiet(self) -> None:
        """The debounce fired: apply pending changes now, ahead of the next run."""
        if self.stopping.is_set():
            return
        with self.hold() as held:
            if self.state in (p.DaemonState.READY, p.DaemonState.FAILED):
                held.apply_pending(None)

    def on_death(self, wp: WarmHandle) -> None:
        """The reader thread saw the current warm process die: replace it."""
        if self.stopping.is_set():
            return
        log.warning("Warm process %d died; replacing it", wp.pid)
        self.replace_soon(changes.Replace.CRASH, "the warm process died")

    def replace_soon(self, kind: changes.Replace, reason: str) -> None:
        # Runs that come before the thread holds the lock already go cold.
        self.lock.warming(reason)

        def replace() -> None:
            try:
                with self.hold() as held:
                    held.replace(kind, reason, None)
            finally:
                self.lock.warming(None)

        threading.Thread(target=replace, name="replace", daemon=True).start()


class Held:
    """The operations that change the warm process; exists only while the lock is held."""

    def __init__(self, slot: WarmSlot, for_run: bool = False) -> None:
        self.slot = slot
        self.for_run = for_run

    @property
    def current(self) -> WarmHandle | None:
        return self.slot._current

    @contextlib.contextmanager
    def doing(self, activity: p.DaemonState) -> Iterator[None]:
        self.slot.activity = activity
        try:
            yield
        finally:
            self.slot.activity = None

    def bump_generation(self, wp: WarmHandle) -> int:
        self.slot.generation += 1
        wp.generation = self.slot.generation
        return wp.generation

    def adopt(self, wp: WarmHandle) -> None:
        """Record what a freshly warmed process loaded, and start serving from it."""
        slot = self.slot
        assert wp.ready is not None
        ready = wp.ready
        slot.warmup_ns = slot.spawned_ns
        slot.warmup = p.WarmupStats(
            imported=ready.imported,
            total=ready.total,
            seconds=round(ready.seconds, 3),
            failures=[p.ImportFailure(path=f.path, error=f.error) for f in ready.failures],
        )
        log.info(
            "Pre-import complete: %d/%d modules in %.2fs",
            ready.imported,
            ready.total,
            ready.seconds,
        )
        for failure in ready.failures:
            log.warning("Failed to import %s: %s", failure.path, failure.error)
        slot.records.record(
            loaded_files(wp), wp.test_files, slot.spawned_ns, force_changed=slot.records.pending()
        )
        old = slot._current if slot._current is not wp else None
        slot._current = wp
        slot._adopted_once = True
        slot.failure = None
        slot.isolation.adopted(wp)
        if old is not None:
            old.retire()
        if slot.listener is not None:
            slot.listener.adopted(wp)

    def replace(
        self,
        kind: changes.Replace,
        reason: str,
        notify: Notify | None,
        changed: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """Warm a new process, switch to it, retire the old one.

        For a run: the warm-up goes on in the background and the run goes cold
        (Refused), since waiting for it would be slower than a cold run.
        """
        slot = self.slot
        # The new process imports these from scratch: a save that kept size
        # and mtime must not hand it (nor the cold run) the old pyc.
        for path in slot.records.pending() | set(changed):
            if path.endswith(".py"):
                changes.remove_stale_bytecode(path)
        if self.for_run:
            slot.replace_soon(kind, reason)
            raise Restarting(f"restarting the warm process ({reason})")
        log.info("Replacing warm process: %s", reason)
        if notify is not None:
            notify(f"restarting the warm process ({reason})")
        slot.stats.count_replacement(kind.value)
        if kind in FULL_RENEWAL:
            slot.layers.renew_base()
        with self.doing(p.DaemonState.REPLACING):
            slot.lock.warming(reason)
            try:
                slot.records.take_pending()
                started = time.perf_counter()
                # Taken before the warm-up: a save during a failed warm-up still shows.
                snapshot = slot.records.snapshot()
                wp = slot._new_process()
                ready = wp.wait_ready()
            finally:
                slot.lock.warming(None)
        if ready:
            self.adopt(wp)
            log.info(
                "Warm process %d ready (generation %d) in %.2fs",
                wp.pid,
                wp.generation,
                time.perf_counter() - started,
            )
            return
        slot.failure = wp.error or "the warm process failed to start"
        log.error("Warm process cannot serve: %s", slot.failure)
        wp.kill()  # exited already, or warm but of no use (it cannot fork safely)
        old, slot._current = slot._current, wp
        # What failed is on disk now: only a later change retries.
        slot.records.restore(snapshot)
        if old is not None and old is not wp:
            old.retire()

    def apply_pending(self, notify: Notify | None) -> None:
        reloader.apply_pending(self, notify)

    def fresh(self, notify: Notify) -> WarmHandle:
        """The warm process to serve from, after applying every pending change."""
        slot = self.slot
        if slot.state is p.DaemonState.WARMING:
            raise Restarting("the daemon is still warming up")
        wp = slot._current
        if slot.failure is None and (wp is None or wp.state is not WarmState.READY):
            self.replace(changes.Replace.CRASH, "the warm process is gone", notify)
        slot.records.sweep()
        if slot.records.has_pending():
            self.apply_pending(notify)
        wp = slot._current
        if slot.failure is not None or wp is None or wp.state is not WarmState.READY:
            error = slot.failure or (wp.error if wp is not None else None) or "no warm process"
            raise Refused(f"the warm process is not available ({error})")
        return wp

    def use_environment(self, env: dict[str, str], reason: str, notify: Notify) -> WarmHandle:
        """Values read at import time changed: warm a process with this environment
        (for a run: in the background, while the run goes cold)."""
        self.slot.warm_env = dict(env)
        self.replace(changes.Replace.ENV, reason, notify)
        wp = self.slot._current
        if self.slot.failure is not None or wp is None or wp.state is not WarmState.READY:
            raise Refused(f"the warm process failed to restart ({self.slot.failure})")
        return wp
