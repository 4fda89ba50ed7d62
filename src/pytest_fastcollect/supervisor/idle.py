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
from pytest_fastcollect.supervisor.channel import Mailbox
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
# Test files a re-warm step imports (one pytest session each): a run waits for one step.
REWARM_STEP = 4


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
        if wp.ready is not None:
            self.slot.layers.learn_libraries(wp.ready.libraries, wp.ready.env_written)
        # Which modules register at import: in a child of the layer, right away
        # (adopted under the reload lock, so no run comes before the order).
        if wp.state is WarmState.READY:
            self._scan_now(wp)
        with self._lock:
            # A new warm process learns again what its predecessor learned.
            self._wanted |= self._learned - self._blocked.keys()
            relearn = bool(self._wanted)
        if relearn:
            self._when_idle("learn", self._learn, wp)

    def reloaded(self, wp: WarmHandle, purged_tests: list[str]) -> None:
        if purged_tests:
            with self._lock:
                self._rewarm_files |= set(purged_tests)
            self._when_idle("rewarm", self._rewarm, wp)
        if self.slot.isolation.has_unverified():
            # Re-imported modules are suspects until a scan: scan now (we hold
            # the reload lock), so a run that does not import them waits a
            # moment for it rather than go to the base.
            self._scan_now(wp)
        else:
            self._when_idle("scan", self._scan, wp)

    # -- steps ---------------------------------------------------------------------------

    def _step(self, wp: WarmHandle, name: str, action: Callable[[WarmHandle], None]) -> bool:
        """May idle work take one more step for ``wp`` now (we hold the lock)?

        Not when the process was replaced, changes are pending or a run waits
        for the lock: then try again once things are quiet.
        """
        slot = self.slot
        if slot.current is not wp or slot.stopping.is_set() or wp.state is not WarmState.READY:
            return False  # a replacement starts its own idle work once adopted
        if slot.records.has_pending() or slot.lock.urgent_waiting():
            self._when_idle(name, action, wp)
            return False
        return True

    # -- registrants ------------------------------------------------------------------

    def _scan(self, wp: WarmHandle) -> None:
        """Find the registrant modules the layer holds (``supervisor/isolation.py``)."""
        with self.slot.hold():
            if self.slot.current is not wp or wp.state is not WarmState.READY:
                return
            scan = self._send_scan(wp)
        self._await_scan(wp, *scan)

    def _scan_now(self, wp: WarmHandle) -> None:
        """Order a scan (the caller holds the reload lock); its answer is awaited in a thread."""
        scan = self._send_scan(wp)
        threading.Thread(
            target=self._await_scan, args=(wp, *scan), name="scan", daemon=True
        ).start()

    def _send_scan(self, wp: WarmHandle) -> tuple[Mailbox, str, int]:
        """Order a scan (the caller holds the reload lock)."""
        started = self.slot.isolation.scan_started()
        order = wm.ScanOrder(id=next_order_id())
        return wp.request(order), order.id, started

    def _await_scan(self, wp: WarmHandle, box: Mailbox, order_id: str, started: int) -> None:
        isolation = self.slot.isolation
        begun = time.monotonic()
        try:
            event = box.get()
            if isinstance(event, wm.Scanned) and self.slot.current is wp:
                isolation.scanned(event.registrants if event.complete else None, started)
                log.debug("Registrant scan took %.1f ms", (time.monotonic() - begun) * 1000)
        finally:
            wp.done(order_id)
            isolation.scan_ended()

    # -- re-warm ------------------------------------------------------------------------

    def _rewarm(self, wp: WarmHandle) -> None:
        """Import purged test modules again, a few files a step, while nothing else happens."""
        while True:
            with self._lock:
                files = sorted(f for f in self._rewarm_files if os.path.exists(f))[:REWARM_STEP]
            if not files:
                return
            with self.slot.hold():
                if not self._step(wp, "rewarm", self._rewarm):
                    return
                with self._lock:
                    self._rewarm_files.difference_update(files)
                self._rewarm_files_now(wp, files)

    def _rewarm_files_now(self, wp: WarmHandle, files: list[str]) -> None:
        slot = self.slot
        since_ns = time.time_ns()
        before = {f: stat_signature(f) for f in files}
        event = wp.ask(wm.RewarmOrder(id=next_order_id(), files=files))
        if not isinstance(event, wm.Reloaded):
            return
        wp.update_modules(event)
        slot.records.record_rewarmed({f: before[f] for f in files if f in wp.modules})
        # Project modules the test modules imported for the first time; the
        # conftests this session imported ran again in the warm process.
        ran = set(event.conftests_imported)
        slot.records.record(loaded_files(wp), wp.test_files, since_ns, reread=ran, reprofile=ran)
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
        """Trial-import the wanted modules in a child (the warm process serves meanwhile),
        then import what passed one module a step."""
        with self.slot.hold():
            with self._lock:
                modules = sorted(self._wanted - self._blocked.keys())
            if not modules or not self._step(wp, "learn", self._learn):
                return
            box = wp.request(wm.TrialOrder(id=(order_id := next_order_id()), modules=modules))
        try:
            trialled = box.get()
        finally:
            wp.done(order_id)
        if not isinstance(trialled, wm.Trialled):
            return
        passed = self._note_trial(trialled.results)
        learned, spent = 0, 0.0
        try:
            for name in passed:
                with self.slot.hold():
                    if not self._step(wp, "learn", self._learn):
                        return
                    event = wp.ask(wm.LearnOrder(id=next_order_id(), modules=[name]))
                    if not isinstance(event, wm.Learned):
                        return
                    wp.update_modules(event)
                    self._note_learned(event)
                learned += len(event.imported)
                spent += event.duration_ms
                if event.tainted:
                    self.slot.replace_soon(changes.Replace.TAINTED, event.tainted)
                    return
        finally:
            if learned:
                log.info("Learned %d library imports in %.1f ms", learned, spent)
        with self._lock:
            again = bool(self._wanted)
        if again:
            self._when_idle("learn", self._learn, wp)

    def _note_trial(self, results: dict[str, str | None]) -> list[str]:
        """Record refusals; the modules that passed (to import), in order."""
        passed = []
        with self._lock:
            for name, reason in sorted(results.items()):
                if reason is None:
                    passed.append(name)
                elif reason != wm.NOT_TRIED:
                    self._blocked[name] = reason
                    self._wanted.discard(name)
                    log.info("Not learning the import of %s: it %s", name, reason)
            for name in set(self._wanted) - results.keys():
                self._wanted.discard(name)  # imported meanwhile (an earlier module brought it)
                self._learned.add(name)
        return passed

    def _note_learned(self, event: wm.Learned) -> None:
        with self._lock:
            self._learned |= set(event.imported)
            self._wanted -= set(event.imported)
            self._blocked.update(event.rejected)
            self._wanted -= event.rejected.keys()
        for name, reason in sorted(event.rejected.items()):
            log.info("Not learning the import of %s: it %s", name, reason)
