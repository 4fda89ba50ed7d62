"""The warm process's fingerprint: what it bakes in at import and configuration time.

The same functions run in the warm process during warm-up and in each forked
run, at the same hook point (``pytest_load_initial_conftests``, before any
conftest), so a run is served warm only when everything baked in matches.
Standard library and pytest only: the warm process must not import pydantic
before the user's code does.

Three parts, checked where the facts are:
- interpreter and ``sys.path``: sent by the client, compared by the supervisor;
- environment variables read while project code was imported: compared by
  the supervisor against the run's environment;
- options and ini values read at import time: compared in the forked run,
  after pytest has parsed the run's own command line and ini file.
"""

from __future__ import annotations

import os
import stat
import sys

# No typing at run time: the start-up hook (client/early.py) imports this.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import pytest

    from pytest_fastcollect.wire.warm import WarmKey

# Read by the interpreter or by pytest before any test module is imported.
FIXED_ENV = (
    "PYTEST_PLUGINS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTHONHASHSEED",
    "PYTHONWARNINGS",
    "PYTHONDEVMODE",
    "PYTHONUTF8",
    "PYTHONSAFEPATH",
    # Interpreter start-up settings: -O strips asserts outside test modules,
    # the others change int->str limits and what tracebacks and warnings show.
    "PYTHONOPTIMIZE",
    "PYTHONINTMAXSTRDIGITS",
    "PYTHONTRACEMALLOC",
    "PYTHONNODEBUGRANGES",
    "DJANGO_SETTINGS_MODULE",
)

# Interpreter options that only shape sys.path (compared on its own) or
# bytecode writing; any other (-O, -X, -W, -b, -u, ...) cannot be honoured by
# a warm process that was started without it.
_HARMLESS_INTERPRETER_FLAGS = frozenset("sEIPB")

# -o overrides that change what gets imported or how.
IMPORT_TIME_INI = (
    "pythonpath",
    "filterwarnings",
    "required_plugins",
    "consider_namespace_packages",
)

REFUSED_EXIT = 250


def _norm(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\x1f".join(_norm(v) for v in value)
    return str(value)


def interpreter_sys_path(ini_pythonpath: Sequence[str] = (), cwd: str | None = None) -> list[str]:
    """sys.path as the interpreter set it up, absolute.

    Call it before pytest imports a conftest or a test module (which insert
    their directories). pytest 9 has already put the ini ``pythonpath``
    entries in front by then (before loading plugins); pytest 8 puts them
    there later, in its own ``pytest_load_initial_conftests``. Those copies
    are left out here: the comparison adds them back in front.
    """
    entries = list(sys.path)
    ini = list(ini_pythonpath)
    if ini and entries[: len(ini)] == ini and _pythonpath_inserted_early():
        entries = entries[len(ini) :]
    return [_absolute(entry, cwd) for entry in entries]


def _pythonpath_inserted_early() -> bool:
    from _pytest.config import Config

    return hasattr(Config, "_configure_python_path")


def _absolute(entry: str, cwd: str | None) -> str:
    if os.path.isabs(entry):
        return os.path.normpath(entry)
    return os.path.normpath(os.path.join(cwd or os.getcwd(), entry))


def effective_sys_path(ini_pythonpath: list[str], interpreter_path: list[str]) -> list[str]:
    """sys.path once pytest has put the ini ``pythonpath`` entries first, without
    repeats: a later copy of an entry never decides an import."""
    seen: set[str] = set()
    out = []
    for entry in [*ini_pythonpath, *interpreter_path]:
        if entry not in seen:
            seen.add(entry)
            out.append(entry)
    return out


def _module_suffixes() -> tuple[str, ...]:
    """What a sys.path directory must hold for an import to find something in it
    (imported here: the start-up hook imports this module and never needs it)."""
    import importlib.machinery

    return tuple(importlib.machinery.all_suffixes())


def provides_modules(entry: str) -> bool:
    """Whether an ``import`` could find anything in this sys.path entry.

    A missing directory, or one holding no module file and no directory that
    could be a package (a virtualenv's ``bin``: scripts without ``.py``), is
    skipped by every import: such an entry cannot change what an import
    resolves to. Anything unreadable or unusual counts as holding modules.
    """
    try:
        st = os.stat(entry)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return True  # a zip or egg file
    suffixes = _module_suffixes()
    try:
        with os.scandir(entry) as it:
            for item in it:
                name = item.name
                if name.endswith(suffixes):
                    return True
                # A directory is a package, or a namespace package portion,
                # if its name could be a module name (``__pycache__`` is
                # only ever read through a module next to it).
                if "." not in name and name != "__pycache__" and item.is_dir():
                    return True
    except OSError:
        return True
    return False


def ini_pythonpath(config: pytest.Config) -> list[str]:
    try:
        return [str(x) for x in config.getini("pythonpath")]
    except (ValueError, KeyError):
        return []


def option_key(config: pytest.Config) -> dict[str, str]:
    """Options (command line, PYTEST_ADDOPTS, ini addopts, ini file) that matter at import time."""
    ns = config.known_args_namespace
    overrides = [
        o
        for o in (getattr(ns, "override_ini", None) or [])
        if o.split("=", 1)[0].strip() in IMPORT_TIME_INI
    ]
    out = {
        "rootdir": str(config.rootpath),
        "inifile": str(config.inipath) if config.inipath else "",
        "importmode": _norm(getattr(ns, "importmode", None)),
        "assertmode": _norm(getattr(ns, "assertmode", None)),
        "noconftest": _norm(getattr(ns, "noconftest", None)),
        "pythonwarnings": _norm(getattr(ns, "pythonwarnings", None)),
        "override_ini": _norm(sorted(overrides)),
        "ini:pythonpath": _norm(ini_pythonpath(config)),
    }
    try:
        out["ini:filterwarnings"] = _norm(config.getini("filterwarnings"))
    except (ValueError, KeyError):
        out["ini:filterwarnings"] = ""
    return out


def option_differences(warm: dict[str, str], run: dict[str, str]) -> list[str]:
    reasons = []
    for name in sorted(set(warm) | set(run)):
        if warm.get(name) != run.get(name):
            label = name.replace("ini:", "ini option ")
            reasons.append(
                f"{label} differs from the warm process ({run.get(name)!r} vs {warm.get(name)!r})"
            )
    return reasons


def same_interpreter(a: str, b: str) -> bool:
    """The same executable, reached from the same directory: a virtualenv's
    ``bin/python`` and ``bin/python3`` are one interpreter; the system python
    its symlinks point to is another (it has other site-packages)."""
    if a == b:
        return True
    real = os.path.realpath
    return real(a) == real(b) and real(os.path.dirname(a)) == real(os.path.dirname(b))


def interpreter_differences(
    warm: WarmKey, python: str, sys_path: list[str], cwd: str | None = None
) -> list[str]:
    """Why a run with this interpreter and ``sys.path`` cannot be served exactly.

    The paths are compared as pytest will have them when the first conftest
    is imported: the warm process's ini ``pythonpath`` entries first (the
    worker checks that the run's ini has the same), repeats dropped. Entries
    that hold nothing importable are left out of the comparison, since no
    import can resolve differently because of them; so ``pytest`` (its
    script directory first) and ``python -m pytest`` (the current directory
    first) share a daemon whenever that directory is already on the path.
    """
    if not same_interpreter(warm.python, python):
        return [f"this run uses {python}, the daemon {warm.python}"]
    ini = list(warm.ini_pythonpath)
    warm_path = effective_sys_path(ini, warm.sys_path)
    run_path = effective_sys_path(ini, [_absolute(e, cwd) for e in sys_path])
    if warm_path == run_path:
        return []
    warm_used = [e for e in warm_path if provides_modules(e)]
    run_used = [e for e in run_path if provides_modules(e)]
    if warm_used == run_used:
        return []
    hint = "(PYTHONPATH, another virtualenv, or python -m pytest from another directory)"
    only_run = [e for e in run_used if e not in warm_used]
    if only_run:
        return [f"this run's sys.path has {only_run[0]}, the daemon's does not {hint}"]
    only_warm = [e for e in warm_used if e not in run_used]
    if only_warm:
        return [f"the daemon's sys.path has {only_warm[0]}, this run's does not {hint}"]
    return [f"this run's sys.path has the daemon's entries in another order {hint}"]


def env_differences(warm_env: dict[str, str | None], run_env: dict[str, str]) -> list[str]:
    """``warm_env`` holds the fixed variables plus every one read while importing project code.

    None means unset: ``os.environ.get(name, default)`` tells it from an empty value.
    """
    return [
        f"environment variable {name} differs from the warm process"
        for name, value in sorted(warm_env.items())
        if run_env.get(name) != value
    ]


def interpreter_options(orig_argv: list[str] | None = None) -> list[str]:
    """Options given to the interpreter itself, e.g. ``-O`` in ``python -O -m pytest``."""
    argv = list(getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv)
    found = []
    for arg in argv[1:]:
        if not arg.startswith("-") or arg == "-":
            break  # the script (or an option's value): pytest's own arguments follow
        letters = arg[1:]
        # -m and -c end the interpreter's options, also inside a cluster (-sm).
        cut = min((letters.index(c) for c in "mc" if c in letters), default=-1)
        flags = set(letters[:cut] if cut >= 0 else letters)
        if arg.startswith("--") or not flags <= _HARMLESS_INTERPRETER_FLAGS:
            found.append(arg)
        if cut >= 0:
            break
    return found


def fixed_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in FIXED_ENV}
