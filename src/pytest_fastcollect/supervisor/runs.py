"""Runs and collects: fork a worker from a fresh warm process and follow it.

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
import time

import pydantic

from pytest_fastcollect import fingerprint
from pytest_fastcollect.supervisor import changes
from pytest_fastcollect.supervisor.idle import IdleWork
from pytest_fastcollect.supervisor.lifecycle import BaseProcess, Mailbox, WarmHandle, next_order_id
from pytest_fastcollect.supervisor.run_workers import RunWorkers
from pytest_fastcollect.supervisor.slot import Notify, Refused, Restarting, WarmSlot
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import FrameError, read_to_eof, recv_frame, send_frame

log = logging.getLogger("pytest_fastcollect.daemon")

COLLECT_RESULT = pydantic.TypeAdapter(wm.CollectResult)
SIGNAL_FRAME_LIMIT = 4096


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
        self.workers = RunWorkers(cache_dir)  # parallel runs' xdist processes

    # -- runs ---------------------------------------------------------------------------

    def run(
        self, conn: socket.socket, req: p.RunRequest, fds: list[int]
    ) -> p.RunFinished | p.RunRefused:
        """Serve one run; RunStarted and Notice frames are sent from here."""

        def notify(message: str) -> None:
            send_frame(conn, p.dump(p.Notice(message=message)))

        status_r, status_w = os.pipe()
        try:
            fork = self._fork_run(req, fds, status_w, notify)
        except Refused as exc:
            os.close(status_r)
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
        self, req: p.RunRequest, fds: list[int], status_w: int, notify: Notify
    ) -> RunFork:
        try:
            return self._fork_from_layer(req, fds, status_w, notify)
        except (Restarting, Isolated) as exc:
            # A new project layer warms up: waiting would be slower than cold.
            base = self.slot.layers.base_for_runs()
            if base is None:
                raise Refused(str(exc)) from None
            return self._fork_from_base(base, req, fds, status_w, notify, str(exc))

    def _fork_from_base(
        self,
        base: BaseProcess,
        req: p.RunRequest,
        fds: list[int],
        status_w: int,
        notify: Notify,
        why: str,
    ) -> RunFork:
        """A run that imports the project itself, in a fork of the base process."""
        reasons = fingerprint.interpreter_differences(base.key, req.python, req.sys_path)
        reasons += fingerprint.env_differences(base.key.env, req.env)
        if reasons:
            raise Refused(why if reasons[0] in why else f"{why}; {reasons[0]}")
        notify(f"{why}; this run imports the project itself")
        order = self._fork_order(req)
        box = base.request(order, (*fds, status_w))
        log.debug("Run [%s] is order %s on the base process %d", req.request_id, order.id, base.pid)
        return RunFork(base, box, order.id, self.slot.generation, learner=None)

    @staticmethod
    def _fork_order(req: p.RunRequest) -> wm.ForkOrder:
        return wm.ForkOrder(
            id=next_order_id(),
            mode="run",
            args=req.args,
            cwd=req.cwd,
            env=req.env,
            umask=req.umask,
            argv0=req.argv0,
        )

    def _fork_from_layer(
        self, req: p.RunRequest, fds: list[int], status_w: int, notify: Notify
    ) -> RunFork:
        with self.slot.hold(for_run=True) as held:
            wp = held.fresh(notify)
            reasons = fingerprint.interpreter_differences(wp.key, req.python, req.sys_path)
            if reasons:
                raise Refused(reasons[0])
            env_reasons = fingerprint.env_differences(wp.key.env, req.env)
            if env_reasons:
                # Values read at import time changed (an export between runs):
                # warm a process with the run's environment.
                wp = held.use_environment(req.env, env_reasons[0], notify)
            apart = self.slot.isolation.verdict(wp, req.args, req.cwd)
            if apart is not None:
                raise Isolated(apart)
            order = self._fork_order(req)
            box = wp.request(order, (*fds, status_w))
        log.debug("Run [%s] is order %s on warm process %d", req.request_id, order.id, wp.pid)
        return RunFork(wp, box, order.id, wp.generation, learner=wp)

    def _follow(
        self, conn: socket.socket, req: p.RunRequest, fork: RunFork, status_r: int
    ) -> p.RunFinished | p.RunRefused:
        box = fork.box
        event = box.get()
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
        # The worker may still refuse the run (its option check comes first,
        # before it writes anything); the client then runs cold.
        started = p.RunStarted(request_id=req.request_id, pid=pid, generation=fork.generation)
        send_frame(conn, p.dump(started))
        client_gone = False
        while True:
            waiting: list[Mailbox | socket.socket] = [box] if client_gone else [box, conn]
            readable, _, _ = select.select(waiting, [], [])
            if box in readable:
                done = self._finished(req, fork.learner, box.get(), pid, status_r)
                if done is not None:
                    return done
            if not client_gone and conn in readable:
                client_gone = self._client_message(conn, pid)

    def _finished(
        self,
        req: p.RunRequest,
        learner: WarmHandle | None,
        event: wm.Event | None,
        pid: int,
        status_r: int,
    ) -> p.RunFinished | p.RunRefused | None:
        if event is None:
            _killpg(pid, signal.SIGKILL)
            return p.RunFinished(
                request_id=req.request_id,
                exit_code=3,
                message="the warm process died during the run",
            )
        if not isinstance(event, wm.Exited):
            return None
        if event.imports and learner is not None:
            self.idle.want_imports(learner, event.imports)
        if event.code == fingerprint.REFUSED_EXIT:
            reason = _read_available(status_r).decode(errors="replace").strip()
            if reason:
                return p.RunRefused(request_id=req.request_id, reason=reason)
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

    # -- collects -----------------------------------------------------------------------

    def collect(self, req: p.CollectRequest) -> p.CollectResponse | p.ErrorResponse:
        root = req.root if os.path.isabs(req.root) else os.path.join(self.root, req.root)
        targets = [
            x if os.path.isabs(x) else os.path.join(self.root, x) for x in req.filters.paths
        ] or [root]
        for target in [root, *targets]:
            if not self.inside_root(target.split("::", 1)[0]):
                return p.ErrorResponse(
                    request_id=req.request_id,
                    code=p.ErrorCode.OUTSIDE_ROOT,
                    message=f"{target} resolves outside the project root {self.root}",
                )
        if not req.filters.paths and os.path.realpath(root) == self.root:
            # The project root itself: collect as `pytest --collect-only` there
            # would, honouring testpaths.
            targets = []
        started = time.perf_counter()
        args = ["--collect-only", "-q", "-o", f"cache_dir={self.cache_dir}"]
        if req.filters.keyword:
            args += ["-k", req.filters.keyword]
        if req.filters.markers:
            args += ["-m", req.filters.markers]
        try:
            wp, raw = self._collect_in_worker([*args, *targets])
        except Refused as exc:
            return p.ErrorResponse(
                request_id=req.request_id, code=p.ErrorCode.NOT_READY, message=str(exc)
            )
        if not raw:
            return p.ErrorResponse(
                request_id=req.request_id,
                code=p.ErrorCode.INTERNAL,
                message="the collect worker produced no result (it crashed); see the daemon log",
            )
        result = COLLECT_RESULT.validate_json(raw)
        return p.CollectResponse(
            request_id=req.request_id,
            node_ids=result.node_ids,
            count=len(result.node_ids),
            errors=[p.CollectError(nodeid=e.nodeid, message=e.message) for e in result.errors],
            exit_code=result.exit_code,
            collection_time=round(time.perf_counter() - started, 4),
            generation=wp.generation,
        )

    def _collect_in_worker(self, args: list[str]) -> tuple[WarmHandle, bytes]:
        r, w = os.pipe()
        try:
            # The API has no cold collect to fall back on: it waits for a warm-up.
            with self.slot.hold() as held:
                wp = held.fresh(lambda _m: None)
                order = wm.ForkOrder(
                    id=next_order_id(),
                    mode="collect",
                    args=args,
                    cwd=self.root,
                    env=self.slot.warm_env,
                    umask=_umask(),
                )
                box = wp.request(order, (w,))
        except Refused:
            os.close(r)
            raise
        finally:
            os.close(w)
        try:
            raw = read_to_eof(r)
            while True:
                event = box.get()
                if event is None or isinstance(event, (wm.Exited, wm.Tainted)):
                    break
        finally:
            os.close(r)
            wp.done(order.id)
        if isinstance(event, wm.Tainted):
            self.slot.replace_soon(changes.Replace.TAINTED, event.reason)
        return wp, raw

    def inside_root(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def kill_all(self) -> None:
        wp = self.slot.current
        if wp is not None:
            for pid in list(wp.running.values()):
                _killpg(pid, signal.SIGKILL)


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


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
