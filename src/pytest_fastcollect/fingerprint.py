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
import sys

# No typing at run time: the start-up hook (client/early.py) imports this.
TYPE_CHECKING = False
if TYPE_CHECKING:
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


def base_sys_path(ini_pythonpath: list[str] | None = None) -> list[str]:
    """sys.path as the interpreter set it up (pytest's ``pythonpath`` entries removed)."""
    extra = set(ini_pythonpath or ())
    return [entry for entry in sys.path if entry not in extra]


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


def interpreter_differences(warm: WarmKey, python: str, sys_path: list[str]) -> list[str]:
    if warm.python != python:
        return [f"this run uses {python}, the daemon {warm.python}"]
    if warm.sys_path != sys_path:
        return [
            "sys.path differs from the daemon's (PYTHONPATH, virtualenv, or 'python -m pytest' vs 'pytest')"
        ]
    return []


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
