"""The warm processes as seen from the supervisor: the base and its project layers.

The base process is a fresh interpreter (never a fork of this threaded
process) holding pytest, the plugins and the project's libraries; it forks
project layers, each connected to the supervisor by a control socket of its
own (its end arrives with the ``layer_forked`` event). A project layer is
what serves runs (``WarmHandle``); the base also forks runs that must not
come from a layer (``supervisor/runs.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from pytest_fastcollect import processes
from pytest_fastcollect.supervisor.channel import Channel, Mailbox, next_order_id
from pytest_fastcollect.wire import warm as wm

__all__ = ["Mailbox", "next_order_id"]

log = logging.getLogger("pytest_fastcollect.daemon.lifecycle")


class WarmState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    DEAD = "dead"


@dataclasses.dataclass(frozen=True)
class WarmSpec:
    """How to start a base process (the environment can change between spawns)."""

    root: str
    cwd: str
    env: dict[str, str]
    sys_path0: str | None
    warm_args: list[str]
    log_fd: int
    cache_dir: str


class WarmHandle(Protocol):
    """What the supervisor uses of a project layer (a fake one in unit tests)."""

    generation: int
    pid: int
    state: WarmState
    ready: wm.Ready | None
    fork: wm.ForkVerdict | None
    error: str | None
    modules: dict[str, str]  # file -> module name
    test_files: set[str]
    conftests: set[str]
    cached_modules: int
    running: dict[str, int]  # order id -> worker pid
    unresponsive: str | None  # why it stopped answering; None while it answers

    @property
    def key(self) -> wm.WarmKey: ...
    def wait_ready(self, timeout: float | None = None) -> bool: ...
    def update_modules(self, report: wm.ModuleReport) -> None: ...
    def request(self, order: wm.Order, fds: tuple[int, ...] = ()) -> Mailbox: ...
    def ask(self, order: wm.Order) -> wm.Event | None: ...
    def done(self, order_id: str) -> None: ...
    def alive(self) -> bool: ...
    def retire(self) -> None: ...
    def kill(self) -> None: ...
    def check_responsive(self) -> str | None: ...


def loaded_files(wp: WarmHandle) -> set[str]:
    """Every project file whose content the warm process depends on: modules and conftests."""
    return set(wp.modules) | wp.conftests


class LayerProcess(Channel):
    """A project layer: conftests, project and test modules imported; serves runs."""

    def __init__(
        self,
        generation: int,
        sock: socket.socket,
        pid: int,
        on_progress: Callable[[wm.Progress], None],
        on_death: Callable[[LayerProcess], None] | None = None,
    ) -> None:
        super().__init__(sock, f"layer-reader-{generation}")
        self.generation = generation
        self.pid = pid
        self.on_death = on_death
        self.state = WarmState.STARTING
        self.ready: wm.Ready | None = None
        self.fork: wm.ForkVerdict | None = None  # the last fork-safety verdict
        self.error: str | None = None
        self.exit_code: int | None = None  # told by the base process
        self.modules: dict[str, str] = {}
        self.test_files: set[str] = set()
        self.conftests: set[str] = set()
        self.cached_modules = 0
        self._on_progress = on_progress
        self._ready_event = threading.Event()
        self.start_reading()

    def on_event(self, event: wm.Event, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        if isinstance(event, wm.Progress):
            self._on_progress(event)
        elif isinstance(event, wm.Ready):
            self.ready = event
            self.fork = event.fork
            self.update_modules(event)
            if event.fork.safe:
                self.state = WarmState.READY
            else:
                # Warm, but it cannot fork: replacing it would warm the same
                # process again. It is reported once and runs go cold.
                self.error = f"it cannot fork safely: {event.fork.reason}"
                self.state = WarmState.FAILED
            self._ready_event.set()
        elif isinstance(event, wm.WarmFailed):
            self.error = event.error
            self.state = WarmState.FAILED
            self._ready_event.set()
        elif isinstance(event, wm.Tainted):
            self.fork = wm.ForkVerdict(safe=False, reason=event.reason, os_threads=None, native={})

    def on_close(self) -> None:
        was_starting = self.state is WarmState.STARTING
        was_ready = self.state is WarmState.READY
        self.state = WarmState.FAILED if was_starting else WarmState.DEAD
        if was_starting and self.error is None:
            code = f" (exit code {self.exit_code})" if self.exit_code is not None else ""
            self.error = f"the warm process exited during warm-up{code}; see the log"
        self._ready_event.set()
        if was_ready and not self.retired and self.on_death is not None:
            self.on_death(self)

    def update_modules(self, report: wm.ModuleReport) -> None:
        self.modules = {path: name for name, path in report.modules}
        self.test_files = set(report.test_files)
        self.conftests = set(report.conftests)
        self.cached_modules = report.cached_modules

    def wait_ready(self, timeout: float | None = None) -> bool:
        self._ready_event.wait(timeout)
        return self.state is WarmState.READY

    @property
    def key(self) -> wm.WarmKey:
        assert self.ready is not None
        return self.ready.key

    def alive(self) -> bool:
        return not self.closed() and self.state in (WarmState.STARTING, WarmState.READY)

    def retire(self) -> None:
        self.send_exit()

    def kill(self) -> None:
        # Only while its socket is open: once closed, the process exited and
        # the base may have reaped it, so its pid may be someone else's.
        if not self.closed():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        self.close()


class BaseProcess(Channel):
    """The base: pytest, plugins and libraries; forks project layers and runs."""

    def __init__(
        self, spec: WarmSpec, on_death: Callable[[BaseProcess], None] | None = None
    ) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        super().__init__(parent, "base-reader")
        self.on_death = on_death
        self.state = WarmState.STARTING
        self.ready: wm.BaseReady | None = None
        self.error: str | None = None
        self.cached_modules = 0
        # Variables the base read while importing (a new environment that
        # changes one of them needs a new base): the fixed ones, then learned.
        self.env_read: set[str] = set()
        self._layers: dict[int, LayerProcess] = {}
        self._ready_event = threading.Event()
        cmd = [sys.executable, "-m", processes.WARM_MODULE]
        # What `ps` shows, so `pgrep -f pytest-fastcollect` finds it (processes.py).
        cmd += ["--title", processes.title("warm base process", spec.root)]
        cmd += ["--control-fd", str(child.fileno()), "--root", spec.root]
        cmd += ["--cache-dir", spec.cache_dir]
        if spec.sys_path0 is not None:
            cmd += ["--sys-path0", spec.sys_path0]
        cmd += ["--", *spec.warm_args]
        self.proc = subprocess.Popen(
            cmd,
            pass_fds=(child.fileno(),),
            cwd=spec.cwd,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=spec.log_fd,
            start_new_session=True,
        )
        child.close()
        self.pid = self.proc.pid
        self.start_reading()

    def on_event(self, event: wm.Event, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        if isinstance(event, wm.BaseReady):
            self.ready = event
            self.cached_modules = event.cached_modules
            self.env_read = set(event.key.env)
            self.state = WarmState.READY if event.fork.safe else WarmState.FAILED
            if not event.fork.safe:
                self.error = f"it cannot fork safely: {event.fork.reason}"
            self._ready_event.set()
        elif isinstance(event, wm.LayerExited):
            layer = self._layers.pop(event.pid, None)
            if layer is not None:
                layer.exit_code = event.code

    def on_close(self) -> None:
        was_ready = self.state is WarmState.READY
        if self.state is WarmState.STARTING and self.error is None:
            self.error = (
                f"the base process exited during start-up (exit code {self.proc.wait()}); "
                "see the log"
            )
        self.state = WarmState.DEAD if was_ready else WarmState.FAILED
        self._ready_event.set()
        for layer in list(self._layers.values()):
            layer.close()  # the kernel kills them (PR_SET_PDEATHSIG); say so at once
        if was_ready and not self.retired and self.on_death is not None:
            self.on_death(self)

    def wait_ready(self, timeout: float | None = None) -> bool:
        self._ready_event.wait(timeout)
        return self.state is WarmState.READY

    @property
    def key(self) -> wm.WarmKey:
        assert self.ready is not None
        return self.ready.key

    def alive(self) -> bool:
        return self.proc.poll() is None and self.state is WarmState.READY

    def new_layer(
        self,
        generation: int,
        env: dict[str, str],
        on_progress: Callable[[wm.Progress], None],
        on_death: Callable[[LayerProcess], None] | None,
    ) -> LayerProcess | str:
        """Fork a project layer; else why not."""
        order = wm.LayerOrder(id=next_order_id(), env=env)
        box = self.request(order)
        try:
            event = self.wait(box)
            if isinstance(event, wm.Tainted):
                return f"the base process cannot fork safely: {event.reason}"
            if not isinstance(event, wm.LayerForked) or len(box.fds) != 1:
                return "the base process died while forking a project layer"
            sock = socket.socket(fileno=os.dup(box.fds[0]))
        finally:
            self.done(order.id)
        layer = LayerProcess(generation, sock, event.pid, on_progress, on_death)
        self._layers[event.pid] = layer
        return layer

    def retire(self) -> None:
        self.send_exit()
        threading.Thread(target=self.proc.wait, name="base-reap", daemon=True).start()

    def kill(self) -> None:
        self.close()
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
