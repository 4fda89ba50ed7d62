"""The rootdir and ini file pytest would choose for a command line, without importing pytest.

The thin client and the start-up hook (client/early.py) find a project's
daemon with this. pytest decides its rootdir in ``Config.parse`` (8.x:
``_preparse`` / ``_initini``) from ``PYTEST_ADDOPTS`` + the command line,
parsed before any plugin is loaded, so only pytest's own options (minus
plugins blocked by ``-p no:NAME`` on the command line) can take a value
there: the value of an unknown option, ``--cov src``, counts as a path. This
module mirrors that parse (see pytest_cli.py) and
``_pytest/config/findpaths.py`` (``determine_setup``, ``locate_config``,
``get_dirs_from_args``; the config files themselves in configfiles.py) for
pytest 8.0 to 9.2, then reads ``addopts`` and ``pythonpath`` from the ini
file the way ``getini`` does.

Whatever it cannot reproduce exactly (a usage error pytest would raise, an
``@file`` argument, ``--``, a short option with ``=``, ``-o addopts=``, an
unreadable or invalid config file, another pytest version) is
``Undecided``, and the caller leaves the run to pytest itself.

Standard library only and cheap to import: no pathlib, dataclasses, typing,
re or shlex at import time (the thin client's start-up is mostly imports).
"""

from __future__ import annotations

import errno
import os
import sys

from pytest_fastcollect import cmdline, configfiles, pytest_cli
from pytest_fastcollect.configfiles import (
    CONFIG_NAMES_8,
    CONFIG_NAMES_9,
    Config,
    load_by_suffix,
    load_named,
    path_suffix,
)
from pytest_fastcollect.configfiles import Unsupported as _GiveUp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class Undecided:
    """pytest's choice cannot be reproduced here; ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Undecided({self.reason!r})"


class Setup:
    """What pytest decides before it loads plugins.

    ``args``: the argument list as pytest has it when it loads plugins (ini
    ``addopts``, then ``PYTEST_ADDOPTS``, then the command line);
    ``options``: the ``dest`` of each pytest option given in ``args`` (see
    ``_DESTS``; others by option string); ``unknown``: arguments that look
    like options pytest does not know before plugins load; ``plugin_args``:
    the ``-p`` values in ``args`` as pytest's plugin manager scans them;
    ``pythonpath``: the ini ``pythonpath`` entries as ``sys.path`` strings.
    """

    __slots__ = (
        "args",
        "inifile",
        "options",
        "plugin_args",
        "pythonpath",
        "rootdir",
        "unknown",
        "version",
    )

    def __init__(
        self,
        rootdir: str,
        inifile: str | None,
        args: list[str],
        options: set[str],
        unknown: list[str],
        plugin_args: list[str],
        pythonpath: list[str],
        version: tuple[int, int],
    ) -> None:
        self.rootdir = rootdir
        self.inifile = inifile
        self.args = args
        self.options = options
        self.unknown = unknown
        self.plugin_args = plugin_args
        self.pythonpath = pythonpath
        self.version = version

    def __repr__(self) -> str:
        return f"Setup(rootdir={self.rootdir!r}, inifile={self.inifile!r})"


def determine(
    args: Sequence[str],
    cwd: str | None = None,
    version: tuple[int, int] | None = None,
    cache_dir: str | None = None,
) -> Setup | Undecided:
    """pytest's rootdir and ini file for ``pytest ARGS`` run in ``cwd`` (default: here).

    Reads ``PYTEST_ADDOPTS`` and expands ``--rootdir`` from this process's
    environment. ``version``: pytest's (major, minor), else the installed one.
    ``cache_dir``: a private directory that keeps parsed TOML files between
    calls (keyed by the file's device, inode, size, mtime and ctime).
    """
    if version is None:
        version = installed_pytest_version()
        if version is None:
            return Undecided("cannot tell which pytest is installed")
    if not pytest_cli.supported(version):
        return Undecided(f"pytest {version[0]}.{version[1]} is not one this module knows")
    configfiles.cache_dir = cache_dir
    try:
        return _determine(list(args), cwd or os.getcwd(), version)
    except _GiveUp as exc:
        return Undecided(str(exc))
    finally:
        configfiles.cache_dir = None


def _determine(argv: list[str], cwd: str, version: tuple[int, int]) -> Setup:
    blocked = cmdline.blocked_plugins(argv)
    known = pytest_cli.known_options(version, blocked)
    env_addopts = os.environ.get("PYTEST_ADDOPTS", "")
    args = argv
    if env_addopts:
        # pytest parses (validates) PYTEST_ADDOPTS on its own first.
        env_args = cmdline.split_words(env_addopts)
        cmdline.parse(env_args, known, version)
        args = [*env_args, *argv]
    first = cmdline.parse(args, known, version)
    cmdline.refuse_unmirrored_overrides(first.values)
    inifile = cmdline.last(first.values, "inifile")
    rootdir_arg = cmdline.last(first.values, "rootdir")
    rootdir, inipath, inicfg = _setup(
        cwd, first.positionals, inifile or None, rootdir_arg or None, version
    )

    mode, raw = inicfg.get("addopts", ("ini", None))
    addopts = cmdline.args_value(raw, mode, "addopts") if raw is not None else []
    cmdline.parse(addopts, known, version)
    full = [*addopts, *args]
    second = cmdline.parse(full, known, version)
    cmdline.refuse_unmirrored_overrides(second.values)
    mode, raw = inicfg.get("pythonpath", ("ini", None))
    pythonpath: list[str] = []
    if raw is not None:
        base = os.path.dirname(inipath) if inipath is not None else cwd
        pythonpath = [_pure_join(base, p) for p in cmdline.args_value(raw, mode, "pythonpath")]
    return Setup(
        rootdir=rootdir,
        inifile=inipath,
        args=full,
        options=second.options,
        unknown=second.unknown,
        plugin_args=cmdline.plugin_args(full),
        pythonpath=pythonpath,
        version=version,
    )


def installed_pytest_version() -> tuple[int, int] | None:
    """The (major, minor) of the pytest that ``import pytest`` would load here."""
    parts = _pytest_version_file().get("version_tuple")
    if (
        isinstance(parts, tuple)
        and len(parts) >= 2
        and isinstance(parts[0], int)
        and isinstance(parts[1], int)
    ):
        return (parts[0], parts[1])
    return None


def installed_pytest_version_string() -> str | None:
    """``pytest.__version__`` of that pytest."""
    version = _pytest_version_file().get("version")
    return version if isinstance(version, str) else None


_version_file: dict[str, dict[str, object]] = {}  # read once: "names" -> them


def _pytest_version_file() -> dict[str, object]:
    """The names ``_pytest/_version.py`` defines, read without importing ``_pytest``.

    The start-up hook runs while Python is importing that very package, so
    it finds it as the import system would and runs the generated file in
    a namespace of its own.
    """
    if "names" in _version_file:
        return _version_file["names"]
    namespace: dict[str, object] = {}
    location: list[str] = []
    module = sys.modules.get("_pytest")
    if module is not None:
        location = list(getattr(module, "__path__", ()))
    else:
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            try:
                spec = find_spec("_pytest", None)
            except Exception:
                break
            if spec is not None:
                location = list(spec.submodule_search_locations or ())
                break
    if location:
        path = os.path.join(location[0], "_version.py")
        try:
            with open(path, encoding="utf-8") as fh:
                source = fh.read()
            exec(compile(source, path, "exec", dont_inherit=True), namespace)
        except Exception:
            namespace = {}
    _version_file["names"] = namespace
    return namespace


# --- findpaths ----------------------------------------------------------------------


def _setup(
    cwd: str,
    positionals: list[str],
    inifile: str | None,
    rootdir_arg: str | None,
    version: tuple[int, int],
) -> tuple[str, str | None, Config]:
    """``determine_setup``: (rootdir, inifile, {name: (mode, value)})."""
    dirs = _dirs_from_args(cwd, positionals)
    rootdir: str | None = None
    inipath: str | None
    if inifile:
        inipath = _abspath(cwd, inifile)
        inicfg, rootdir = _explicit_config(cwd, inipath, dirs, rootdir_arg, version)
    else:
        ancestor = _common_ancestor(cwd, dirs)
        rootdir, inipath, inicfg = _locate_config(cwd, [ancestor], version)
        if rootdir is None and rootdir_arg is None:
            for candidate in (ancestor, *_parents(ancestor)):
                if _is_file(os.path.join(candidate, "setup.py")):
                    rootdir = candidate
                    break
            else:
                if dirs != [ancestor]:
                    rootdir, inipath, inicfg = _locate_config(cwd, dirs, version)
                if rootdir is None:
                    rootdir = _common_ancestor(cwd, [cwd, ancestor])
                    if rootdir == os.sep:
                        rootdir = ancestor
    if rootdir_arg:
        rootdir = _abspath(cwd, os.path.expandvars(rootdir_arg))
        if not _is_dir(rootdir):
            raise _GiveUp(f"--rootdir {rootdir} is not a directory")
    assert rootdir is not None
    return rootdir, inipath, inicfg


def _explicit_config(
    cwd: str, inipath: str, dirs: list[str], rootdir_arg: str | None, version: tuple[int, int]
) -> tuple[Config, str | None]:
    """``-c FILE``: its configuration and the rootdir it implies."""
    rootdir = None
    if version >= (9, 2):
        if not _exists(inipath) or _is_dir(inipath):
            raise _GiveUp(f"-c {inipath}: not a file")
        is_file = _is_file(inipath)
        name = os.path.basename(inipath)
        if name not in CONFIG_NAMES_9 and path_suffix(name) not in (".ini", ".cfg", ".toml"):
            if is_file:
                raise _GiveUp(f"-c {inipath}: unsupported format")
            inicfg: Config | None = {}
        else:
            inicfg = load_named(inipath, version, explicit=True)
        if rootdir_arg is None:
            if is_file:
                rootdir = os.path.dirname(inipath)
            else:
                rootdir = _common_ancestor(cwd, dirs)
                if rootdir == os.sep:
                    rootdir = cwd
    else:
        inicfg = load_by_suffix(inipath, version)
        if rootdir_arg is None:
            rootdir = os.path.dirname(inipath)
    return inicfg or {}, rootdir


def _dirs_from_args(cwd: str, args: list[str]) -> list[str]:
    dirs = []
    for arg in args:
        if arg.startswith("-"):
            continue
        path = _abspath(cwd, arg.split("::", 1)[0])
        try:
            exists = os.path.exists(path)
        except ValueError:  # pragma: no cover - arguments cannot hold NUL
            exists = False
        if exists:
            dirs.append(path if _is_dir(path) else os.path.dirname(path))
    return dirs


def _common_ancestor(cwd: str, paths: list[str]) -> str:
    common: str | None = None
    for path in paths:
        if not _exists(path):
            continue
        if common is None:
            common = path
        elif path == common or common in _parents(path):
            continue
        elif path in _parents(common):
            common = path
        else:
            try:
                common = os.path.commonpath((path, common))
            except ValueError:
                pass
    if common is None:
        return cwd
    if _is_file(common):
        return os.path.dirname(common)
    return common


def _locate_config(
    cwd: str, args: list[str], version: tuple[int, int]
) -> tuple[str | None, str | None, Config]:
    names = CONFIG_NAMES_9 if version >= (9, 0) else CONFIG_NAMES_8
    args = [a for a in args if not a.startswith("-")] or [cwd]
    pyproject = None
    for arg in args:
        path = _abspath(cwd, arg)
        for base in (path, *_parents(path)):
            for name in names:
                candidate = os.path.join(base, name)
                if not _is_file(candidate):
                    continue
                if name == "pyproject.toml" and pyproject is None:
                    pyproject = candidate
                found = load_named(candidate, version)
                if found is not None:
                    return base, candidate, found
    if pyproject is not None and version >= (8, 1):
        return os.path.dirname(pyproject), pyproject, {}
    return None, None, {}


# --- paths as pathlib would have them -------------------------------------------------


def _abspath(cwd: str, path: str) -> str:
    return os.path.normpath(os.path.join(cwd, path))


def _parents(path: str) -> list[str]:
    found: list[str] = []
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return found
        found.append(parent)
        path = parent


def _pure_join(base: str, path: str) -> str:
    """``str(Path(base) / path)``: collapses ``//`` and ``.``, keeps ``..``."""
    if path.startswith("/"):
        joined = path
    else:
        joined = base + path if base.endswith("/") else base + "/" + path
    lead = "/" if joined.startswith("/") else ""
    if joined.startswith("//") and not joined.startswith("///"):
        lead = "//"
    parts = [p for p in joined.split("/") if p and p != "."]
    return lead + "/".join(parts) if (lead or parts) else "."


_STAT_IGNORED = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def _stat_mode(path: str) -> int | None:
    """``os.stat(path).st_mode``, None where pathlib's ``exists()`` says False.

    Other errors (EACCES) make pathlib raise on some Python versions and not
    on others: give up on them.
    """
    try:
        return os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in _STAT_IGNORED:
            return None
        raise _GiveUp(f"cannot stat {path}: {exc}") from exc
    except ValueError:
        return None


def _exists(path: str) -> bool:
    return _stat_mode(path) is not None


def _is_file(path: str) -> bool:
    mode = _stat_mode(path)
    return mode is not None and (mode & 0o170000) == 0o100000


def _is_dir(path: str) -> bool:
    mode = _stat_mode(path)
    return mode is not None and (mode & 0o170000) == 0o040000
