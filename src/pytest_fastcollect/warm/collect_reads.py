"""What a collect worker's collection read and listed, for the supervisor's collect cache.

Runs only in a collect worker (a child forked for one ``collect`` request,
which exits right after): it adds an audit hook (``sys.addaudithook``, which
cannot be removed, so never in a process that lives on) that notes every
file opened for reading and every directory listed (``os.listdir``,
``os.scandir``), outside the interpreter's and the environment's own
directories and ``__pycache__``. The supervisor keeps the result while
those stay unchanged (``supervisor/collects.py``).
"""

from __future__ import annotations

import os
import site
import sys
from typing import Any

# Flags of os.open that write: such a file is an output of the collection, not an input.
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
LIMIT = 200_000  # paths kept at most; past it the result is not worth caching anyway


class Reads:
    def __init__(self, cwd: str) -> None:
        self.cwd = cwd
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, *_site_dirs()}
        self._skip = tuple(os.path.join(os.path.realpath(p), "") for p in prefixes if p)
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = (*args, None, None)[:3]
            if isinstance(mode, str) and any(c in mode for c in "wax+"):
                return
            if mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS:
                return
            self._note(path, self.files)
        elif event in ("os.listdir", "os.scandir"):
            self._note(args[0] if args else None, self.dirs)

    def _note(self, path: object, into: set[str]) -> None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        elif isinstance(path, os.PathLike):
            path = os.fspath(path)
        if path is None:
            path = "."  # os.listdir() and os.scandir() with no argument
        if not isinstance(path, str) or len(self.files) + len(self.dirs) > LIMIT:
            return
        full = os.path.normpath(os.path.join(self.cwd, path))
        if "__pycache__" in full or full.startswith(("/dev/", "/proc/", "/sys/")):
            return
        if full.startswith(self._skip):
            return
        into.add(full)


def _site_dirs() -> list[str]:
    try:
        return [*site.getsitepackages(), site.getusersitepackages()]
    except AttributeError:  # a virtualenv's old site module
        return []
