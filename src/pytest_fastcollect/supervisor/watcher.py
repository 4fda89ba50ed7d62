"""File events from watchdog, filtered, handed to the supervisor in batches.

Runs in the supervisor. The root is watched non-recursively and each
top-level directory that is not a cache, VCS or virtualenv directory
recursively, so a project's .venv costs no inotify watches. Directories
outside the root that hold loaded project code (``outside.py``) are added
as the warm process reports them; one that cannot be watched is left to the
stat sweep, with the reason kept for the status. If the native observer
cannot start (inotify limits), polling takes over and health says
degraded. Debouncing happens in the supervisor, which owns the pending set.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from pytest_fastcollect.supervisor import outside
from pytest_fastcollect.supervisor.changes import IGNORED_DIRS

log = logging.getLogger("pytest_fastcollect.daemon.watcher")

# Reads and close-without-write are noise: one plain pytest run makes dozens.
WANTED = frozenset(
    {
        EVENT_TYPE_CREATED,
        EVENT_TYPE_DELETED,
        EVENT_TYPE_MODIFIED,
        EVENT_TYPE_MOVED,
        EVENT_TYPE_CLOSED,
    }
)


def _fs(path: bytes | str) -> str:
    return os.fsdecode(path)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in WANTED:
            return
        if event.is_directory and event.event_type == EVENT_TYPE_MODIFIED:
            return
        paths = {_fs(event.src_path)}
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.add(_fs(dest))
        if event.is_directory:
            self.watcher.directory_event(paths, event.event_type)
        self.watcher.sink(paths)


class Watcher:
    def __init__(
        self, root: str, sink: Callable[[set[str]], None], force_polling: bool = False
    ) -> None:
        self.root = root
        self.sink = sink
        self.kind = "none"
        self._handler = _Handler(self)
        self._scheduled: set[str] = set()
        self._outside: dict[str, bool] = {}  # outside directory -> recursive, watched
        self._unwatched: dict[str, str] = {}  # outside directory -> why it is not watched
        self._outside_lock = threading.Lock()  # status reads what a reload's record writes
        self.observer: BaseObserver = PollingObserver() if force_polling else Observer()
        self._force_polling = force_polling

    def start(self) -> str:
        try:
            self._schedule_all()
            self.observer.start()
            self.kind = "polling" if self._force_polling else _native_name(self.observer)
        except OSError as exc:
            log.warning("Native file watcher unavailable (%s); falling back to polling", exc)
            try:
                self.observer.stop()
            except Exception:
                pass
            self.observer = PollingObserver()
            self._scheduled.clear()
            self._schedule_all()
            self.observer.start()
            self.kind = "polling"
        return self.kind

    def _schedule_all(self) -> None:
        self.observer.schedule(self._handler, self.root, recursive=False)
        for entry in os.scandir(self.root):
            if entry.is_dir(follow_symlinks=False):
                self._schedule_dir(entry.path)

    def _schedule_dir(self, path: str) -> None:
        name = os.path.basename(path)
        if (
            name in IGNORED_DIRS
            or name.endswith((".egg-info", ".dist-info"))
            or path in self._scheduled
        ):
            return
        self._scheduled.add(path)
        self.observer.schedule(self._handler, path, recursive=True)

    def directory_event(self, paths: set[str], kind: str) -> None:
        for path in paths:
            if os.path.dirname(path) == self.root and os.path.isdir(path):
                try:
                    self._schedule_dir(path)
                except OSError as exc:
                    log.warning("Cannot watch %s: %s", path, exc)
            elif os.path.isdir(path):
                # A directory moved or created inside the tree: its files are new to us.
                for dirpath, _dirs, files in os.walk(path):
                    self.sink({os.path.join(dirpath, f) for f in files})
            if kind in (EVENT_TYPE_DELETED, EVENT_TYPE_MOVED):
                self.sink({os.path.join(path, "__init__.py")})

    def watch_outside(
        self, dirs: outside.WatchDirs, mounts: list[tuple[str, str]] | None = None
    ) -> dict[str, str]:
        """Watch these directories outside the root too. Returns every directory
        asked for so far that is not watched (only stat-swept), with the reason."""
        with self._outside_lock:
            self._add_outside(dirs, mounts)
            return dict(self._unwatched)

    def _add_outside(self, dirs: outside.WatchDirs, mounts: list[tuple[str, str]] | None) -> None:
        for directory, recursive in sorted(dirs.items()):
            current = self._outside.get(directory)
            if (current is not None and (current or not recursive)) or directory in self._unwatched:
                continue
            if mounts is None:
                mounts = outside.system_mounts()
            reason = outside.why_not_watched(directory, recursive, mounts)
            if reason is None:
                try:
                    self.observer.schedule(self._handler, directory, recursive=recursive)
                except OSError as exc:
                    reason = f"cannot be watched ({exc.strerror or exc}): only the per-run stat sweep sees changes"
            if reason is not None:
                self._unwatched[directory] = reason
                log.warning("Not watching %s outside the rootdir: %s", directory, reason)
                continue
            self._outside[directory] = recursive
            log.info(
                "Watching %s outside the rootdir%s", directory, "" if recursive else " (its files)"
            )

    def outside_state(self) -> tuple[list[str], dict[str, str]]:
        """(watched, unwatched with why) directories outside the root."""
        with self._outside_lock:
            return sorted(self._outside), dict(self._unwatched)

    def stop(self) -> None:
        try:
            self.observer.stop()
            self.observer.join(2)
        except Exception:
            pass


def _native_name(observer: BaseObserver) -> str:
    name = type(observer).__name__.lower()
    for kind in ("inotify", "fsevents", "kqueue", "polling"):
        if kind in name:
            return kind
    return name
