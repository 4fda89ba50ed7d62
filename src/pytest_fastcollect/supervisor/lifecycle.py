"""One warm process as seen from the supervisor: spawn, events, orders.

The warm process is a fresh interpreter (never a fork of this threaded
process). A reader thread validates its events (pydantic, against the
dataclasses of ``wire/warm.py``) and routes them: start-up events to the
supervisor, per-order events to that order's mailbox. Order ids are ours.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import logging
import os
import queue
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Protocol

import pydantic

from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

log = logging.getLogger("pytest_fastcollect.daemon.lifecycle")

EVENT_LIMIT = 256 * 1024 * 1024
EVENT_ADAPTER: pydantic.TypeAdapter[wm.Event] = pydantic.TypeAdapter(
    Annotated[wm.Event, pydantic.Field(discriminator="ev")]
)
_order_ids = itertools.count(1)


def next_order_id() -> str:
    return f"o{next(_order_ids)}"


class WarmState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    DEAD = "dead"


class Mailbox:
    """A queue whose arrivals can also be waited on with select()."""

    def __init__(self) -> None:
        self._q: queue.Queue[wm.Event | None] = queue.Queue()
        self._r, self._w = os.pipe()
        self._lock = threading.Lock()
        self._closed = False

    def fileno(self) -> int:
        return self._r

    def put(self, event: wm.Event | None) -> None:
        # A closed box may still be registered (the reader broadcasts None on
        # exit): its fd numbers may belong to another file by now, e.g. a new
        # warm process's control socket, so never write after close.
        with self._lock:
            if self._closed:
                return
            self._q.put(event)
            try:
                os.write(self._w, b"x")
            except OSError:
                pass

    def get(self, timeout: float | None = None) -> wm.Event | None:
        """None means the warm process died."""
        if timeout is not None:
            ready, _, _ = select.select([self._r], [], [], timeout)
            if not ready:
                raise TimeoutError
        os.read(self._r, 1)
        return self._q.get_nowait()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._r, self._w):
                try:
                    os.close(fd)
                except OSError:
                    pass


@dataclasses.dataclass(frozen=True)
class WarmSpec:
    """How to start a warm process (the environment can change between spawns)."""

    root: str
    cwd: str
    env: dict[str, str]
    sys_path0: str | None
    warm_args: list[str]
    log_fd: int
    cache_dir: str


class WarmHandle(Protocol):
    """What the supervisor uses of a warm process (a fake one in unit tests)."""

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


def loaded_files(wp: WarmHandle) -> set[str]:
    """Every project file whose content the warm process depends on: modules and conftests."""
    return set(wp.modules) | wp.conftests


class WarmProcess:
    def __init__(
        self,
        generation: int,
        spec: WarmSpec,
        on_progress: Callable[[wm.Progress], None],
        on_death: Callable[[WarmProcess], None] | None = None,
    ) -> None:
        self.on_death = on_death
        self.retired = False
        self.generation = generation
        self.state = WarmState.STARTING
        self.ready: wm.Ready | None = None
        self.fork: wm.ForkVerdict | None = None  # the last fork-safety verdict
        self.error: str | None = None
        self.modules: dict[str, str] = {}  # file -> module name
        self.test_files: set[str] = set()
        self.conftests: set[str] = set()
        self.cached_modules = 0
        self._on_progress = on_progress
        self._ready_event = threading.Event()
        self._send_lock = threading.Lock()
        self._mailboxes: dict[str, Mailbox] = {}
        self._mailbox_lock = threading.Lock()
        self.running: dict[str, int] = {}  # order id -> worker pid
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent
        cmd = [
            sys.executable,
            "-m",
            "pytest_fastcollect.warm.zygote",
            "--control-fd",
            str(child.fileno()),
            "--root",
            spec.root,
            "--cache-dir",
            spec.cache_dir,
        ]
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
        self._reader = threading.Thread(
            target=self._read_loop, name=f"warm-reader-{generation}", daemon=True
        )
        self._reader.start()

    # -- events ------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while True:
                raw, _ = recv_frame(self.sock, EVENT_LIMIT)
                try:
                    event = EVENT_ADAPTER.validate_json(raw)
                except pydantic.ValidationError as exc:
                    log.error("Invalid message from warm process %d: %s", self.pid, exc)
                    continue
                self._dispatch(event)
        except (FrameError, OSError):
            pass
        finally:
            was_starting = self.state is WarmState.STARTING
            was_ready = self.state is WarmState.READY
            self.state = WarmState.FAILED if was_starting else WarmState.DEAD
            if was_starting and self.error is None:
                self.error = f"the warm process exited during warm-up (exit code {self.proc.wait()}); see the log"
            self._ready_event.set()
            with self._mailbox_lock:
                boxes = list(self._mailboxes.values())
            for box in boxes:
                box.put(None)
            if was_ready and not self.retired and self.on_death is not None:
                self.on_death(self)

    def _dispatch(self, event: wm.Event) -> None:
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
        else:
            if isinstance(event, wm.Forked):
                self.running[event.id] = event.pid
            elif isinstance(event, wm.Tainted):
                self.fork = wm.ForkVerdict(
                    safe=False, reason=event.reason, os_threads=None, native={}
                )
            elif isinstance(event, wm.Exited):
                self.running.pop(event.id, None)
            with self._mailbox_lock:
                box = self._mailboxes.get(event.id)
            if box is not None:
                box.put(event)

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

    # -- orders --------------------------------------------------------------------

    def request(self, order: wm.Order, fds: tuple[int, ...] = ()) -> Mailbox:
        """Send an order (its id made by ``next_order_id``); its events arrive in the mailbox."""
        box = Mailbox()
        with self._mailbox_lock:
            self._mailboxes[order.id] = box
        try:
            with self._send_lock:
                send_frame(self.sock, wm.encode(order), fds)
        except OSError:
            box.put(None)
        return box

    def ask(self, order: wm.Order) -> wm.Event | None:
        """Send an order and wait for its single answer (None: the process died)."""
        box = self.request(order)
        try:
            return box.get()
        finally:
            self.done(order.id)

    def done(self, order_id: str) -> None:
        with self._mailbox_lock:
            box = self._mailboxes.pop(order_id, None)
        if box is not None:
            box.close()

    def alive(self) -> bool:
        return self.proc.poll() is None and self.state in (WarmState.STARTING, WarmState.READY)

    def retire(self) -> None:
        """Ask the warm process to exit once its running workers finish."""
        self.retired = True
        try:
            with self._send_lock:
                send_frame(self.sock, wm.encode(wm.ExitOrder()))
        except OSError:
            pass
        threading.Thread(
            target=self.proc.wait, name=f"warm-reap-{self.generation}", daemon=True
        ).start()

    def kill(self) -> None:
        self.retired = True
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
