"""Where a project's daemon keeps its files; shared by the client and the supervisor.

Standard library only: the client's hand-off path imports this on every run.
The runtime directory is private (0700, owned by us); a project is named by a
hash of its rootdir so socket paths stay short (AF_UNIX caps them near 104
bytes).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pytest_fastcollect.errors import RuntimeDirError

ENV_RUNTIME_DIR = "PYTEST_FASTCOLLECT_RUNTIME_DIR"
SOCKET_PATH_LIMIT = 100


def runtime_dir() -> Path:
    """The directory for sockets, locks, state files and logs.

    ``$PYTEST_FASTCOLLECT_RUNTIME_DIR`` > ``$XDG_RUNTIME_DIR/pytest-fastcollect``
    > ``/tmp/pytest-fastcollect-<uid>``.
    """
    override = os.environ.get(ENV_RUNTIME_DIR)
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "pytest-fastcollect"
    return Path(f"/tmp/pytest-fastcollect-{os.getuid()}")


def check_runtime_dir(path: Path) -> None:
    """Refuse a runtime directory that someone else could read or replace."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"{path} is not a directory (a symlink or a file is refused)")
    if st.st_uid != os.getuid():
        raise RuntimeDirError(
            f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
            f"remove it or set {ENV_RUNTIME_DIR} to a private directory"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise RuntimeDirError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700 "
            f"(run: chmod 700 {path})"
        )


def ensure_runtime_dir(path: Path | None = None) -> Path:
    path = path or runtime_dir()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RuntimeDirError(f"cannot create runtime directory {path}: {exc.strerror}") from exc
    check_runtime_dir(path)
    return path


def project_key(root: str | os.PathLike[str]) -> str:
    real = os.path.realpath(os.fspath(root))
    return hashlib.sha256(real.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ProjectFiles:
    root: Path
    directory: Path
    key: str

    @property
    def socket(self) -> Path:
        return self.directory / f"{self.key}.sock"

    @property
    def lock(self) -> Path:
        return self.directory / f"{self.key}.lock"

    @property
    def state(self) -> Path:
        return self.directory / f"{self.key}.json"

    @property
    def cache(self) -> Path:
        """pytest's cache_dir for the daemon's own collections (never the project's .pytest_cache)."""
        return self.directory / f"{self.key}.cache"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.key}.log"


def project_files(root: str | os.PathLike[str], directory: Path | None = None) -> ProjectFiles:
    real = Path(os.path.realpath(os.fspath(root)))
    files = ProjectFiles(root=real, directory=directory or runtime_dir(), key=project_key(real))
    if len(os.fsencode(files.socket)) >= SOCKET_PATH_LIMIT:
        raise RuntimeDirError(
            f"socket path {files.socket} is too long for a Unix socket; "
            f"set {ENV_RUNTIME_DIR} to a shorter directory"
        )
    return files
