"""Directories outside the rootdir that hold loaded project code, and whether to watch them.

Runs in the supervisor. Pure functions over paths (plus a few stats), so the
choice can be tested without a warm process. The warm process reports every
loaded module that is project code wherever it lives (``warm/loaded.py``):
symlink targets, ``.pth`` path entries, editable installs, namespace package
portions. The files are stat-swept before every run like any project file;
this module picks the directories to watch for them:

- a file inside a regular package: the topmost package directory (the one
  whose parent has no ``__init__.py``), recursively, so new and moved
  modules of that package are seen as they are under the rootdir;
- a top-level module or a namespace package portion: its own directory,
  not recursively (it is often a whole project or a ``sys.path`` entry).

A directory is not watched (only stat-swept, and status says why) when it
is on a network file system, whose changes made on other machines inotify
never reports, or when it holds too many directories to watch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

# Network and FUSE file systems: local inotify sees only local writes.
NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.gcsfuse",
    }
)
# A recursive watch costs one inotify watch per directory.
MAX_WATCHED_DIRS = 2000

WatchDirs = dict[str, bool]  # directory -> recursive


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + os.sep)


def _top_package(directory: str) -> str:
    while os.path.isfile(os.path.join(os.path.dirname(directory), "__init__.py")):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def watch_dirs(files: Iterable[str], root: str) -> WatchDirs:
    """The directories to watch for the loaded ``files`` (real paths) outside ``root``."""
    wanted: WatchDirs = {}
    seen: dict[str, tuple[str, bool]] = {}
    for path in files:
        if _inside(path, root):
            continue
        directory = os.path.dirname(path)
        choice = seen.get(directory)
        if choice is None:
            if os.path.isfile(os.path.join(directory, "__init__.py")):
                choice = (_top_package(directory), True)
            else:
                choice = (directory, False)
            seen[directory] = choice
        top, recursive = choice
        wanted[top] = wanted.get(top, False) or recursive
    # A directory inside a recursively watched one needs no watch of its own.
    recursive_dirs = [d for d, rec in wanted.items() if rec]
    return {
        d: rec
        for d, rec in wanted.items()
        if not any(other != d and _inside(d, other) for other in recursive_dirs)
    }


def mount_type(path: str, mounts: Iterable[tuple[str, str]]) -> str:
    """The file system type of the mount that holds ``path`` (``mounts``: (mountpoint, type))."""
    best, kind = "", ""
    for mountpoint, fstype in mounts:
        holds = _inside(path, mountpoint) or mountpoint == os.sep
        if holds and len(mountpoint) > len(best):
            best, kind = mountpoint, fstype
    return kind


def _too_many_dirs(directory: str, limit: int) -> bool:
    count = 0
    stack = [directory]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        count += 1
                        if count > limit:
                            return True
                        stack.append(entry.path)
        except OSError:
            continue
    return False


def why_not_watched(
    directory: str,
    recursive: bool,
    mounts: Iterable[tuple[str, str]],
    max_dirs: int = MAX_WATCHED_DIRS,
) -> str | None:
    """Why ``directory`` is only stat-swept, or None when it can be watched."""
    kind = mount_type(directory, mounts)
    if kind in NETWORK_FS:
        return f"on a network file system ({kind}): only the per-run stat sweep sees changes"
    if recursive and _too_many_dirs(directory, max_dirs):
        return f"more than {max_dirs} directories: only the per-run stat sweep sees changes"
    return None


def system_mounts() -> list[tuple[str, str]]:
    import psutil

    try:
        return [(m.mountpoint, m.fstype) for m in psutil.disk_partitions(all=True)]
    except OSError:
        return []
