"""What the warm process has loaded, as it was on disk, and what changed since.

Runs in the supervisor; owns its data and its own lock (held only for
dictionary updates, never across a file read of more than one stat). Three
jobs:

- records: stat signature and content hash of every file the warm process
  loaded (project code under the rootdir and outside it: ``outside.py``),
  and the ``*.py`` names of their directories;
- pending changes: paths reported by the watcher or found by the sweep,
  with a debounce that calls ``on_quiet`` once saves have stopped;
- the sweep: a stat of every recorded file and directory before each run,
  which catches what the watcher missed (network mounts, inotify overflow).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from pytest_fastcollect.supervisor import changes, effects, outside

log = logging.getLogger("pytest_fastcollect.daemon.freshness")

# File times come from a coarse kernel clock: a save made after an instant
# can carry a time up to one tick (1-10 ms) before it.
FILE_CLOCK_SLACK_NS = 20_000_000
# A pip install adds or removes a *.dist-info directory in site-packages.
PACKAGES_CHANGED = "(installed packages).dist-info"

Signature = tuple[int, int, int, int]  # mtime_ns, size, inode, ctime_ns
DirSignature = tuple[int, frozenset[str]]  # mtime_ns, names of *.py files


def stat_signature(path: str) -> Signature | None:
    # ctime too: a same-size rewrite whose mtime was put back still changes it.
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def dir_signature(d: str) -> DirSignature:
    try:
        st = os.stat(d)
        names = frozenset(n for n in os.listdir(d) if n.endswith(".py"))
    except OSError:
        return (0, frozenset())
    return (st.st_mtime_ns, names)


class Snapshot:
    """Stats of the recorded files and directories at one instant."""

    def __init__(self, stats: dict[str, Signature | None], dirs: dict[str, DirSignature]) -> None:
        self.stats = stats
        self.dirs = dirs


class Freshness:
    def __init__(
        self,
        root: str,
        debounce: float,
        on_quiet: Callable[[], None],
        site_dirs: Iterable[str] = (),
        on_outside: Callable[[outside.WatchDirs], None] | None = None,
    ) -> None:
        self.root = root
        self.debounce = debounce
        self._on_quiet = on_quiet
        self.site_dirs = list(site_dirs)
        self._lock = threading.Lock()
        self._stats: dict[str, Signature | None] = {}
        self._hashes: dict[str, str | None] = {}
        self._profiles: dict[str, effects.Profile | None] = {}  # conftests only
        self._dirs: dict[str, DirSignature] = {}
        self._site_mtimes: dict[str, int] = {}
        self._pending: set[str] = set()
        self._pending_since: float | None = None
        # Directories outside the rootdir holding loaded project code: their
        # events are relevant too; ``on_outside`` hears when the set changes.
        self._outside: outside.WatchDirs = {}
        self._on_outside = on_outside
        self._timer: threading.Timer | None = None
        self.events_seen = 0
        # Moves with every change noted (watcher or sweep), applied or not: what
        # a cached collect result was made under (supervisor/collects.py).
        self.stamp = 0

    # -- pending changes ---------------------------------------------------------------

    def note(self, paths: Iterable[str]) -> None:
        """Remember changed paths (watcher thread, sweep, records); debounce, then on_quiet."""
        relevant = {os.path.realpath(x) for x in paths if self._relevant(x)}
        if not relevant:
            return
        log.debug("Changes noted: %s", ", ".join(sorted(relevant)))
        with self._lock:
            self.events_seen += len(relevant)
            self._add_pending(relevant)
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce, self._on_quiet)
            self._timer.daemon = True
            self._timer.start()

    def relevant(self, path: str) -> bool:
        """A path under the rootdir, or in a directory of loaded code outside it."""
        return self._relevant(path)

    def _relevant(self, path: str) -> bool:
        if changes.is_relevant(path, self.root):
            return True
        with self._lock:
            dirs = list(self._outside.items())
        for directory, recursive in dirs:
            inside = (
                path.startswith(directory + os.sep)
                if recursive
                else os.path.dirname(path) == directory
            )
            if inside and changes.is_relevant(path, directory):
                return True
        return False

    def outside_dirs(self) -> outside.WatchDirs:
        with self._lock:
            return dict(self._outside)

    def _add_pending(self, paths: set[str]) -> None:
        if paths:
            self.stamp += 1
        self._pending |= paths
        if self._pending and self._pending_since is None:
            self._pending_since = time.monotonic()

    def take_pending(self) -> set[str]:
        with self._lock:
            paths, self._pending = self._pending, set()
            self._pending_since = None
        return paths

    def pending(self) -> set[str]:
        with self._lock:
            return set(self._pending)

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def pending_age(self) -> float:
        with self._lock:
            since = self._pending_since
        return time.monotonic() - since if since is not None else 0.0

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    # -- the sweep ---------------------------------------------------------------------

    def sweep(self) -> None:
        """Catch what the watcher missed: loaded files and their directories, by stat."""
        with self._lock:
            stats = dict(self._stats)
            dirs = dict(self._dirs)
            sites = dict(self._site_mtimes)
        found: set[str] = set()
        for d, mtime in sites.items():
            if dir_signature(d)[0] != mtime:
                found.add(os.path.join(d, PACKAGES_CHANGED))
        found.update(path for path, sig in stats.items() if stat_signature(path) != sig)
        new_dirs: dict[str, DirSignature] = {}
        for d, (mtime, names) in dirs.items():
            try:
                st = os.stat(d)
            except OSError:
                found.update(os.path.join(d, n) for n in names)
                continue
            if st.st_mtime_ns != mtime:
                now = dir_signature(d)
                found.update(os.path.join(d, n) for n in names.symmetric_difference(now[1]))
                new_dirs[d] = (st.st_mtime_ns, now[1])
        with self._lock:
            self._dirs.update(new_dirs)
            if found:
                log.debug("Sweep found: %s", ", ".join(sorted(found)))
                self._add_pending(found)

    # -- records -----------------------------------------------------------------------

    def hashes(self) -> dict[str, str | None]:
        with self._lock:
            return dict(self._hashes)

    def conftest_profile(self, path: str) -> effects.Profile | None:
        """The conftest as the warm process imported it (None: not known for sure)."""
        with self._lock:
            return self._profiles.get(path)

    def known_files(self) -> list[str]:
        with self._lock:
            return list(self._stats)

    def snapshot(self) -> Snapshot:
        """Stats taken now: after a failed warm-up, what failed stays recorded as seen."""
        with self._lock:
            files, dirs = list(self._stats), list(self._dirs)
        return Snapshot({f: stat_signature(f) for f in files}, {d: dir_signature(d) for d in dirs})

    def restore(self, snap: Snapshot) -> None:
        with self._lock:
            self._stats.update(snap.stats)
            self._dirs.update(snap.dirs)

    def refresh(self, paths: Iterable[str]) -> None:
        """Unchanged content (a touch, a save without edits): new stats, same hash."""
        with self._lock:
            for path in paths:
                if path in self._stats:
                    self._stats[path] = stat_signature(path)

    def record(
        self,
        loaded: Iterable[str],
        test_files: Iterable[str],
        since_ns: int,
        reread: set[str] | None = None,
        force_changed: frozenset[str] | set[str] = frozenset(),
        reprofile: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """Record stat and content hash of the files the warm process has loaded.

        Conftest profiles (``effects.py``) describe the version the warm
        process executed: taken for every conftest of a new warm process, and
        for ``reprofile`` (conftests a re-warm imported again); a file re-read
        for another reason (an accepted edit the warm process did not run)
        keeps the profile it had.

        ``reread`` None: a new warm process read every file since ``since_ns``.
        Else ``reread`` are the files a reload purged, and a file the warm
        process did not read again keeps its record (it still holds that
        content). A file modified after ``since_ns`` may have been read before
        or after that save: it gets an unknown hash and is noted as changed,
        so the next run reloads it whatever the watcher reports, and whenever.
        """
        loaded = set(loaded)
        with self._lock:
            if reread is None:
                stats: dict[str, Signature | None] = {}
                hashes: dict[str, str | None] = {}
                dirs: dict[str, DirSignature] = {}
            else:
                stats = {f: s for f, s in self._stats.items() if f in loaded and f not in reread}
                hashes = {f: self._hashes.get(f) for f in stats}
                dirs = dict(self._dirs)
            # A new warm process ran every conftest anew; else profiles stay.
            profiles = (
                {} if reread is None else {f: p for f, p in self._profiles.items() if f in loaded}
            )
        suspects: set[str] = set()
        for path in loaded - stats.keys():
            # Read, then stat: a save between the two shows in the stat.
            source = _read(path)
            st = stat_signature(path)
            stats[path] = st
            ran = os.path.basename(path) == "conftest.py" and (reread is None or path in reprofile)
            if path in force_changed or _modified_since(st, since_ns) or source is None:
                hashes[path] = None
                suspects.add(path)
                if ran:  # it may have run an earlier version: unknown
                    profiles.pop(path, None)
            else:
                hashes[path] = changes.digest(source)
                if ran:
                    profiles[path] = effects.profile(source)
            d = os.path.dirname(path)
            if d not in dirs:
                dirs[d] = dir_signature(d)
        for test_dir in {os.path.dirname(f) for f in test_files}:
            if test_dir not in dirs:
                dirs[test_dir] = dir_signature(test_dir)
        site = {d: dir_signature(d)[0] for d in self.site_dirs}
        outside_now = outside.watch_dirs(stats, self.root)
        with self._lock:
            self._stats, self._hashes, self._dirs, self._site_mtimes = stats, hashes, dirs, site
            self._profiles = profiles
            outside_changed = outside_now != self._outside
            self._outside = outside_now
        if outside_changed and self._on_outside is not None:
            self._on_outside(outside_now)
        if suspects - force_changed:
            self.note(suspects - force_changed)

    def record_rewarmed(self, files: dict[str, Signature | None]) -> None:
        """Test modules imported again by a re-warm, with their stats from before the import."""
        with self._lock:
            for path, sig in files.items():
                # Stat from before the import, hash unknown: a save during it still shows.
                self._stats[path] = sig
                self._hashes[path] = None
                d = os.path.dirname(path)
                if d not in self._dirs:
                    self._dirs[d] = dir_signature(d)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _modified_since(st: Signature | None, since_ns: int) -> bool:
    # A time in the future (archives, clock skew) says nothing: it would make
    # every reload queue another. ctime too: a save that put the old mtime
    # back (same size) also loaded the old pyc.
    if st is None:
        return False
    now_ns = time.time_ns()
    return any(since_ns - FILE_CLOCK_SLACK_NS <= t <= now_ns for t in (st[0], st[3]))
