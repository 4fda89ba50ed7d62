"""Sockets and stale files, without pydantic (the hand-off path imports this).

Its sockets are ``_socket.socket`` objects: the ``socket`` module's class adds
nothing the clients use, and importing it (``enum``, ``selectors``) would cost
every client's start-up a few milliseconds.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import os
import time

from pytest_fastcollect.errors import DaemonConnectionError
from pytest_fastcollect.paths import check_runtime_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pytest_fastcollect.paths import ProjectFiles

DEFAULT_TIMEOUT = 30.0
BACKLOG_RETRY = 0.005


def connect(
    socket_path: str | os.PathLike[str], timeout: float | None = DEFAULT_TIMEOUT
) -> _socket.socket:
    """Connect to a daemon's socket; raises RuntimeDirError if its directory is not private.

    Whoever can write to the socket's directory can put their own socket
    there, and a run hands the daemon our environment and our terminal: so
    every client checks the directory (ours, 0700, not a symlink) first.
    """
    path = os.fspath(socket_path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.lexists(directory):
        check_runtime_dir(directory)
    deadline = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else timeout)
    while True:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            # A full listen backlog (a burst of clients) fails an AF_UNIX
            # connect at once with EAGAIN instead of waiting: retry until the
            # deadline, as a TCP connect would wait.
            if exc.errno == errno.EAGAIN and time.monotonic() < deadline:
                time.sleep(BACKLOG_RETRY)
                continue
            raise DaemonConnectionError(
                f"Cannot connect to daemon at {path}. Is the daemon running? "
                f"({exc.strerror or exc}; start one with: pytest --daemon-start)"
            ) from exc
        return _above_stdio(sock)


def _above_stdio(sock: _socket.socket) -> _socket.socket:
    """Move a socket off fds 0-2: a client started with a standard stream closed
    (``2>&-``) gets the socket on that number, and would hand it to the run as
    that stream, or read it back as one."""
    if sock.fileno() > 2:
        return sock
    fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
    moved = _socket.socket(fileno=fd)
    moved.settimeout(sock.gettimeout())
    # Detach, then close the low number: the stream stays closed, as the user made it.
    os.close(sock.detach())
    return moved


def lock_is_free(files: ProjectFiles) -> bool:
    """True when no process holds the daemon's lock (so its files are stale)."""
    try:
        fd = os.open(files.lock, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def remove_stale_files(files: ProjectFiles) -> list[str]:
    """Remove a dead daemon's files (call only when ``lock_is_free``): what was removed."""
    removed = []
    for path in (files.socket, files.state, files.state.with_suffix(".json.tmp"), files.lock):
        try:
            os.unlink(path)
            removed.append(str(path))
        except (FileNotFoundError, IsADirectoryError):
            pass  # a directory in its place is not ours to remove: the verbs name it
    if os.path.isdir(files.cache):
        # The warm process's pytest cache, left behind by a daemon that crashed.
        import shutil

        shutil.rmtree(files.cache, ignore_errors=True)
        removed.append(str(files.cache))
    return removed
