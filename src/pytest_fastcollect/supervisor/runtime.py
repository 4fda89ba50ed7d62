"""The supervisor's files: lock, socket, daemon record; checking and removing only its own.

Single instance per rootdir with ``fcntl.lockf``: unlike ``flock``, a lockf
lock is never inherited by a forked child, so a dead daemon's workers cannot
keep it held.

Someone may delete the files under a running daemon (``rm -rf`` of the
runtime directory, the socket removed by hand). The supervisor remembers
the identity (device, inode) of each file it made, and ``check`` compares
them with what is on disk: a removed socket is made again; a lock that is
gone or no longer ours means another supervisor may take the project, so
this one must stop. On the way out it removes only files that are provably
its own: the socket and lock by identity (both stay allocated while this
process holds them open, so their inode numbers cannot be reused), the
record by its pid, the warm process's cache only while the lock is ours.
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
import shutil
import socket
from pathlib import Path

from pytest_fastcollect.paths import ProjectFiles
from pytest_fastcollect.wire.protocol import DaemonRecord

Identity = tuple[int, int]  # st_dev, st_ino


class AlreadyRunning(Exception):
    pass


class Health(enum.Enum):
    OK = "ok"
    SOCKET_GONE = "socket gone"  # the socket file was removed or replaced: make it again
    LOST = "lost"  # the directory or the lock is gone or not ours: stop


def _identity(path: Path | str) -> Identity | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class Runtime:
    def __init__(self, files: ProjectFiles) -> None:
        self.files = files
        self._lock_fd: int | None = None
        self._lock_id: Identity | None = None
        self._socket_id: Identity | None = None

    @property
    def record_tmp(self) -> Path:
        return self.files.state.with_suffix(".json.tmp")

    def acquire(self) -> None:
        while True:
            fd = os.open(self.files.lock, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                raise AlreadyRunning(str(self.files.root)) from exc
            # The previous holder unlinks the file before unlocking; if we
            # locked an unlinked inode, try again on the current one.
            st = os.fstat(fd)
            if _identity(self.files.lock) == (st.st_dev, st.st_ino):
                self._lock_fd = fd
                self._lock_id = (st.st_dev, st.st_ino)
                # A crashed daemon's files are ours to replace now.
                shutil.rmtree(self.files.cache, ignore_errors=True)
                remove_quietly(self.record_tmp)
                return
            os.close(fd)

    def owns_lock(self) -> bool:
        return self._lock_id is not None and _identity(self.files.lock) == self._lock_id

    def bind(self, backlog: int) -> socket.socket:
        # We hold the lock, so whatever socket file exists is a dead daemon's
        # (or was put there by hand): ours replaces it.
        remove_quietly(self.files.socket)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.files.socket))
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(self.files.socket, 0o600)
        self._socket_id = _identity(self.files.socket)
        sock.listen(backlog)
        return sock

    def write_record(self, record: DaemonRecord) -> None:
        fd = os.open(self.record_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(record.model_dump_json())
            os.replace(self.record_tmp, self.files.state)
        except BaseException:
            remove_quietly(self.record_tmp)
            raise

    def check(self) -> Health:
        """Are our files still there? (A few stats: cheap enough to run twice a second.)"""
        if not os.path.isdir(self.files.directory) or not self.owns_lock():
            return Health.LOST
        if self._socket_id is not None and _identity(self.files.socket) != self._socket_id:
            return Health.SOCKET_GONE
        return Health.OK

    def record_is_ours(self) -> bool:
        try:
            with open(self.files.state) as fh:
                return bool(json.load(fh).get("pid") == os.getpid())
        except (OSError, ValueError, AttributeError):
            return False

    def release(self) -> None:
        """Remove what is provably ours, whatever happened to the directory meanwhile."""
        lock_ours = self.owns_lock()
        if lock_ours:
            shutil.rmtree(self.files.cache, ignore_errors=True)
            remove_quietly(self.record_tmp)
        if self._socket_id is not None and _identity(self.files.socket) == self._socket_id:
            remove_quietly(self.files.socket)
        if self.record_is_ours():
            remove_quietly(self.files.state)
        if self._lock_fd is not None:
            # Unlink before unlocking: a starter that opens the path afterwards
            # gets a fresh inode rather than racing for ours.
            if lock_ours:
                remove_quietly(self.files.lock)
            os.close(self._lock_fd)
            self._lock_fd = None


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # gone already, or not a file we could have made
