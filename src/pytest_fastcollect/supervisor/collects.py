"""Collect results kept per warm-process generation and filters, and when they still hold.

Runs in the supervisor (any connection thread; its own lock). A repeated
``collect`` with nothing changed is answered from here instead of forking a
worker. An entry holds while all of these are as they were when its worker
collected:

- the warm process's generation (a reload or a replacement moves it);
- the freshness stamp (``Freshness.stamp``: every change the watcher or the
  sweep noted, applied or not, moves it);
- the files the collection read and the directories it listed, as the
  worker recorded them (``warm/worker.py``: an audit hook on ``open``,
  ``os.listdir`` and ``os.scandir``), plus the targets and their parent
  directories up to the root. So a new test file anywhere collection looked,
  a data file a ``pytest_generate_tests`` reads, a test module that failed to
  import and was fixed, an ini file, all count, watcher or not.

Test modules the warm process imported are not read again by a collection;
their edits reach the entry through the generation and the stamp (the
sweep stats every loaded file before each collect). A result is not kept
when a file it depends on was modified after the collection started (its
content at read time is unknown), nor for exit codes that mean the run did
not get as far as collecting (usage and internal errors).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from pytest_fastcollect.supervisor.freshness import FILE_CLOCK_SLACK_NS, Signature, stat_signature
from pytest_fastcollect.wire import warm as wm

# pytest's exit codes after which the node ids say what collection found.
CACHEABLE_EXIT_CODES = frozenset({0, 1, 2, 5})
MAX_ENTRIES = 32


class Entry:
    __slots__ = ("dirs", "files", "generation", "result", "stamp")

    def __init__(
        self,
        result: wm.CollectResult,
        generation: int,
        stamp: int,
        files: dict[str, Signature | None],
        dirs: dict[str, int | None],
    ) -> None:
        self.result = result
        self.generation = generation
        self.stamp = stamp
        self.files = files
        self.dirs = dirs

    def holds(self, generation: int, stamp: int) -> bool:
        if generation != self.generation or stamp != self.stamp:
            return False
        if any(_dir_mtime(d) != m for d, m in self.dirs.items()):
            return False
        return all(stat_signature(f) == s for f, s in self.files.items())


def _dir_mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class CollectCache:
    def __init__(self, root: str, ignore: tuple[str, ...] = ()) -> None:
        self.root = root
        # The daemon's own directories (the collect worker's pytest cache): outputs.
        self.ignore = tuple(os.path.join(d, "") for d in ignore)
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], Entry] = {}

    def get(self, args: list[str], generation: int, stamp: int) -> wm.CollectResult | None:
        key = tuple(args)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.holds(generation, stamp):
            return entry.result
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]
        return None

    def put(
        self,
        args: list[str],
        targets: Iterable[str],
        result: wm.CollectResult,
        generation: int,
        stamp: int,
        started_ns: int,
    ) -> bool:
        """Keep ``result`` if what it depends on did not change while it was collected."""
        if result.exit_code not in CACHEABLE_EXIT_CODES:
            return False
        files: dict[str, Signature | None] = {}
        dirs: dict[str, int | None] = {}
        read = [f for f in result.files if not f.startswith(self.ignore)]
        for path in [*read, *(t.split("::", 1)[0] for t in targets)]:
            files[path] = stat_signature(path)
        for d in [*result.dirs, *self._parents([*read, *targets])]:
            if not os.path.join(d, "").startswith(self.ignore):
                dirs[d] = _dir_mtime(d)
        # Changed after the collection began: which version it read is unknown.
        since = started_ns - FILE_CLOCK_SLACK_NS
        if any(s is not None and (s[0] >= since or s[3] >= since) for s in files.values()):
            return False
        if any(m is not None and m >= since for m in dirs.values()):
            return False
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            self._entries[tuple(args)] = Entry(result, generation, stamp, files, dirs)
        return True

    def _parents(self, paths: Iterable[str]) -> set[str]:
        """Every directory from each path up to the root (a new conftest.py or ini file
        anywhere on the way changes one of them)."""
        out = {self.root}
        prefix = self.root + os.sep
        for path in paths:
            d = os.path.dirname(path.split("::", 1)[0])
            while d.startswith(prefix) and d not in out:
                out.add(d)
                d = os.path.dirname(d)
        return out

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
