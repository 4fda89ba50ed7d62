"""The supervisor's files: lock, socket, daemon record; stale-file cleanup.

Single instance per rootdir with ``fcntl.lockf``: unlike ``flock``, a lockf
lock is never inherited by a forked child, so a dead daemon's workers cannot
keep it held.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from pathlib import Path

from pytest_fastcollect.paths import ProjectFiles
from pytest_fastcollect.wire.protocol import DaemonRecord


class AlreadyRunning(Exception):
    pass


class Runtime:
    def __init__(self, files: ProjectFiles) -> None:
        self.files = files
        self._lock_fd: int | None = None

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
            try:
                same = os.stat(self.files.lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)

    def bind(self, backlog: int) -> socket.socket:
        # We hold the lock, so whatever socket file exists is a dead daemon's.
        remove_quietly(self.files.socket)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.files.socket))
        finally:
            os.umask(old)
        os.chmod(self.files.socket, 0o600)
        sock.listen(backlog)
        return sock

    def write_record(self, record: DaemonRecord) -> None:
        tmp = self.files.state.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(record.model_dump_json())
        os.replace(tmp, self.files.state)

    def release(self) -> None:
        shutil.rmtree(self.files.cache, ignore_errors=True)
        remove_quietly(self.files.socket)
        remove_quietly(self.files.state)
        if self._lock_fd is not None:
            # Unlink before unlocking: a starter that opens the path afterwards
            # gets a fresh inode rather than racing for ours.
            remove_quietly(self.files.lock)
            os.close(self._lock_fd)
            self._lock_fd = None


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
