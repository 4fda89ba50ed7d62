"""execnet popen gateways whose process comes from the fork server.

Runs in the xdist controller (a run worker), from ``pytest_xdist_setupnodes``
on: imported only when xdist is about to start workers, so execnet is there.

xdist makes every worker with ``NodeManager.group.makegateway(spec)``; for a
popen spec execnet spawns ``python -u -c <bootstrap line>`` with pipes on its
stdin and stdout (``gateway_io.create_io``), then bootstraps and serves the
gateway over them. Only that spawn is replaced: the fork server forks a child
of the warm state on two fresh pipes, and execnet's bootstrap, xdist's remote
module, its scheduling, reports and crash handling run unchanged. Specs for
another interpreter, ssh, sockets or proxies get execnet's own processes.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterator
from typing import Any

import execnet
import pytest
from execnet import gateway_io
from execnet.gateway_base import ExecModel, Popen2IO

from pytest_fastcollect.warm.xdist_fork import ForkServer, ForkServerError


def forkable(spec: execnet.XSpec) -> bool:
    """A plain local popen gateway: same interpreter, no proxy."""
    return bool(spec.popen) and not (
        spec.python or spec.via or spec.ssh or spec.socket or spec.vagrant_ssh
    )


def route(config: pytest.Config, server: ForkServer) -> None:
    """Make the run's xdist NodeManager take its popen gateways from ``server``."""
    dsession = config.pluginmanager.getplugin("dsession")
    group = getattr(getattr(dsession, "nodemanager", None), "group", None)
    if not isinstance(group, execnet.Group):
        return
    makegateway = group.makegateway

    def forked_makegateway(spec: Any = None) -> execnet.Gateway:
        with _popen_from(server):
            return makegateway(spec)

    # The instance attribute: only this session's group, also for the
    # replacements of crashed workers (xdist calls it again for those).
    group.makegateway = forked_makegateway  # type: ignore[method-assign]


@contextlib.contextmanager
def _popen_from(server: ForkServer) -> Iterator[None]:
    real = gateway_io.create_io
    caller = threading.get_ident()

    def create_io(spec: execnet.XSpec, execmodel: ExecModel) -> Any:
        if threading.get_ident() == caller and forkable(spec):
            try:
                return ForkedIO(server, spec, execmodel)
            except ForkServerError:
                pass
        return real(spec, execmodel)

    gateway_io.create_io = create_io
    try:
        yield
    finally:
        gateway_io.create_io = real


class ForkedProcess:
    """What execnet asks of a popen gateway's process: wait for it, kill it.

    It is the fork server's child, not ours: a pidfd names it without a race
    on its pid. Its exit status belongs to the fork server, which reaps it.
    """

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.pidfd = pidfd

    def wait(self, timeout: float | None = None) -> int | None:
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        poller.poll(None if timeout is None else int(timeout * 1000))
        return None

    def kill(self) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ForkedIO(Popen2IO):
    """execnet's ``Popen2IOMaster`` for a worker from the fork server."""

    def __init__(self, server: ForkServer, spec: execnet.XSpec, execmodel: ExecModel) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            # A popen child inherits the controller's stderr as it is now.
            pid, pidfd = server.spawn(
                str(spec.id), bool(spec.dont_write_bytecode), (to_child_r, from_child_w, 2)
            )
        except BaseException:
            for fd in (to_child_w, from_child_r):
                os.close(fd)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.popen = ForkedProcess(pid, pidfd)
        super().__init__(os.fdopen(to_child_w, "wb"), os.fdopen(from_child_r, "rb"), execmodel)

    def wait(self) -> int | None:
        return self.popen.wait()

    def kill(self) -> None:
        self.popen.kill()
