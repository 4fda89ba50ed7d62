"""The order loop shared by both warm layers: read orders, fork workers, reap children.

Runs in the base process and in the project layer (``base.py``,
``zygote.py``), both single-threaded: a thread would make forking unsafe.
Each fork is checked first (``threads.fork_safety``). Children are reaped
from a SIGCHLD wake-up pipe in the same ``select`` loop that reads orders.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from pytest_fastcollect.warm import learn, pyc_writer, threads, worker
from pytest_fastcollect.warm.standby import StandbySlot
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import PeerClosed, recv_frame, send_frame

CONTROL_FRAME_LIMIT = 256 * 1024 * 1024


def fork_accounted() -> int:
    """``os.fork()`` once ``threads.fork_safety`` found every other thread fork-safe.

    Python 3.12+ warns on a fork from a process with several OS threads; the
    pools we fork beside were checked (their atfork handlers), so the warning
    says nothing here, and a PYTHONWARNINGS=error must not turn it into a failure.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*multi-threaded.*fork\(\)", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        # The child's collections leave the inherited heap alone (its pages
        # stay shared); a project layer keeps its own objects unfrozen.
        gc.freeze()
    return pid


def fork_verdict() -> wm.ForkVerdict:
    verdict = threads.fork_safety()
    return wm.ForkVerdict(
        safe=verdict.safe,
        reason=verdict.reason,
        os_threads=verdict.os_threads,
        native=dict(verdict.native),
    )


def _stales_standby(order: wm.Order) -> bool:
    """Every order but a run, a registrant scan (a child reads the heap) and a liveness
    ping changes the layer or its files."""
    if isinstance(order, wm.PingOrder):
        return order.changed
    return not isinstance(order, (wm.ForkOrder, wm.ScanOrder))


class OrderLoop:
    """Serve orders on ``ctl``; subclasses add handlers and what their events carry."""

    def __init__(self, ctl: socket.socket, root: str, cache_dir: str) -> None:
        self.ctl = ctl
        self.root = os.path.realpath(root)
        self.cache_dir = cache_dir
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        self.children: dict[int, str] = {}  # worker pid -> order id
        # Children doing work for an order (a trial, a scan): pid -> what to do when done.
        self.jobs: dict[int, Callable[[], None]] = {}
        # Those of them that leave the layer as it is (a scan): a standby may be
        # forked beside them. A trial may be followed by imports into the layer.
        self.quiet_jobs: set[int] = set()
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        self.wake_r, self.wake_w = rfd, wfd
        # The base freezes what it imports (its children never collect it);
        # a project layer does not, so that a reload's collection looks at
        # the layer's own objects only (reload.py).
        self.freezes_heap = True
        # The next run's worker, forked ahead (project layers only: standby.py).
        self.standby: StandbySlot | None = None
        # Files a reload purged whose pyc the next run would rewrite (pyc_writer.py),
        # and the writers forked for them.
        self.pyc_ahead: list[tuple[str, str]] = []
        self.pyc_writers: set[int] = set()
        self.handlers: dict[str, Callable[[Any, list[int]], bool]] = {
            "fork": self.fork,
            "trial": self.trial,
            "learn": self.learn,
            "exit": self.exit,
            "ping": self.ping,
        }

    def send(self, event: Any) -> None:
        send_frame(self.ctl, wm.encode(event))

    # -- what subclasses tell -----------------------------------------------------------

    def fork_options(self) -> dict[str, str] | None:
        """Import-time options a run must match (None: nothing to check)."""
        return None

    def report(self) -> dict[str, Any]:
        """The fields of ``wm.ModuleReport`` for events that carry one."""
        raise NotImplementedError

    def reaped(self, pid: int, status: int) -> bool:
        """A child that is neither a worker nor a trial exited; True if it was ours."""
        return False

    # -- the loop -----------------------------------------------------------------------

    def loop(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        while True:
            watched: list[socket.socket | int] = [self.ctl, self.wake_r]
            preparing = self._standby_tick()
            if preparing is not None:
                watched.append(preparing)
            readable, _, _ = select.select(watched, [], [])
            if preparing is not None and preparing in readable and self.standby is not None:
                self.standby.readable()
            if self.wake_r in readable:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                self.reap()
            if self.ctl in readable:
                try:
                    raw, fds = recv_frame(self.ctl, CONTROL_FRAME_LIMIT, want_fds=True)
                except (PeerClosed, ConnectionError):
                    # The supervisor went away (a reset when it left unread
                    # events behind): nobody to serve, nothing to report.
                    self.shutdown()
                    return
                order = wm.decode_order(raw)
                if isinstance(order, wm.ForkOrder):
                    self.pyc_ahead = []  # the run rewrites what it imports itself
                if self.standby is not None and _stales_standby(order):
                    # The layer is about to change: what the standby holds would be stale.
                    self.standby.changed()
                if not self.handlers[order.op](order, fds):
                    return

    def _standby_tick(self) -> socket.socket | None:
        """Fork a standby when idle; the socket to watch while one prepares."""
        slot = self.standby
        if slot is None or not slot.enabled:
            self.pyc_ahead = []  # written ahead only for a command a standby predicts
            return None
        if slot.current is None and not self.children and self.jobs.keys() <= self.quiet_jobs:
            slot.spawn(self)
        if self.pyc_ahead and not self.children and not self.jobs and slot.prepared_and_ready():
            self._write_pycs_ahead(slot)
        return slot.fileno_waiting()

    def _write_pycs_ahead(self, slot: StandbySlot) -> None:
        """Fork the pyc writer under the last run's command: only once the standby
        is ready and no run is in progress or waiting, so that it never takes a
        core from the run it prepares for (on a 2-core machine, a run that is
        already waiting is quicker rewriting the file itself)."""
        files, self.pyc_ahead = self.pyc_ahead, []
        if slot.last is None or not threads.fork_safety().safe:
            return
        close = [self.ctl.fileno(), self.wake_r, self.wake_w, *slot.close_fds()]
        self.pyc_writers.add(pyc_writer.spawn(slot.last, files, close, self.fork_options()))

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is not None:
                self.quiet_jobs.discard(pid)
                job()
                continue
            if pid in self.pyc_writers:
                self.pyc_writers.discard(pid)
                continue
            order_id = self.children.pop(pid, None)
            if order_id is None:
                self.reaped(pid, status)
                continue
            self.send(
                wm.Exited(
                    id=order_id,
                    pid=pid,
                    code=os.waitstatus_to_exitcode(status),
                    imports=learn.read_recorded(self.learn_file(order_id)),
                )
            )

    # -- orders -------------------------------------------------------------------------

    def learn_file(self, order_id: str) -> str:
        return os.path.join(self.cache_dir, f"learn-{os.getpid()}-{order_id}.json")

    def fork(self, order: wm.ForkOrder, fds: list[int]) -> bool:
        verdict = threads.fork_safety()
        if not verdict.safe:
            for fd in fds:
                os.close(fd)
            if self.standby is not None:
                self.standby.discard()
            self.send(wm.Tainted(id=order.id, reason=verdict.reason))
            return True
        known = None
        learn_file = None
        if order.mode == "run":
            # The run records the library modules it imports (learn.py).
            known = frozenset(sys.modules)
            learn_file = self.learn_file(order.id)
        pid, why, prepared = None, "", False
        if self.standby is not None and self.standby.enabled:
            pid, why, prepared = self.standby.take(self, order, fds)
        standby = pid is not None
        if pid is None:
            pid = fork_accounted()
            if pid == 0:
                close = [self.ctl.fileno(), self.wake_r, self.wake_w]
                if self.standby is not None:
                    close += self.standby.close_fds()
                worker.run_child(order, fds, close, self.fork_options(), known, learn_file)
                os._exit(3)  # run_child never returns; belt and braces
        for fd in fds:
            os.close(fd)
        self.children[pid] = order.id
        self.send(
            wm.Forked(id=order.id, pid=pid, standby=standby, why_fresh=why, prepared=prepared)
        )
        return True

    def trial(self, order: wm.TrialOrder, _fds: list[int]) -> bool:
        wanted = [n for n in order.modules if n not in sys.modules]
        if not wanted or not threads.fork_safety().safe:
            # Nothing to try, or no child can be forked safely now: try later.
            self.send(wm.Trialled(id=order.id, results=dict.fromkeys(wanted, wm.NOT_TRIED)))
            return True
        path = os.path.join(self.cache_dir, f"trial-{os.getpid()}-{order.id}.json")
        pid = learn.start_trial(
            wanted, self.root, threads.fork_safety, path, expected=order.expected
        )

        def done() -> None:
            self.send(wm.Trialled(id=order.id, results=learn.finish_trial(wanted, path)))

        self.jobs[pid] = done
        return True

    def learn(self, order: wm.LearnOrder, _fds: list[int]) -> bool:
        started = time.perf_counter()
        passed: dict[str, str | None] = dict.fromkeys(order.modules)
        result = learn.import_trialled(passed, self.root, threads.fork_safety)
        if result.imported:
            gc.collect()  # what the imports left behind
            if self.freezes_heap:
                gc.freeze()
        self.send(
            wm.Learned(
                id=order.id,
                imported=result.imported,
                rejected=result.rejected,
                deferred=result.deferred,
                tainted=result.tainted,
                duration_ms=(time.perf_counter() - started) * 1000,
                **self.report(),
            )
        )
        return True

    def ping(self, order: wm.PingOrder, _fds: list[int]) -> bool:
        """The supervisor checks that this process still answers."""
        self.send(wm.Pong(id=order.id))
        return True

    def exit(self, _order: wm.ExitOrder, _fds: list[int]) -> bool:
        """Retired by the supervisor: let running workers finish, then exit."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            order_id = self.children.pop(pid, None)
            if order_id is not None:
                try:
                    self.send(
                        wm.Exited(id=order_id, pid=pid, code=os.waitstatus_to_exitcode(status))
                    )
                except OSError:
                    pass
        return False

    def shutdown(self) -> None:
        if self.standby is not None:
            self.standby.discard()
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
