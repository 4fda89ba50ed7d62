"""Where a project's daemon keeps its files; shared by the client and the supervisor.

Standard library only: the client's hand-off path imports this on every run.
The runtime directory is private (0700, owned by us); a project is named by a
hash of its rootdir so socket paths stay short (AF_UNIX caps them near 104
bytes).
"""

from __future__ import annotations

import os
import stat

from pytest_fastcollect.errors import RuntimeDirError
from pytest_fastcollect.settings import ENV_RUNTIME_DIR

# pathlib and dataclasses are imported where needed, not here: the thin
# client imports this module and never builds a Path (~30 ms of start-up).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

SOCKET_PATH_LIMIT = 100

# Directories the daemon never watches (caches, VCS data, virtualenvs, builds):
# shared by the supervisor's watcher and the client's size check at start.
IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        "env",
        ".env",
        "site-packages",
        "dist-packages",
        "build",
        "dist",
        ".eggs",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "node_modules",
        ".idea",
        ".vscode",
    }
)


def runtime_dir() -> Path:
    """The directory for sockets, locks, state files and logs.

    ``$PYTEST_FASTCOLLECT_RUNTIME_DIR`` > ``$XDG_RUNTIME_DIR/pytest-fastcollect``
    > ``/tmp/pytest-fastcollect-<uid>``.
    """
    from pathlib import Path

    return Path(runtime_dir_name())


def runtime_dir_name() -> str:
    override = os.environ.get(ENV_RUNTIME_DIR)
    if override:
        return override
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "pytest-fastcollect")
    return f"/tmp/pytest-fastcollect-{os.getuid()}"


def check_runtime_dir(path: str | os.PathLike[str]) -> None:
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


def sha256_hex(data: bytes) -> str:
    """``hashlib.sha256(data).hexdigest()`` from CPython's built-in module: a
    client's start-up would spend 4-25 ms having hashlib load OpenSSL."""
    for name in ("_sha2", "_sha256"):  # Python 3.12+, before
        try:
            module = __import__(name)
        except ImportError:
            continue
        digest: str = module.sha256(data).hexdigest()
        return digest
    import hashlib  # a build without them

    return hashlib.sha256(data).hexdigest()


def project_key(root: str | os.PathLike[str]) -> str:
    # Hashed here, not at import: the start-up hook lists the runtime
    # directory first and, with no daemon running, never needs a key.
    real = os.path.realpath(os.fspath(root))
    return sha256_hex(real.encode())[:16]


class ProjectFiles:
    """The files of one project's daemon: all named ``<key>.<suffix>`` in ``directory``."""

    __slots__ = ("directory", "key", "root")

    def __init__(self, root: Path, directory: Path, key: str) -> None:
        self.root = root
        self.directory = directory
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProjectFiles) and (self.root, self.directory, self.key) == (
            other.root,
            other.directory,
            other.key,
        )

    def __hash__(self) -> int:
        return hash((self.root, self.directory, self.key))

    def __repr__(self) -> str:
        return f"ProjectFiles(root={self.root!r}, directory={self.directory!r}, key={self.key!r})"

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


def _check_socket_length(path: str) -> None:
    if len(os.fsencode(path)) >= SOCKET_PATH_LIMIT:
        raise RuntimeDirError(
            f"socket path {path} is too long for a Unix socket; "
            f"set {ENV_RUNTIME_DIR} to a shorter directory"
        )


def project_files(root: str | os.PathLike[str], directory: Path | None = None) -> ProjectFiles:
    from pathlib import Path

    real = Path(os.path.realpath(os.fspath(root)))
    files = ProjectFiles(root=real, directory=directory or runtime_dir(), key=project_key(real))
    _check_socket_length(str(files.socket))
    return files


def socket_path(root: str) -> str:
    """``project_files(root).socket`` as a string, without pathlib (the thin client's path)."""
    path = os.path.join(runtime_dir_name(), project_key(root) + ".sock")
    _check_socket_length(path)
    return path


def xdist_record(cache_dir: str, run_id: str) -> str:
    """Where a parallel run lists its fork server and xdist workers (written by the
    run worker, read by the supervisor for status and health)."""
    return os.path.join(cache_dir, f"xdist-{run_id}.json")
