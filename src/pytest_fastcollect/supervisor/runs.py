"""Runs: fork a worker from a fresh warm process and follow it.

Runs in the supervisor, one thread per connection. A run is refused (the
client runs it cold) whenever the warm process cannot serve it exactly:
not warm, another interpreter or ``sys.path``, or options that differ at
import time (checked in the worker). The fork order is sent under the
reload lock, right after the pending changes were applied, so the run sees
exactly the code that was on disk when it was asked for.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time

from pytest_fastcollect import fingerprint
from pytest_fastcollect.supervisor import changes
from pytest_fastcollect.supervisor.idle import IdleWork
from pytest_fastcollect.supervisor.lifecycle import BaseProcess, Mailbox, WarmHandle, next_order_id
from pytest_fastcollect.supervisor.run_workers import RunWorkers
from pytest_fastcollect.supervisor.slot import Notify, Refused, Restarting, WarmSlot
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

log = logging.getLogger("pytest_fastcollect.daemon")

SIGNAL_FRAME_LIMIT = 4096
# A fork order is answered in milliseconds; past this the warm process is not answering.
FORK_ANSWER_TIMEOUT = 10.0
# How often a run waiting on the warm process looks whether it stopped answering.
WAIT_POLL = 0.5
# After SIGTERM, a run stopped by --daemon-stop has this long before SIGKILL.
STOP_KILL_AFTER = 2.0


class Isolated(Refused):
    """The layer holds modules a cold run of this selection never imports."""


class RunFork:
    """A run's worker as ordered: from which process, its mailbox and order."""

    __slots__ = ("box", "generation", "learner", "order_id", "source")

    def __init__(
        self,
        source: WarmHandle | BaseProcess,
        box: Mailbox,
        order_id: str,
        generation: int,
        learner: WarmHandle | None,
    ) -> None:
        self.source = source
        self.box = box
        self.order_id = order_id
        self.generation = generation
        self.learner = learner  # who learns the library modules it imports


class Runs:
    def __init__(
        self, slot: WarmSlot, idle: IdleWork, root: str, cache_dir: str, request_timeout: float
    ) -> None:
        self.slot = slot
        self.idle = idle
        self.root = root
        self.cache_dir = cache_dir
        self.request_timeout = request_timeout
        self._active = 0  # runs being served (connection threads inside ``run``)
        self._idle = threading.Condition()
        # Set once --daemon-stop ends the runs still going: what their clients hear.
        self.stopped_by: str | None = None
        self.workers = RunWorkers(cache_dir)  # parallel runs' xdist processes

    # -- runs ---------------------------------------------------------------------------

    def run(
        self, conn: socket.socket, req: p.RunRequest, fds: list[int]
    ) -> p.RunFinished | p.RunRefused:
        """Serve one run; RunStarted and Notice frames are sent from here."""
        if self.slot.stopping.is_set():
            return p.RunRefused(request_id=req.request_id, reason="the daemon is stopping")
        with self._idle:
            self._active += 1
        try:
            return self._run(conn, req, fds)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _run(
        self, conn: socket.socket, req: p.RunRequest, fds: list[int]
    ) -> p.RunFinished | p.RunRefused:
        def notify(message: str) -> None:
            send_frame(conn, p.dump(p.Notice(message=message)))

        received = time.monotonic()
        status_r, status_w = os.pipe()
        try:
            fork = self._fork_run(req, fds, status_w, notify, received)
        except Refused as exc:
            os.close(status_r)
            log.debug("Run [%s] refused (the client runs it cold): %s", req.request_id, exc)
            return p.RunRefused(request_id=req.request_id, reason=str(exc))
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
            for fd in fds:
                os.close(fd)
        try:
            return self._follow(conn, req, fork, status_r)
        finally:
            os.close(status_r)
            fork.source.done(fork.order_id)
            self.workers.finished(fork.order_id, req.request_id)

    def _fork_run(
        self, req: p.RunRequest, fds: list[int], status_w: int, notify: Notify, received: float
    ) -> RunFork:
        try:
            return self._fork_from_layer(req, fds, status_w, notify, received)
        except (Restarting, Isolated) as exc:
            # A new project layer warms up: waiting would be slower than cold.
            base = self.slot.layers.base_for_runs()
            if base is None:
                raise Refused(str(exc)) from None
            return self._fork_from_base(base, req, fds, status_w, notify, str(exc), received)

    def _fork_from_base(
        self,
        base: BaseProcess,
        req: p.RunRequest,
        fds: list[int],
        status_w: int,
        notify: Notify,
        why: str,
        received: float,
    ) -> RunFork:
        """A run that imports the project itself, in a fork of the base process."""
        reasons = fingerprint.interpreter_differences(base.key, req.python, req.sys_path, req.cwd)
        reasons += fingerprint.env_differences(base.key.env, req.env)
        if reasons:
            raise Refused(why if reasons[0] in why else f"{why}; {reasons[0]}")
        notify(f"{why}; this run imports the project itself")
        order = self._fork_order(req, received)
        box = base.request(order, (*fds, status_w))
        log.debug(
            "Run [%s] served from the base process: order %s on process %d (%s)",
            req.request_id,
            order.id,
            base.pid,
            why,
        )
        return RunFork(base, box, order.id, self.slot.generation, learner=None)

    @staticmethod
    def _fork_order(req: p.RunRequest, received: float) -> wm.ForkOrder:
        return wm.ForkOrder(
            id=next_order_id(),
            mode="run",
            args=req.args,
            cwd=req.cwd,
            env=req.env,
            umask=req.umask,
            argv0=req.argv0,
            closed_fds=sorted(set(req.closed_fds)),
            stamps={"received": received, "ordered": time.monotonic()},
        )

    def _fork_from_layer(
        self, req: p.RunRequest, fds: list[int], status_w: int, notify: Notify, received: float
    ) -> RunFork:
        with self.slot.hold(for_run=True) as held:
            wp = held.fresh(notify)
            reasons = fingerprint.interpreter_differences(wp.key, req.python, req.sys_path, req.cwd)
            if reasons:
                raise Refused(reasons[0])
            env_reasons = fingerprint.env_differences(wp.key.env, req.env)
            if env_reasons:
                # Values read at import time changed (an export between runs):
                # warm a process with the run's environment.
                log.debug(
                    "Run [%s]: %s; warming a process with its environment",
                    req.request_id,
                    env_reasons[0],
                )
                wp = held.use_environment(req.env, env_reasons[0], notify)
            addopts = req.env.get("PYTEST_ADDOPTS", "")
            apart = self.slot.isolation.verdict(wp, req.args, req.cwd, addopts)
            if apart is not None:
                raise Isolated(apart)
            order = self._fork_order(req, received)
            box = wp.request(order, (*fds, status_w))
        log.debug(
            "Run [%s] served warm: order %s on warm process %d (generation %d), args %s",
            req.request_id,
            order.id,
            wp.pid,
            wp.generation,
            req.args,
        )
        return RunFork(wp, box, order.id, wp.generation, learner=wp)

    def _follow(
        self, conn: socket.socket, req: p.RunRequest, fork: RunFork, status_r: int
    ) -> p.RunFinished | p.RunRefused:
        box, source = fork.box, fork.source
        event = fork_answer(source, box)
        if source.unresponsive is not None and event is None:
            # The supervisor's self-check replaces it (``Supervisor.check_warm``).
            abandon(source)
            return p.RunRefused(
                request_id=req.request_id,
                reason=f"the warm process is not answering ({source.unresponsive}); "
                "it is being replaced",
            )
        if isinstance(event, wm.Tainted):
            self.slot.replace_soon(changes.Replace.TAINTED, event.reason)
            return p.RunRefused(
                request_id=req.request_id, reason=f"{event.reason}; replacing the warm process"
            )
        if not isinstance(event, wm.Forked):
            return p.RunRefused(
                request_id=req.request_id, reason="the warm process died before the run started"
            )
        pid = event.pid
        if event.standby:
            how = "prepared for this command" if event.prepared else "get_config prepared"
            log.debug("Run [%s] took the standby worker %d (%s)", req.request_id, pid, how)
            if event.prepared:
                self.slot.stats.count_served("prepared")
        else:
            log.debug("Run [%s] forked afresh as %d: %s", req.request_id, pid, event.why_fresh)
        self.slot.stats.count_served("standby" if event.standby else "fresh")
        # The worker may still refuse the run (its option check comes first,
        # before it writes anything); the client then runs cold.
        started = p.RunStarted(request_id=req.request_id, pid=pid, generation=fork.generation)
        send_frame(conn, p.dump(started))
        client_gone = False
        told_unresponsive = False
        while True:
            waiting: list[Mailbox | socket.socket] = [box] if client_gone else [box, conn]
            readable, _, _ = select.select(waiting, [], [], WAIT_POLL)
            if source.unresponsive is not None and not told_unresponsive and not client_gone:
                told_unresponsive = True
                _notice(
                    conn,
                    f"the warm process stopped answering ({source.unresponsive}); this run's "
                    "result arrives if it answers again",
                )
            if box in readable:
                done = self._finished(req, fork, box.get(), pid, status_r)
                if done is not None:
                    return done
            if not client_gone and conn in readable:
                client_gone = self._client_message(conn, pid)

    def _finished(
        self,
        req: p.RunRequest,
        fork: RunFork,
        event: wm.Event | None,
        pid: int,
        status_r: int,
    ) -> p.RunFinished | p.RunRefused | None:
        if self.stopped_by is not None and (event is None or _killed(event)):
            return p.RunFinished(request_id=req.request_id, exit_code=3, message=self.stopped_by)
        if event is None:
            _killpg(pid, signal.SIGKILL)
            lost = fork.source.unresponsive
            died = (
                f"the warm process stopped answering ({lost}) and was killed; "
                "this run's result is lost"
                if lost is not None
                else "the warm process died during the run"
            )
            return p.RunFinished(request_id=req.request_id, exit_code=3, message=died)
        if not isinstance(event, wm.Exited):
            return None
        if event.imports and fork.learner is not None:
            self.idle.want_imports(fork.learner, event.imports)
        if event.code == fingerprint.REFUSED_EXIT:
            reason = _read_available(status_r).decode(errors="replace").strip()
            if reason:
                log.debug("Run [%s] refused by its worker (runs cold): %s", req.request_id, reason)
                return p.RunRefused(request_id=req.request_id, reason=reason)
        log.debug("Run [%s] finished: exit code %d", req.request_id, event.code)
        if event.code < 0:
            return p.RunFinished(
                request_id=req.request_id, exit_code=128 - event.code, signal=-event.code
            )
        return p.RunFinished(request_id=req.request_id, exit_code=event.code)

    def _client_message(self, conn: socket.socket, pid: int) -> bool:
        """A signal to forward, or the client went away (True: its run goes with it)."""
        try:
            raw, _ = recv_frame(conn, SIGNAL_FRAME_LIMIT, timeout=self.request_timeout)
            sig = p.request_adapter().validate_json(raw)
        except (FrameError, OSError, ValueError):
            _killpg(pid, signal.SIGKILL)
            return True
        if isinstance(sig, p.SignalRequest):
            _killpg(pid, sig.signum)
        return False

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        base = self.slot.layers.base_for_runs()
        for source in (self.slot.current, base):
            if source is not None:
                for pid in list(source.running.values()):
                    _killpg(pid, sig)

    def active(self) -> int:
        with self._idle:
            return self._active

    def _wait_idle(self, timeout: float, force: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0 or (force is not None and force.is_set()):
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    def drain(self, grace: float, force: threading.Event) -> None:
        """--daemon-stop: runs in progress may finish within ``grace`` (a second stop
        ends them at once); then they are stopped, and their clients told so."""
        if self._wait_idle(grace, force):
            return
        self.stopped_by = "the run was stopped by pytest --daemon-stop"
        log.info("Stopping %d runs still in progress", self.active())
        self.kill_all(signal.SIGTERM)
        if not self._wait_idle(STOP_KILL_AFTER):
            self.kill_all(signal.SIGKILL)
            self._wait_idle(STOP_KILL_AFTER)


def fork_answer(source: WarmHandle | BaseProcess, box: Mailbox) -> wm.Event | None:
    """The first answer to a fork order; None if the process died or stopped answering."""
    deadline = time.monotonic() + FORK_ANSWER_TIMEOUT
    while True:
        try:
            return box.get(WAIT_POLL)
        except TimeoutError:
            if source.unresponsive is not None:
                return None
            if time.monotonic() > deadline:
                source.unresponsive = (
                    f"it did not answer a fork order within {FORK_ANSWER_TIMEOUT:g}s"
                )
                log.warning("Warm process %d does not answer: %s", source.pid, source.unresponsive)
                return None


def _killed(event: wm.Event) -> bool:
    return isinstance(event, wm.Exited) and event.code < 0


def abandon(source: WarmHandle | BaseProcess) -> None:
    """It holds a fork order it never answered: were it to wake up, it would run that
    run a second time (the client has gone cold), and the client's descriptors queued
    with the order keep its pipes open. Kill it; runs in progress on it are lost."""
    log.warning("Killing warm process %d: it holds a fork order it did not answer", source.pid)
    source.kill()


def _notice(conn: socket.socket, message: str) -> None:
    try:
        send_frame(conn, p.dump(p.Notice(message=message)))
    except OSError:
        pass


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
