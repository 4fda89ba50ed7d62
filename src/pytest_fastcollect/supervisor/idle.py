"""Work the warm process does while nobody waits: re-warm and learned imports.

Runs in the supervisor. Both jobs start from a timer once the daemon has
been quiet for ``IDLE_DELAY`` and then take the reload lock like any other
change to the warm process; they give up when changes are pending or the
process they were meant for has been replaced.

- re-warm: test modules purged by a reload are imported again through
  pytest's collection (runs import them meanwhile, through pytest);
- learned imports (``warm/learn.py``): library modules that runs imported
  lazily are trial-imported in a child, then imported in the warm process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from pytest_fastcollect.supervisor import changes
from pytest_fastcollect.supervisor.freshness import stat_signature
from pytest_fastcollect.supervisor.lifecycle import (
    WarmHandle,
    WarmState,
    loaded_files,
    next_order_id,
)
from pytest_fastcollect.supervisor.slot import WarmSlot
from pytest_fastcollect.wire import warm as wm

log = logging.getLogger("pytest_fastcollect.daemon")

# Re-import purged test modules, and learn imports, once saves have been quiet this long.
IDLE_DELAY = 1.0


class IdleWork:
    def __init__(self, slot: WarmSlot, learn_imports: bool, delay: float = IDLE_DELAY) -> None:
        self.slot = slot
        self.learn_imports = learn_imports
        self.delay = delay
        self._lock = threading.Lock()
        self._rewarm_files: set[str] = set()
        self._timers: dict[str, threading.Timer] = {}
        # Learned imports: wanted from runs, learned, never again.
        self._wanted: set[str] = set()
        self._learned: set[str] = set()
        self._blocked: dict[str, str] = {}
        slot.listener = self

    def _when_idle(self, name: str, action: Callable[[WarmHandle], None], wp: WarmHandle) -> None:
        """(Re)start the timer that runs ``action(wp)`` once things are quiet."""
        with self._lock:
            previous = self._timers.get(name)
            if previous is not None:
                previous.cancel()
            timer = threading.Timer(self.delay, action, args=(wp,))
            timer.daemon = True
            self._timers[name] = timer
            timer.start()

    def stop(self) -> None:
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()

    def counts(self) -> tuple[int, int, int]:
        """(learned, refused, pending) learned imports, for the status."""
        with self._lock:
            return len(self._learned), len(self._blocked), len(self._wanted)

    # -- SlotListener -------------------------------------------------------------------

    def adopted(self, wp: WarmHandle) -> None:
        with self._lock:
            relearn = bool(self._learned or self._wanted)
        if relearn:
            self._when_idle("learn", self._learn, wp)

    def purged_tests(self, wp: WarmHandle, files: list[str]) -> None:
        with self._lock:
            self._rewarm_files |= set(files)
        self._when_idle("rewarm", self._rewarm, wp)

    # -- re-warm ------------------------------------------------------------------------

    def _rewarm(self, wp: WarmHandle) -> None:
        """Import purged test modules again while nothing else is happening."""
        slot = self.slot
        with slot.hold():
            with self._lock:
                files = sorted(f for f in self._rewarm_files if os.path.exists(f))
                self._rewarm_files.clear()
            busy = slot.records.has_pending() or slot.current is not wp or slot.stopping.is_set()
            if busy or not files or wp.state is not WarmState.READY:
                return
            since_ns = time.time_ns()
            before = {f: stat_signature(f) for f in files}
            event = wp.ask(wm.RewarmOrder(id=next_order_id(), files=files))
            if not isinstance(event, wm.Reloaded):
                return
            wp.update_modules(event)
            slot.records.record_rewarmed({f: before[f] for f in files if f in wp.modules})
            # Project modules the test modules imported for the first time.
            # The conftests this session imported ran again in the warm process.
            ran = set(event.conftests_imported)
            slot.records.record(
                loaded_files(wp), wp.test_files, since_ns, reread=ran, reprofile=ran
            )
            log.info("Re-warmed %d test modules in %.1f ms", event.reimported, event.duration_ms)

    # -- learned imports ----------------------------------------------------------------

    def want_imports(self, wp: WarmHandle, names: list[str]) -> None:
        """A run imported these library modules: learn them when the daemon is idle."""
        if not self.learn_imports:
            return
        with self._lock:
            new = set(names) - self._learned - self._blocked.keys()
            if not new:
                return
            self._wanted |= new
        self._when_idle("learn", self._learn, wp)

    def _learn(self, wp: WarmHandle) -> None:
        """Import, in the warm process, the library modules runs imported."""
        slot = self.slot
        with slot.hold():
            with self._lock:
                modules = sorted((self._wanted | self._learned) - self._blocked.keys())
            current = slot.current is wp and not slot.stopping.is_set()
            if not current or not modules or wp.state is not WarmState.READY:
                return  # a replacement learns again once it is adopted
            if slot.records.has_pending():
                self._when_idle("learn", self._learn, wp)  # after the pending changes
                return
            event = wp.ask(wm.LearnOrder(id=next_order_id(), modules=modules))
            if not isinstance(event, wm.Learned):
                return
            wp.update_modules(event)
            with self._lock:
                self._learned |= set(event.imported)
                self._blocked.update(event.rejected)
                self._wanted = set(event.deferred)
        if event.imported:
            log.info(
                "Learned %d library imports in %.1f ms", len(event.imported), event.duration_ms
            )
        for name, reason in sorted(event.rejected.items()):
            log.info("Not learning the import of %s: it %s", name, reason)
        if event.tainted:
            slot.replace_soon(changes.Replace.TAINTED, event.tainted)
        elif event.deferred:
            self._when_idle("learn", self._learn, wp)
