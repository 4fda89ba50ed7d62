"""Decide what a set of changed paths means for the warm process.

Runs in the supervisor. Pure decisions over paths and the warm process's
module table, so the reload rule can be unit-tested without processes.
"""

from __future__ import annotations

import enum
import glob
import hashlib
import importlib.util
import os
from dataclasses import dataclass, field

from pytest_fastcollect.paths import IGNORED_DIRS as IGNORED_DIRS  # re-exported
from pytest_fastcollect.supervisor import effects

CONFIG_FILES = frozenset(
    {
        "pytest.toml",
        ".pytest.toml",
        "pytest.ini",
        ".pytest.ini",
        "pyproject.toml",
        "tox.ini",
        "setup.cfg",
    }
)
EXTENSION_SUFFIXES = (".so", ".pyd", ".dylib")


class Replace(str, enum.Enum):
    CONFTEST = "conftest"
    CONFIG = "config"
    PACKAGES = "packages"
    EXTENSION = "extension"
    DELETED = "deleted"
    INIT = "init"
    ENV = "env"
    RELOAD_ERROR = "reload-error"
    ALIVE = "alive"
    MANUAL = "manual"
    CRASH = "crash"
    UNRESPONSIVE = "unresponsive"  # stopped, or did not answer a ping in time
    TAINTED = "tainted"
    RETRY = "retry"  # a change after a failed warm-up (perhaps the fix): warm again


def is_relevant(path: str, root: str) -> bool:
    """Could a change to ``path`` matter? (Editor temp files and caches do not.)"""
    rel = os.path.relpath(path, root)
    if rel.startswith(".."):
        return False
    parts = rel.split(os.sep)
    if any(
        p in IGNORED_DIRS
        or p.endswith((".egg-info", ".dist-info"))
        or p.startswith("pytest-cache-files-")
        for p in parts[:-1]
    ):
        return False
    base = parts[-1]
    if base.endswith(".py") or base in CONFIG_FILES or base.endswith((*EXTENSION_SUFFIXES, ".pth")):
        return not base.startswith(".#")
    return False


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def digest(source: bytes) -> str:
    return hashlib.blake2b(source, digest_size=16).hexdigest()


def content_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return digest(fh.read())
    except OSError:
        return None


def remove_stale_bytecode(path: str) -> None:
    """CPython trusts a pyc whose whole-second mtime and size match: a same-second,
    same-size rewrite would load the old code. Remove the caches of a changed file
    (the interpreter's and pytest's rewritten one)."""
    candidates = []
    try:
        candidates.append(importlib.util.cache_from_source(path))
    except (NotImplementedError, ValueError):
        pass
    stem = os.path.splitext(os.path.basename(path))[0]
    cache_dir = os.path.join(os.path.dirname(path), "__pycache__")
    candidates.extend(glob.glob(os.path.join(glob.escape(cache_dir), glob.escape(stem) + ".*.pyc")))
    for candidate in candidates:
        try:
            os.unlink(candidate)
        except OSError:
            pass


@dataclass
class Decision:
    replace: Replace | None = None
    reason: str = ""
    changed: dict[str, str] = field(default_factory=dict)  # module name -> file
    broken: list[str] = field(default_factory=list)  # changed files that do not compile
    # Conftests added, changed or deleted -> their new version (effects.EMPTY if deleted).
    conftests: dict[str, effects.Profile] = field(default_factory=dict)


def _outside_python(path: str, base: str, rel: str) -> Decision | None:
    """Config files, extensions and installed packages: no re-import can follow them."""
    if base in CONFIG_FILES:
        return Decision(Replace.CONFIG, f"{rel} changed")
    if base.endswith(EXTENSION_SUFFIXES):
        return Decision(Replace.EXTENSION, f"extension {rel} changed")
    if base.endswith(".pth") or ".dist-info" in path:
        return Decision(Replace.PACKAGES, f"installed packages changed ({rel})")
    return None


def _conftest(
    decision: Decision,
    path: str,
    modules: dict[str, str],
    conftests: frozenset[str] | set[str],
    hashes: dict[str, str | None],
) -> None:
    """A conftest added, changed or deleted: its new version, for effects.reloadable."""
    source = _read(path)
    if source is None:
        if path not in conftests:
            return  # neither loaded nor there
        decision.conftests[path] = effects.EMPTY
    elif path in conftests and digest(source) == hashes.get(path):
        return  # a save without edits
    else:
        decision.conftests[path] = effects.profile(source)
    name = modules.get(path)
    if name is not None:
        # A conftest inside a package stays in sys.modules: purge it (and
        # whatever imports it). pytest imports others afresh in every session.
        decision.changed[name] = path


def classify(
    paths: set[str],
    root: str,
    modules: dict[str, str],
    hashes: dict[str, str | None],
    conftests: frozenset[str] | set[str] = frozenset(),
) -> Decision:
    """``modules`` maps file -> module name (loaded project modules); ``conftests``
    are every conftest the warm process imported."""
    decision = Decision()
    for path in sorted(paths):
        base = os.path.basename(path)
        rel = os.path.relpath(path, root)
        exists = os.path.exists(path)
        if base == "conftest.py":
            _conftest(decision, path, modules, conftests, hashes)
            continue
        if not base.endswith(".py") or ".dist-info" in path:
            outside = _outside_python(path, base, rel)
            if outside is not None:
                return outside
            continue
        name = modules.get(path)
        if name is None:
            # A new package marker changes how modules resolve; a removed one
            # only matters if it was loaded (handled below as a deletion).
            if base == "__init__.py" and exists:
                return Decision(Replace.INIT, f"{rel} added")
            continue
        if not exists:
            return Decision(Replace.DELETED, f"{rel} deleted or moved")
        new_hash = content_hash(path)
        if new_hash is not None and new_hash == hashes.get(path):
            continue
        decision.changed[name] = path
        try:
            with open(path, "rb") as fh:
                compile(fh.read(), path, "exec", dont_inherit=True)
        except SyntaxError:
            decision.broken.append(path)
        except (OSError, ValueError):
            decision.broken.append(path)
    return decision
