"""The supervisor's brain: warm-process lifecycle, freshness, request handlers.

Runs in the supervisor (threads allowed, no user code). Every run and collect
first makes the warm process fresh: pending watcher events plus a stat sweep
of every loaded file and its directory are applied under one lock, by
re-importing the reverse-dependency closure or by replacing the warm process.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from pytest_fastcollect import __version__, keys
from pytest_fastcollect.supervisor import changes, health
from pytest_fastcollect.supervisor import warm_messages as wm
from pytest_fastcollect.supervisor.graph import ImportGraph
from pytest_fastcollect.supervisor.lifecycle import Mailbox, WarmProcess, WarmState
from pytest_fastcollect.supervisor.run_workers import RunWorkers
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire.framing import FrameError, read_to_eof, recv_frame, send_frame

log = logging.getLogger("pytest_fastcollect.daemon")

# Re-import purged test modules once saves have been quiet this long.
REWARM_DELAY = 1.0
# File times come from a coarse kernel clock: a save made after an instant
# can carry a time up to one tick (1-10 ms) before it.
FILE_CLOCK_SLACK_NS = 20_000_000

Notify = Callable[[str], None]


@dataclass
class Limits:
    max_connections: int = 10
    max_request_bytes: int = 10 * 1024 * 1024
    request_timeout: float = 30.0
    debounce: float = 0.02
    learn_imports: bool = True
    max_rss_bytes: int = 4 * 1024**3


@dataclass
class DaemonConfig:
    root: str
    socket_path: str
    log_path: str
    cache_dir: str
    cwd: str
    env: dict[str, str]
    sys_path0: str | None
    warm_args: list[str]
    limits: Limits = field(default_factory=Limits)


class Refused(Exception):
    pass


class Supervisor:
    def __init__(self, config: DaemonConfig, log_fd: int) -> None:
        self.config = config
        self.root = os.path.realpath(config.root)
        self.log_fd = log_fd
        self.started = time.time()
        self.state = p.DaemonState.WARMING
        self.generation = 0
        self.current: WarmProcess | None = None
        self.warm_env = dict(config.env)
        self.stop_event = threading.Event()
        self.graph = ImportGraph()
        self._lock = threading.RLock()
        self._reload_lock = threading.Lock()
        self._metrics = Counter[str]()
        self._by_command = Counter[str]()
        self._pending: set[str] = set()
        self._pending_since: float | None = None
        self._debounce_timer: threading.Timer | None = None
        self._stats: dict[str, tuple[int, int, int, int] | None] = {}
        self._hashes: dict[str, str | None] = {}
        self._dirs: dict[str, tuple[int, frozenset[str]]] = {}
        self.reload_times: list[float] = []
        self.reload_count = 0
        self.modules_reloaded = 0
        self.replacements = Counter[str]()
        self.last_reload: p.LastReload | None = None
        self.events_seen = 0
        self.watcher_kind = "none"
        self.warmup = p.WarmupStats()
        self.progress_cb: Callable[[wm.Progress], None] = lambda _ev: None
        self.site_dirs: list[str] = []
        self._site_mtimes: dict[str, int] = {}
        self._rewarm_files: set[str] = set()
        self._rewarm_timer: threading.Timer | None = None
        self._spawned_ns = 0
        # Learned imports (warm/learn.py): wanted from runs, learned, never again.
        self._learn_wanted: set[str] = set()
        self._learned: set[str] = set()
        self._learn_blocked: dict[str, str] = {}
        self._learn_timer: threading.Timer | None = None
        self.run_workers = RunWorkers(config.cache_dir)  # runs' xdist processes

    # -- warm process ------------------------------------------------------------

    def _progress(self, event: wm.Progress) -> None:
        self.progress_cb(event)

    def spawn(self) -> WarmProcess:
        self.generation += 1
        self._spawned_ns = time.time_ns()
        return WarmProcess(
            generation=self.generation,
            root=self.root,
            cwd=self.config.cwd,
            env=self.warm_env,
            sys_path0=self.config.sys_path0,
            warm_args=self.config.warm_args,
            log_fd=self.log_fd,
            cache_dir=self.config.cache_dir,
            on_progress=self._progress,
            on_death=self._on_warm_death,
        )

    def start_warm(self) -> WarmProcess:
        wp = self.spawn()
        with self._lock:
            self.current = wp
        if wp.wait_ready():
            self._adopt(wp)
        else:
            self.state = p.DaemonState.FAILED
        return wp

    def _adopt(self, wp: WarmProcess) -> None:
        """Record what a freshly warmed process loaded, and start serving from it."""
        assert wp.ready is not None
        ready = wp.ready
        self.warmup = p.WarmupStats(
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
        with self._lock:
            pending = set(self._pending)
        self._record_files(wp, self._spawned_ns, force_changed=pending)
        with self._lock:
            old = self.current if self.current is not wp else None
            self.current = wp
            self.state = p.DaemonState.READY
            self._learn_counts()
            relearn = bool(self._learned or self._learn_wanted)
        if old is not None:
            old.retire()
        if relearn:
            self._schedule_learn(wp)

    def _record_files(
        self,
        wp: WarmProcess,
        since_ns: int,
        reread: set[str] | None = None,
        force_changed: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """Record stat and content hash of the files the warm process has loaded.

        ``reread`` None: a new warm process read every file since ``since_ns``.
        Else ``reread`` are the files a reload purged, and a file the warm
        process did not read again keeps its record (it still holds that
        content). A file modified after ``since_ns`` may have been read before
        or after that save: it gets an unknown hash and is queued, so the next
        run reloads it whatever the watcher reports and whenever it reports it.
        """
        with self._lock:
            if reread is None:
                stats: dict[str, tuple[int, int, int, int] | None] = {}
                hashes: dict[str, str | None] = {}
                dirs: dict[str, tuple[int, frozenset[str]]] = {}
            else:
                stats = {
                    f: s for f, s in self._stats.items() if f in wp.modules and f not in reread
                }
                hashes = {f: self._hashes.get(f) for f in stats}
                dirs = dict(self._dirs)
        suspects: set[str] = set()
        for path in wp.modules:
            if path in stats:
                continue
            # Hash, then stat: a save between the two shows in the stat.
            digest = changes.content_hash(path)
            st = _stat(path)
            stats[path] = st
            # A time in the future (archives, clock skew) says nothing: it would
            # make every reload queue another. ctime too: a save that put the
            # old mtime back (same size) also loaded the old pyc.
            now_ns = time.time_ns()
            recent = st is not None and any(
                since_ns - FILE_CLOCK_SLACK_NS <= t <= now_ns for t in (st[0], st[3])
            )
            if path in force_changed or recent:
                hashes[path] = None
                suspects.add(path)
            else:
                hashes[path] = digest
            d = os.path.dirname(path)
            if d not in dirs:
                dirs[d] = _dir_sig(d)
        for test_dir in {os.path.dirname(f) for f in wp.test_files}:
            dirs.setdefault(test_dir, _dir_sig(test_dir))
        site = {d: _dir_sig(d)[0] for d in self.site_dirs}
        with self._lock:
            self._stats, self._hashes, self._dirs, self._site_mtimes = stats, hashes, dirs, site
        if suspects - force_changed:
            self.note_changes(suspects - force_changed)

    def _on_warm_death(self, wp: WarmProcess) -> None:
        if self.stop_event.is_set():
            return
        log.warning("Warm process %d died; replacing it", wp.pid)
        threading.Thread(
            target=self._replace_locked,
            args=(changes.Replace.CRASH, "the warm process died", None),
            daemon=True,
        ).start()

    # -- freshness -----------------------------------------------------------------

    def note_changes(self, paths: set[str]) -> None:
        """Called by the watcher thread: remember, and apply after a quiet period."""
        relevant = {os.path.realpath(x) for x in paths if changes.is_relevant(x, self.root)}
        if not relevant:
            return
        with self._lock:
            self.events_seen += len(relevant)
            self._pending |= relevant
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            if self._debounce_timer is not None:
                self._debounce_timer.cancel()
            self._debounce_timer = threading.Timer(
                self.config.limits.debounce, self._apply_in_background
            )
            self._debounce_timer.daemon = True
            self._debounce_timer.start()

    def _apply_in_background(self) -> None:
        if self.stop_event.is_set():
            return
        with self._reload_lock:
            if self.state in (p.DaemonState.READY, p.DaemonState.FAILED):
                self._apply_pending(None)

    def _sweep(self) -> None:
        """Catch what the watcher missed: loaded files and their directories, by stat."""
        with self._lock:
            stats = dict(self._stats)
            dirs = dict(self._dirs)
        found: set[str] = set()
        for d, mtime in list(self._site_mtimes.items()):
            if _dir_sig(d)[0] != mtime:
                # pip adds or removes a *.dist-info directory here on every install.
                found.add(os.path.join(d, "(installed packages).dist-info"))
        for path, sig in stats.items():
            if _stat(path) != sig:
                found.add(path)
        for d, (mtime, names) in dirs.items():
            try:
                st = os.stat(d)
            except OSError:
                found.update(os.path.join(d, n) for n in names)
                continue
            if st.st_mtime_ns != mtime:
                now = _dir_sig(d)[1]
                found.update(os.path.join(d, n) for n in names.symmetric_difference(now))
                with self._lock:
                    self._dirs[d] = (st.st_mtime_ns, now)
        if found:
            with self._lock:
                self._pending |= found

    def _apply_pending(self, notify: Notify | None) -> None:
        """Apply pending changes. Caller holds the reload lock."""
        with self._lock:
            paths = set(self._pending)
            self._pending.clear()
            self._pending_since = None
        if not paths:
            return
        wp = self.current
        if wp is None or wp.state is not WarmState.READY:
            if self.state is p.DaemonState.FAILED:
                # The last warm-up failed (a broken conftest, say). Try again
                # once per change, which may be the fix, never once per run.
                rels = ", ".join(sorted(os.path.relpath(x, self.root) for x in paths))
                self._replace(
                    changes.Replace.RETRY,
                    f"retrying after a change ({rels})",
                    notify,
                    changed=paths,
                )
            return
        decision = changes.classify(paths, self.root, wp.modules, self._hashes)
        if decision.replace is not None:
            self._replace(decision.replace, decision.reason, notify, changed=paths)
            return
        if not decision.changed:
            # Unchanged content (a touch, a save without edits): refresh stats only.
            with self._lock:
                for path in paths:
                    if path in self._stats:
                        self._stats[path] = _stat(path)
            return
        names = {path: name for path, name in wp.modules.items()}
        by_name = {name: path for path, name in names.items()}
        closure = self.graph.reverse_closure(decision.changed, by_name)
        if any(n == "conftest" or n.endswith(".conftest") for n in closure):
            self._replace(
                changes.Replace.CONFTEST,
                "a conftest imports a changed module",
                notify,
                changed=paths,
            )
            return
        for path in decision.changed.values():
            changes.remove_stale_bytecode(path)
        rels = ", ".join(os.path.relpath(x, self.root) for x in decision.changed.values())
        if notify is not None:
            notify(f"reloading {len(closure)} module(s) (changed: {rels})")
        tests = [n for n in closure if by_name[n] in wp.test_files]
        # Project modules are imported again now; test modules by the next run
        # (through pytest, so assertions are rewritten) and by a later re-warm.
        reimport = [] if decision.broken else [n for n in closure if n not in tests]
        started = time.perf_counter()
        since_ns = time.time_ns()
        self.state = p.DaemonState.RELOADING
        try:
            event = wp.ask({"op": "reload", "modules": closure, "reimport": reimport})
        finally:
            if self.state is p.DaemonState.RELOADING:
                self.state = p.DaemonState.READY
        if not isinstance(event, wm.Reloaded):
            self._replace(changes.Replace.CRASH, "the warm process died while reloading", notify)
            return
        if not event.ok:
            kind = (
                changes.Replace.ALIVE
                if "still referenced" in event.reason
                else changes.Replace.RELOAD_ERROR
            )
            self._replace(kind, event.reason, notify)
            return
        wp.update_modules(event)
        self._record_files(wp, since_ns, reread={by_name[n] for n in closure})
        elapsed = (time.perf_counter() - started) * 1000
        with self._lock:
            self.generation += 1
            wp.generation = self.generation
            self.reload_count += 1
            self.modules_reloaded += len(closure)
            self.reload_times.append(elapsed)
            self.last_reload = p.LastReload(
                at=time.time(),
                files=[os.path.relpath(x, self.root) for x in decision.changed.values()],
                modules=len(closure),
                duration_ms=round(elapsed, 2),
                action="reimport" if not decision.broken else "purge (syntax error)",
            )
        log.info("Reloaded %d modules in %.1f ms (changed: %s)", len(closure), elapsed, rels)
        if tests and not decision.broken:
            self._schedule_rewarm(wp, [by_name[n] for n in tests])

    @staticmethod
    def _when_idle(
        previous: threading.Timer | None, action: Callable[[WarmProcess], None], wp: WarmProcess
    ) -> threading.Timer:
        """(Re)start the timer that runs ``action(wp)`` once things are quiet for REWARM_DELAY."""
        if previous is not None:
            previous.cancel()
        timer = threading.Timer(REWARM_DELAY, action, args=(wp,))
        timer.daemon = True
        timer.start()
        return timer

    def _schedule_rewarm(self, wp: WarmProcess, files: list[str]) -> None:
        with self._lock:
            self._rewarm_files |= set(files)
            self._rewarm_timer = self._when_idle(self._rewarm_timer, self._rewarm, wp)

    def _rewarm(self, wp: WarmProcess) -> None:
        """Import purged test modules again while nothing else is happening."""
        with self._reload_lock:
            with self._lock:
                files = sorted(f for f in self._rewarm_files if os.path.exists(f))
                self._rewarm_files.clear()
                busy = bool(self._pending) or self.current is not wp or self.stop_event.is_set()
            if busy or not files or wp.state is not WarmState.READY:
                return
            since_ns = time.time_ns()
            before = {f: _stat(f) for f in files}
            event = wp.ask({"op": "rewarm", "files": files})
            if not isinstance(event, wm.Reloaded):
                return
            wp.update_modules(event)
            with self._lock:
                for f in files:
                    if f in wp.modules:
                        # Stat from before the import: a save during the import still shows.
                        self._stats[f] = before[f]
                        self._hashes[f] = None
                        d = os.path.dirname(f)
                        self._dirs.setdefault(d, _dir_sig(d))
            # Project modules the test modules imported for the first time.
            self._record_files(wp, since_ns, reread=set())
            log.info("Re-warmed %d test modules in %.1f ms", event.reimported, event.duration_ms)

    # -- learned imports ------------------------------------------------------------

    def _learn_counts(self) -> None:
        """Copy the learned-import counts into the status (caller holds the lock)."""
        self.warmup.learned_imports = len(self._learned)
        self.warmup.unlearnable_imports = len(self._learn_blocked)
        self.warmup.pending_imports = len(self._learn_wanted)

    def _want_imports(self, wp: WarmProcess, names: list[str]) -> None:
        if not self.config.limits.learn_imports:
            return
        with self._lock:
            new = set(names) - self._learned - self._learn_blocked.keys()
            if not new:
                return
            self._learn_wanted |= new
            self._learn_counts()
        self._schedule_learn(wp)

    def _schedule_learn(self, wp: WarmProcess) -> None:
        with self._lock:
            self._learn_timer = self._when_idle(self._learn_timer, self._learn, wp)

    def _learn(self, wp: WarmProcess) -> None:
        """Import, in the warm process, the library modules runs imported (when idle)."""
        with self._reload_lock:
            with self._lock:
                current = self.current is wp and not self.stop_event.is_set()
                busy = bool(self._pending)
                modules = sorted((self._learn_wanted | self._learned) - self._learn_blocked.keys())
            if not current or not modules or wp.state is not WarmState.READY:
                return  # a replacement learns again once it is adopted
            if busy:
                self._schedule_learn(wp)  # after the pending changes
                return
            event = wp.ask({"op": "learn", "modules": modules})
            if not isinstance(event, wm.Learned):
                return
            wp.update_modules(event)
            with self._lock:
                self._learned |= set(event.imported)
                self._learn_blocked.update(event.rejected)
                self._learn_wanted = set(event.deferred)
                self._learn_counts()
            if event.imported:
                log.info(
                    "Learned %d library imports in %.1f ms", len(event.imported), event.duration_ms
                )
            for name, reason in sorted(event.rejected.items()):
                log.info("Not learning the import of %s: it %s", name, reason)
        if event.tainted:
            self._schedule_replace(changes.Replace.TAINTED, event.tainted)
        elif event.deferred:
            self._schedule_learn(wp)

    def _replace(
        self,
        kind: changes.Replace,
        reason: str,
        notify: Notify | None,
        changed: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """Replace the warm process: warm a new one, switch, retire the old. Caller holds the reload lock."""
        log.info("Replacing warm process: %s", reason)
        if notify is not None:
            notify(f"restarting the warm process ({reason})")
        with self._lock:
            self.replacements[kind.value] += 1
            self.state = p.DaemonState.REPLACING
            dropped = set(self._pending) | set(changed)
            self._pending.clear()
            self._pending_since = None
        # The new process imports these from scratch: a save that kept size and
        # mtime must not hand it the old pyc.
        for path in dropped:
            if path.endswith(".py"):
                changes.remove_stale_bytecode(path)
        started = time.perf_counter()
        with self._lock:
            known, known_dirs = list(self._stats), list(self._dirs)
        # Taken before the warm-up: a save during a failed warm-up still shows as a change.
        snapshot = ({f: _stat(f) for f in known}, {d: _dir_sig(d) for d in known_dirs})
        wp = self.spawn()
        if wp.wait_ready():
            self._adopt(wp)
            log.info(
                "Warm process %d ready (generation %d) in %.2fs",
                wp.pid,
                wp.generation,
                time.perf_counter() - started,
            )
        else:
            log.error("Warm process failed to start: %s", wp.error)
            with self._lock:
                old = self.current
                self.current = wp
                self.state = p.DaemonState.FAILED
                # What failed is on disk now: only a later change retries.
                self._stats.update(snapshot[0])
                self._dirs.update(snapshot[1])
            if old is not None and old is not wp:
                old.retire()

    def _replace_locked(self, kind: changes.Replace, reason: str, notify: Notify | None) -> None:
        with self._reload_lock:
            self._replace(kind, reason, notify)

    def fresh_warm_process(self, notify: Notify) -> WarmProcess:
        """The warm process to serve a run from, after applying every pending change."""
        with self._reload_lock:
            if self.state is p.DaemonState.WARMING:
                raise Refused("the daemon is still warming up")
            wp = self.current
            if wp is None or (
                wp.state is not WarmState.READY and self.state is not p.DaemonState.FAILED
            ):
                self._replace(changes.Replace.CRASH, "the warm process is gone", notify)
            self._sweep()
            with self._lock:
                pending = bool(self._pending)
            if pending:
                self._apply_pending(notify)
            wp = self.current
            if wp is None or wp.state is not WarmState.READY:
                error = wp.error if wp is not None else "no warm process"
                raise Refused(f"the warm process is not available ({error})")
            return wp

    # -- requests --------------------------------------------------------------------

    def count(self, command: str, ok: bool) -> None:
        with self._lock:
            self._metrics["total"] += 1
            self._metrics["ok" if ok else "failed"] += 1
            self._by_command[command] += 1

    def metrics(self) -> p.Metrics:
        with self._lock:
            total = self._metrics["total"]
            failed = self._metrics["failed"]
            return p.Metrics(
                total_requests=total,
                successful_requests=self._metrics["ok"],
                failed_requests=failed,
                error_rate=round(failed / total, 4) if total else 0.0,
                by_command=dict(self._by_command),
                runs=self._by_command["run"],
                collects=self._by_command["collect"],
            )

    def reload_stats(self) -> p.ReloadStats:
        with self._lock:
            times = list(self.reload_times)
            pending = len(self._pending)
        p95 = None
        if times:
            ordered = sorted(times)
            p95 = round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 2)
        return p.ReloadStats(
            reloads=self.reload_count,
            modules_reloaded=self.modules_reloaded,
            replacements=dict(self.replacements),
            last=self.last_reload,
            mean_ms=round(statistics.fmean(times), 2) if times else None,
            p95_ms=p95,
            pending_changes=pending,
            events_seen=self.events_seen,
            watcher=self.watcher_kind,
        )

    def processes(self) -> list[p.ProcessInfo]:
        out = []
        me = health.process_info("supervisor", os.getpid())
        if me is not None:
            out.append(me)
        wp = self.current
        if wp is not None and wp.alive():
            info = health.process_info("warm", wp.pid)
            if info is not None:
                out.append(info)
        return out

    def status(self) -> p.StatusResponse:
        wp = self.current
        return p.StatusResponse(
            pid=os.getpid(),
            state=self.state,
            uptime=round(time.time() - self.started, 3),
            root=self.root,
            socket_path=self.config.socket_path,
            log_path=self.config.log_path,
            versions=p.Versions(
                plugin=__version__,
                protocol=p.PROTOCOL_VERSION,
                python=".".join(map(str, os.sys.version_info[:3])),  # type: ignore[attr-defined]
                pytest=pytest.__version__,
            ),
            generation=self.generation,
            warm_pid=wp.pid if wp is not None and wp.alive() else None,
            warm_paths=list(wp.ready.warm_paths) if wp is not None and wp.ready is not None else [],
            cached_modules=wp.cached_modules if wp is not None else 0,
            project_modules=len(wp.modules) if wp is not None else 0,
            watched_paths=[self.root] if self.watcher_kind != "none" else [],
            inotify_watches=health.inotify_watches(os.getpid()),
            metrics=self.metrics(),
            warmup=self.warmup,
            reload=self.reload_stats(),
            processes=[*self.processes(), *self.run_workers.live(wp.running if wp else {})],
            limits={
                "max_connections": self.config.limits.max_connections,
                "max_request_bytes": self.config.limits.max_request_bytes,
                "request_timeout": self.config.limits.request_timeout,
            },
        )

    def health(self) -> p.HealthResponse:
        wp = self.current
        procs = self.processes()
        warm = next((x for x in procs if x.role == "warm"), None)
        metrics = self.metrics()
        rss = sum(x.rss_bytes for x in procs)
        with self._lock:
            pending_age = time.monotonic() - self._pending_since if self._pending_since else 0.0
        checks = {
            "socket_alive": p.HealthCheck(ok=True, value=True, detail=self.config.socket_path),
            "running": p.HealthCheck(
                ok=self.state is p.DaemonState.READY,
                value=self.state is p.DaemonState.READY,
                detail=f"state {self.state.value}"
                + (f": {wp.error}" if wp is not None and wp.error else ""),
            ),
            "warm_process_alive": p.HealthCheck(ok=warm is not None, value=wp.pid if wp else None),
            "warm_process_single_threaded": p.HealthCheck(
                ok=warm is None or warm.threads == 1,
                value=warm.threads if warm else None,
                detail="fork needs exactly one OS thread",
                severity="degraded",
            ),
            "request_error_rate": p.HealthCheck(
                ok=metrics.error_rate <= 0.1,
                value=metrics.error_rate,
                detail=f"{metrics.failed_requests} of {metrics.total_requests} requests failed",
                severity="degraded",
            ),
            "memory_rss_bytes": p.HealthCheck(
                ok=rss <= self.config.limits.max_rss_bytes,
                value=rss,
                detail=f"limit {self.config.limits.max_rss_bytes}",
                severity="degraded",
            ),
            "zombies": p.HealthCheck(
                ok=sum(x.zombies for x in procs) == 0,
                value=sum(x.zombies for x in procs),
                severity="degraded",
            ),
            "file_watcher": p.HealthCheck(
                ok=self.watcher_kind in ("inotify", "fsevents", "kqueue"),
                value=self.watcher_kind,
                detail="polling or no watcher: changes are found by the per-run stat sweep",
                severity="degraded",
            ),
            "pending_changes_age_s": p.HealthCheck(
                ok=pending_age < 5.0, value=round(pending_age, 3), severity="degraded"
            ),
            "import_failures": p.HealthCheck(
                ok=True,
                value=len(self.warmup.failures),
                detail="test modules that failed to import during warm-up",
                severity="degraded",
            ),
            "leaked_workers": self.run_workers.check(),
        }
        return p.HealthResponse(
            status=health.verdict(checks),
            pid=os.getpid(),
            generation=self.generation,
            uptime=round(time.time() - self.started, 3),
            checks=checks,
        )

    def inside_root(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def collect(self, req: p.CollectRequest) -> p.CollectResponse | p.ErrorResponse:
        root = req.root if os.path.isabs(req.root) else os.path.join(self.root, req.root)
        targets = (
            [root]
            if not req.filters.paths
            else [x if os.path.isabs(x) else os.path.join(self.root, x) for x in req.filters.paths]
        )
        for target in [root, *targets]:
            if not self.inside_root(target.split("::", 1)[0]):
                return p.ErrorResponse(
                    request_id=req.request_id,
                    code=p.ErrorCode.OUTSIDE_ROOT,
                    message=f"{target} resolves outside the project root {self.root}",
                )
        started = time.perf_counter()
        try:
            wp = self.fresh_warm_process(lambda _m: None)
        except Refused as exc:
            return p.ErrorResponse(
                request_id=req.request_id, code=p.ErrorCode.NOT_READY, message=str(exc)
            )
        args = ["--collect-only", "-q", "-o", f"cache_dir={self.config.cache_dir}"]
        if req.filters.keyword:
            args += ["-k", req.filters.keyword]
        if req.filters.markers:
            args += ["-m", req.filters.markers]
        if not req.filters.paths and os.path.realpath(root) == self.root:
            # The project root itself: collect as `pytest --collect-only` there
            # would, honouring testpaths.
            targets = []
        args += targets
        r, w = os.pipe()
        box = wp.request(
            req.request_id,
            {
                "op": "fork",
                "mode": "collect",
                "args": args,
                "cwd": self.root,
                "env": self.warm_env,
                "umask": _umask(),
            },
            (w,),
        )
        os.close(w)
        try:
            raw = read_to_eof(r)
            while True:
                event = box.get()
                if event is None or isinstance(event, (wm.Exited, wm.Tainted)):
                    break
        finally:
            os.close(r)
            wp.done(req.request_id)
        if isinstance(event, wm.Tainted):
            self._schedule_replace(
                changes.Replace.TAINTED, f"the warm process has {event.threads} threads"
            )
        if not raw:
            return p.ErrorResponse(
                request_id=req.request_id,
                code=p.ErrorCode.INTERNAL,
                message="the collect worker produced no result (it crashed); see the daemon log",
            )
        data = json.loads(raw)
        return p.CollectResponse(
            request_id=req.request_id,
            node_ids=data["node_ids"],
            count=len(data["node_ids"]),
            errors=[p.CollectError(**e) for e in data["errors"]],
            exit_code=data["exit_code"],
            collection_time=round(time.perf_counter() - started, 4),
            generation=wp.generation,
        )

    def _schedule_replace(self, kind: changes.Replace, reason: str) -> None:
        threading.Thread(
            target=self._replace_locked, args=(kind, reason, None), daemon=True
        ).start()

    def run(
        self, conn: socket.socket, req: p.RunRequest, fds: list[int]
    ) -> p.RunFinished | p.RunRefused:
        """Serve one run; RunStarted and Notice frames are sent from here."""

        def notify(message: str) -> None:
            send_frame(conn, p.dump(p.Notice(message=message)))

        try:
            try:
                wp = self.fresh_warm_process(notify)
            except Refused as exc:
                return p.RunRefused(request_id=req.request_id, reason=str(exc))
            reasons = keys.interpreter_differences(wp.key, req.python, req.sys_path)
            if reasons:
                return p.RunRefused(request_id=req.request_id, reason=reasons[0])
            env_reasons = keys.env_differences(wp.key.get("env", {}), req.env)
            if env_reasons:
                # Values read at import time changed (an export between runs):
                # warm a process with the run's environment.
                with self._reload_lock:
                    self.warm_env = dict(req.env)
                    self._replace(changes.Replace.ENV, env_reasons[0], notify)
                    wp = self.current  # type: ignore[assignment]
                if wp is None or wp.state is not WarmState.READY:
                    return p.RunRefused(
                        request_id=req.request_id, reason="the warm process failed to restart"
                    )
            status_r, status_w = os.pipe()
            box = wp.request(
                req.request_id,
                {
                    "op": "fork",
                    "mode": "run",
                    "args": req.args,
                    "cwd": req.cwd,
                    "env": req.env,
                    "umask": req.umask,
                    "argv0": req.argv0,
                },
                (*fds, status_w),
            )
            os.close(status_w)
        finally:
            for fd in fds:
                os.close(fd)
        try:
            return self._follow_run(conn, req, wp, box, status_r)
        finally:
            os.close(status_r)
            wp.done(req.request_id)
            self.run_workers.finished(req.request_id)

    def _follow_run(
        self, conn: socket.socket, req: p.RunRequest, wp: WarmProcess, box: Mailbox, status_r: int
    ) -> p.RunFinished | p.RunRefused:
        event = box.get()
        if isinstance(event, wm.Tainted):
            self._schedule_replace(
                changes.Replace.TAINTED, f"the warm process has {event.threads} OS threads"
            )
            return p.RunRefused(
                request_id=req.request_id, reason="the warm process started threads; replacing it"
            )
        if not isinstance(event, wm.Forked):
            return p.RunRefused(
                request_id=req.request_id, reason="the warm process died before the run started"
            )
        pid = event.pid
        # The worker may still refuse the run (its option check comes first,
        # before it writes anything); the client then runs cold.
        send_frame(
            conn, p.dump(p.RunStarted(request_id=req.request_id, pid=pid, generation=wp.generation))
        )
        client_gone = False
        while True:
            waiting: list[Mailbox | socket.socket] = [box] if client_gone else [box, conn]
            readable, _, _ = select.select(waiting, [], [])
            if box in readable:
                event = box.get()
                if isinstance(event, wm.Exited):
                    if event.imports:
                        self._want_imports(wp, event.imports)
                    if event.code == keys.REFUSED_EXIT:
                        reason = _read_all(status_r).decode(errors="replace").strip()
                        if reason:
                            return p.RunRefused(request_id=req.request_id, reason=reason)
                    if event.code < 0:
                        return p.RunFinished(
                            request_id=req.request_id,
                            exit_code=128 - event.code,
                            signal=-event.code,
                        )
                    return p.RunFinished(request_id=req.request_id, exit_code=event.code)
                if event is None:
                    _killpg(pid, signal.SIGKILL)
                    return p.RunFinished(
                        request_id=req.request_id,
                        exit_code=3,
                        message="the warm process died during the run",
                    )
            if not client_gone and conn in readable:
                try:
                    raw, _ = recv_frame(conn, 4096, timeout=self.config.limits.request_timeout)
                    sig = p.request_adapter().validate_json(raw)
                    if isinstance(sig, p.SignalRequest):
                        _killpg(pid, sig.signum)
                except (FrameError, OSError, ValueError):
                    # The client went away: its run goes with it.
                    client_gone = True
                    _killpg(pid, signal.SIGKILL)

    def reload_all(self, req: p.ReloadRequest) -> p.ReloadResponse | p.ErrorResponse:
        started = time.perf_counter()
        with self._reload_lock:
            self._replace(changes.Replace.MANUAL, "requested with --daemon-reload", None)
            failed = self.state is p.DaemonState.FAILED
        if failed:
            # A reload is asked for to recover; "replaced" would be a lie.
            wp = self.current
            error = (wp.error if wp is not None else None) or "see the daemon log"
            return p.ErrorResponse(
                request_id=req.request_id,
                code=p.ErrorCode.NOT_READY,
                message=f"the new warm process failed to start ({error})",
            )
        return p.ReloadResponse(
            request_id=req.request_id,
            generation=self.generation,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def shutdown(self) -> None:
        self.state = p.DaemonState.STOPPING
        self.stop_event.set()
        with self._lock:
            if self._debounce_timer is not None:
                self._debounce_timer.cancel()
        wp = self.current
        if wp is not None:
            for pid in list(wp.running.values()):
                _killpg(pid, signal.SIGKILL)
            wp.kill()


def _read_all(fd: int) -> bytes:
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


def _stat(path: str) -> tuple[int, int, int, int] | None:
    # ctime too: a same-size rewrite whose mtime was put back still changes it.
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _dir_sig(d: str) -> tuple[int, frozenset[str]]:
    try:
        st = os.stat(d)
        names = frozenset(n for n in os.listdir(d) if n.endswith(".py"))
    except OSError:
        return (0, frozenset())
    return (st.st_mtime_ns, names)
