"""The supervisor's core: its rooms, wired together, and one handler per command.

Runs in the supervisor (threads allowed, never imports user code). The
rooms each own their data and lock: ``Freshness`` (what is on disk and what
changed), ``WarmSlot`` (the warm process and the reload lock), ``IdleWork``
(re-warm, learned imports), ``Runs`` (runs and collects), ``Stats``
(counters), ``WatchRoom`` (watch mode's change log and selection). The
server calls ``handle_<command>`` for each request; adding a command means
adding its handler here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

import pytest

from pytest_fastcollect import __version__
from pytest_fastcollect.settings import DaemonSettings
from pytest_fastcollect.supervisor import changes, health
from pytest_fastcollect.supervisor.collecting import Collects
from pytest_fastcollect.supervisor.freshness import Freshness
from pytest_fastcollect.supervisor.idle import IdleWork
from pytest_fastcollect.supervisor.layers import Layers, LayerSource
from pytest_fastcollect.supervisor.lifecycle import WarmHandle, WarmSpec
from pytest_fastcollect.supervisor.runs import Runs
from pytest_fastcollect.supervisor.slot import WarmSlot
from pytest_fastcollect.supervisor.stats import Stats
from pytest_fastcollect.supervisor.watching import ChangeLog, WatchRoom
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire import warm as wm

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pytest_fastcollect.supervisor.watcher import Watcher

log = logging.getLogger("pytest_fastcollect.daemon")

# --daemon-stop lets runs in progress finish for this long, then stops them.
STOP_GRACE = 5.0
# A replaced warm process that still does not answer is killed after this long:
# runs in progress on it get their result if it answers again before.
UNRESPONSIVE_KILL_AFTER = 30.0


class Incoming:
    """The connection a request came on, and the descriptors passed with it.

    A handler that keeps the descriptors takes them; the server closes the rest.
    """

    def __init__(self, conn: socket.socket, fds: list[int]) -> None:
        self.conn = conn
        self._fds = fds

    def take_fds(self) -> list[int]:
        fds, self._fds = self._fds, []
        return fds

    def close_fds(self) -> None:
        for fd in self.take_fds():
            try:
                os.close(fd)
            except OSError:
                pass


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    root: str
    socket_path: str
    log_path: str
    cache_dir: str
    cwd: str
    env: dict[str, str]
    sys_path0: str | None
    warm_args: list[str]
    settings: DaemonSettings = dataclasses.field(default_factory=DaemonSettings)
    site_dirs: tuple[str, ...] = ()
    thresholds: health.Thresholds = dataclasses.field(default_factory=health.Thresholds)


def process_layers(
    config: DaemonConfig, log_fd: int, on_progress: Callable[[wm.Progress], None]
) -> Callable[[Callable[[], None]], LayerSource]:
    """Real base processes and project layers (unit tests pass fake layers instead)."""

    def spec(env: dict[str, str]) -> WarmSpec:
        return WarmSpec(
            root=config.root,
            cwd=config.cwd,
            env=env,
            sys_path0=config.sys_path0,
            warm_args=config.warm_args,
            log_fd=log_fd,
            cache_dir=config.cache_dir,
        )

    def make(on_base_death: Callable[[], None]) -> LayerSource:
        return Layers(spec, on_progress, on_base_death)

    return make


class Supervisor:
    def __init__(
        self, config: DaemonConfig, layers: Callable[[Callable[[], None]], LayerSource]
    ) -> None:
        self.config = config
        self.root = os.path.realpath(config.root)
        self.started = time.time()
        self.stop_event = threading.Event()
        # A second stop (or SIGTERM) while runs drain: end them now.
        self.force_stop = threading.Event()
        self.watcher_kind = "none"
        self._watcher: Watcher | None = None
        # The server's figures, once a server serves this supervisor.
        self.connection_stats: Callable[[], p.ConnectionStats] = p.ConnectionStats
        self.stats = Stats()
        self.records = Freshness(
            self.root,
            config.settings.debounce,
            on_quiet=self._changes_quiet,
            site_dirs=config.site_dirs,
            on_outside=self._watch_outside,
        )

        self.layers = layers(self._base_died)
        self.slot = WarmSlot(self.root, self.layers, config.env, self.records, self.stats)
        self.idle = IdleWork(self.slot, config.settings.learn_imports)
        # Hears of every warm process that starts serving (the record names it).
        self.on_adopted: Callable[[int | None], None] | None = None
        self.slot.listener = _Adoptions(self.idle, self._adopted)
        # Warm processes that stopped answering, and since when (``check_warm``).
        self._unresponsive: dict[int, tuple[WarmHandle, float]] = {}
        self._log_lowered = False
        self.runs = Runs(
            self.slot,
            self.idle,
            self.root,
            config.cache_dir,
            config.settings.request_timeout,
        )
        self.collecting = Collects(self.slot, self.root, config.cache_dir)
        changes = ChangeLog(self.root, config.settings.debounce, self.records.relevant)
        self.watching = WatchRoom(self.slot, self.records, changes, self.collecting.collect)

    def start(self) -> WarmHandle:
        return self.slot.start()

    def _adopted(self, wp: WarmHandle) -> None:
        self._follow_log_level(wp)
        if self.on_adopted is not None:
            self.on_adopted(wp.pid)

    def _changes_quiet(self) -> None:
        self.slot.apply_when_quiet()

    def _follow_log_level(self, wp: WarmHandle) -> None:
        """A conftest that lowered the level of the daemon's loggers (as older
        guides advise) gets that level here, while its warm process serves."""
        configured = logging.getLevelName(self.config.settings.log_level)
        requested = wp.ready.log_level if wp.ready is not None else None
        logger = logging.getLogger("pytest_fastcollect")
        if requested is None or requested >= configured:
            if self._log_lowered:
                self._log_lowered = False
                logger.setLevel(configured)
                log.info(
                    "Log level back to %s (daemon_log_level)", logging.getLevelName(configured)
                )
            return
        if logger.level != requested:
            logger.setLevel(requested)
            log.info(
                "Log level %s, set by a conftest (daemon_log_level is %s)",
                logging.getLevelName(requested),
                logging.getLevelName(configured),
            )
        self._log_lowered = True

    def _base_died(self) -> None:
        if not self.stop_event.is_set():
            self.slot.replace_soon(changes.Replace.CRASH, "the base process died")

    def start_watching(self) -> None:
        """Watch the project for saves (else the per-run stat sweep finds them alone)."""
        from pytest_fastcollect.supervisor.watcher import Watcher

        watcher = Watcher(self.root, self.note_changes, self.config.settings.polling)
        try:
            self.watcher_kind = watcher.start()
        except Exception as exc:
            log.warning("No file watcher (%s); relying on the per-run stat sweep", exc)
            return
        self._watcher = watcher

    def _watch_outside(self, dirs: dict[str, bool]) -> None:
        """Loaded project code outside the rootdir (``outside.py``): watch it too."""
        if self._watcher is not None:
            self._watcher.watch_outside(dirs)

    def watched(self) -> tuple[list[str], dict[str, str]]:
        """(watched paths, paths only the stat sweep covers, with why)."""
        if self._watcher is None:
            reason = "no file watcher: only the per-run stat sweep sees changes"
            return [], {d: reason for d in self.records.outside_dirs()}
        watched, unwatched = self._watcher.outside_state()
        return [self.root, *watched], unwatched

    def check_warm(self) -> None:
        """Self-check: replace a warm process that stopped answering, and kill it once it
        has had ``UNRESPONSIVE_KILL_AFTER`` to answer again for the runs it still holds."""
        wp = self.slot.current
        reason = wp.check_responsive() if wp is not None else None
        if wp is not None and reason is not None and id(wp) not in self._unresponsive:
            self._unresponsive[id(wp)] = (wp, time.monotonic())
            threading.Thread(
                target=self._replace_unresponsive, args=(wp, reason), name="replace", daemon=True
            ).start()
        base = self.layers.base_for_runs()
        if base is not None and base.check_responsive() is not None:
            # Killed outright: its death replaces it and its layers (``layers.py``).
            log.warning("Killing the base process %d: it does not answer", base.pid)
            try:
                os.kill(base.pid, signal.SIGKILL)
            except OSError:
                pass
        for key, (old, since) in list(self._unresponsive.items()):
            if not old.alive():
                del self._unresponsive[key]
            elif (
                old is not self.slot.current and time.monotonic() - since > UNRESPONSIVE_KILL_AFTER
            ):
                log.warning("Killing warm process %d: it still does not answer", old.pid)
                old.kill()
                del self._unresponsive[key]

    def _replace_unresponsive(self, wp: WarmHandle, reason: str) -> None:
        with self.slot.hold() as held:
            if held.current is wp and not self.slot.stopping.is_set():
                held.replace(changes.Replace.UNRESPONSIVE, f"it does not answer: {reason}", None)

    def note_changes(self, paths: set[str]) -> None:
        """The watcher's sink (its thread)."""
        self.records.note(paths)
        self.watching.log.note(paths)

    def count(self, command: str, ok: bool) -> None:
        self.stats.count_request(command, ok)

    # -- handlers, one per protocol command -----------------------------------------------

    def handle_status(self, req: p.StatusRequest, _in: Incoming) -> p.StatusResponse:
        return self.status(full=req.full).model_copy(update={"request_id": req.request_id})

    def handle_health(self, req: p.HealthRequest, _in: Incoming) -> p.HealthResponse:
        return self.health().model_copy(update={"request_id": req.request_id})

    def handle_collect(
        self, req: p.CollectRequest, _in: Incoming
    ) -> p.CollectResponse | p.ErrorResponse:
        return self.collecting.collect(req)

    def handle_run(
        self, req: p.RunRequest, incoming: Incoming
    ) -> p.RunFinished | p.RunRefused | p.ErrorResponse:
        fds = incoming.take_fds()
        if len(fds) != req.fd_count:
            for fd in fds:
                os.close(fd)
            return p.ErrorResponse(
                request_id=req.request_id,
                code=p.ErrorCode.BAD_REQUEST,
                message=f"expected {req.fd_count} file descriptors, got {len(fds)}",
            )
        return self.runs.run(incoming.conn, req, fds)

    def handle_signal(self, req: p.SignalRequest, _in: Incoming) -> p.ErrorResponse:
        return p.ErrorResponse(
            request_id=req.request_id,
            code=p.ErrorCode.BAD_REQUEST,
            message="signal is only valid during a run",
        )

    def handle_reload(
        self, req: p.ReloadRequest, _in: Incoming
    ) -> p.ReloadResponse | p.ErrorResponse:
        started = time.perf_counter()
        with self.slot.hold() as held:
            held.replace(changes.Replace.MANUAL, "requested with --daemon-reload", None)
        if self.slot.state is p.DaemonState.FAILED:
            # A reload is asked for to recover; "replaced" would be a lie.
            error = self.slot.failure or "see the daemon log"
            return p.ErrorResponse(
                request_id=req.request_id,
                code=p.ErrorCode.NOT_READY,
                message=f"the new warm process failed to start ({error})",
            )
        return p.ReloadResponse(
            request_id=req.request_id,
            generation=self.slot.generation,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def handle_watch(self, req: p.WatchRequest, incoming: Incoming) -> p.WatchResponse:
        return self.watching.watch(req, incoming.conn)

    def handle_affected(
        self, req: p.AffectedRequest, _in: Incoming
    ) -> p.AffectedResponse | p.ErrorResponse:
        return self.watching.affected(req)

    def handle_stop(self, req: p.StopRequest, _in: Incoming) -> p.StopResponse:
        # The server sets stop_event once this answer is sent.
        if self.slot.stopping.is_set():
            self.force_stop.set()
        else:
            # No new run from now on; those in progress may finish (``stop_runs``).
            self.slot.stopping.set()
        return p.StopResponse(
            request_id=req.request_id,
            pid=os.getpid(),
            runs=0 if self.force_stop.is_set() else self.runs.active(),
            grace=STOP_GRACE,
        )

    def stop_runs(self) -> None:
        """Once stopping: runs in progress finish within ``STOP_GRACE``, or are stopped."""
        self.slot.stopping.set()
        self.runs.drain(STOP_GRACE, self.force_stop)

    # -- status and health ----------------------------------------------------------------

    def processes(self, full: bool = True) -> list[p.ProcessInfo]:
        """``full``: with PSS (slow for large processes; status asks for it on request)."""
        tree = health.process_tree()
        out = []
        me = health.process_info("supervisor", os.getpid(), tree=tree, full=full)
        if me is not None:
            out.append(me)
        base = self.layers.base_for_runs()
        if base is not None:
            info = health.process_info(
                "base", base.pid, exclude=self._layer_pids(), tree=tree, full=full
            )
            if info is not None:
                out.append(info)
        wp = self.slot.current
        if wp is not None and wp.alive():
            info = health.process_info("warm", wp.pid, tree=tree, full=full)
            if info is not None:
                out.append(info)
        running = dict(base.running) if base is not None else {}
        if wp is not None:
            running.update(wp.running)
        out.extend(self.runs.workers.live(running, tree=tree, full=full))
        return out

    def _layer_pids(self) -> set[int]:
        wp = self.slot.current
        return {wp.pid} if wp is not None else set()

    def reload_stats(self) -> p.ReloadStats:
        return self.stats.reloads(
            self.records.pending_count(), self.records.events_seen, self.watcher_kind
        )

    def warmup(self) -> p.WarmupStats:
        learned, refused, pending = self.idle.counts()
        return self.slot.warmup.model_copy(
            update={
                "failures": self.import_failures(),
                "learned_imports": learned,
                "unlearnable_imports": refused,
                "pending_imports": pending,
            }
        )

    def import_failures(self) -> list[p.ImportFailure]:
        """The warm-up's import failures whose file has not changed since: an
        edited file is imported afresh by the next run, which shows its error."""
        since = self.slot.warmup_ns
        return [f for f in self.slot.warmup.failures if not _changed_since(f.path, since)]

    def status(self, full: bool = True) -> p.StatusResponse:
        wp = self.slot.current
        limits = self.config.settings
        watched, unwatched = self.watched()
        return p.StatusResponse(
            pid=os.getpid(),
            state=self.slot.state,
            uptime=round(time.time() - self.started, 3),
            root=self.root,
            socket_path=self.config.socket_path,
            log_path=self.config.log_path,
            versions=p.Versions(
                plugin=__version__,
                protocol=p.PROTOCOL_VERSION,
                python=".".join(map(str, sys.version_info[:3])),
                pytest=pytest.__version__,
            ),
            generation=self.slot.generation,
            warm_pid=wp.pid if wp is not None and wp.alive() else None,
            warm_paths=list(wp.ready.warm_paths) if wp is not None and wp.ready else [],
            cached_modules=wp.cached_modules if wp is not None else 0,
            project_modules=len(wp.modules) if wp is not None else 0,
            watched_paths=watched,
            unwatched_paths=unwatched,
            inotify_watches=health.inotify_watches(os.getpid()),
            metrics=self.stats.metrics(),
            warmup=self.warmup(),
            reload=self.reload_stats(),
            connections=self.connection_stats(),
            processes=self.processes(full),
            limits={
                "max_connections": limits.max_connections,
                "max_request_bytes": limits.max_request_bytes,
                "request_timeout": limits.request_timeout,
            },
        )

    def health(self) -> p.HealthResponse:
        wp = self.slot.current
        fork = wp.fork if wp is not None else None
        state = self.slot.state
        failure = self.slot.failure
        detail = f"state {state.value}" + (f": {failure}" if failure else "")
        facts = health.Facts(
            state=state,
            state_detail=detail,
            socket_path=self.config.socket_path,
            warm_pid=wp.pid if wp is not None else None,
            fork_safe=fork.safe if fork is not None else None,
            fork_detail=health.fork_detail(fork),
            processes=self.processes(full=False),
            metrics=self.stats.metrics(),
            pending_age=self.records.pending_age(),
            unresponsive=wp.unresponsive if wp is not None else None,
            watcher=self.watcher_kind,
            import_failures=len(self.import_failures()),
        )
        checks = health.checks(facts, self.config.thresholds)
        checks["leaked_workers"] = self.runs.workers.check()
        return p.HealthResponse(
            status=health.verdict(checks),
            pid=os.getpid(),
            generation=self.slot.generation,
            uptime=round(time.time() - self.started, 3),
            checks=checks,
            reload=self.reload_stats(),
        )

    # -- shutdown -------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.slot.stopping.set()
        self.stop_event.set()
        if self._watcher is not None:
            self._watcher.stop()
        self.records.stop()
        self.idle.stop()
        self.runs.kill_all()
        wp = self.slot.current
        if wp is not None:
            wp.kill()
        self.layers.kill()


class _Adoptions:
    """The slot's one listener: idle work first, then whoever wants to know."""

    def __init__(self, idle: IdleWork, adopted: Callable[[WarmHandle], None]) -> None:
        self.idle = idle
        self._adopted = adopted

    def adopted(self, wp: WarmHandle) -> None:
        self.idle.adopted(wp)
        self._adopted(wp)

    def reloaded(self, wp: WarmHandle, purged_tests: list[str]) -> None:
        self.idle.reloaded(wp, purged_tests)


def _changed_since(path: str, since_ns: int) -> bool:
    try:
        return os.stat(path).st_mtime_ns >= since_ns
    except OSError:
        return True  # deleted: nothing left to fail
