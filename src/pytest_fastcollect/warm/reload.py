"""Purge a set of modules from the warm process and import them again.

Runs in the warm process only, between runs. Never uses importlib.reload:
modules are removed from sys.modules (and from their parent package) and
imported anew, test modules through pytest's collection so assertion
rewriting applies. If any object of an old module survives the purge (a
registry outside the purged set still holds it), the warm process cannot be
trusted and the caller replaces it.
"""

from __future__ import annotations

import gc
import importlib
import linecache
import sys
import time
import typing
import weakref
from collections.abc import Callable
from types import FunctionType, ModuleType
from typing import Any

from pytest_fastcollect.wire.warm import Failure, ReloadFailure

ALIVE_REPORT_LIMIT = 10


def _refs(name: str, mod: ModuleType) -> list[tuple[str, weakref.ref[Any]]]:
    refs: list[tuple[str, weakref.ref[Any]]] = [(name, weakref.ref(mod))]
    for value in list(vars(mod).values()):
        if isinstance(value, (type, FunctionType)) and getattr(value, "__module__", None) == name:
            try:
                refs.append((f"{name}.{value.__qualname__}", weakref.ref(value)))
            except TypeError:
                pass
    return refs


def _fileless_subpackages(names: list[str]) -> list[str]:
    """Namespace packages under the purged packages. The supervisor knows modules by
    their files and has none for them; left in place, the new parent package would
    lack them as attributes (``import app.ns`` finds ``app.ns`` in sys.modules and
    binds nothing), which a cold run never sees."""
    purged = set(names)
    prefixes = tuple(f"{n}." for n in names if hasattr(sys.modules.get(n), "__path__"))
    if not prefixes:
        return []
    return [
        name
        for name, mod in list(sys.modules.items())
        if name.startswith(prefixes)
        and name not in purged
        and getattr(mod, "__file__", None) is None
        and hasattr(mod, "__path__")
    ]


def purge(names: list[str]) -> list[tuple[str, weakref.ref[Any]]]:
    refs: list[tuple[str, weakref.ref[Any]]] = []
    for name in sorted(_fileless_subpackages(names), key=lambda n: -n.count(".")):
        sys.modules.pop(name, None)
    for name in names:
        mod = sys.modules.pop(name, None)
        if mod is None:
            continue
        refs.extend(_refs(name, mod))
        parent, _, child = name.rpartition(".")
        parent_mod = sys.modules.get(parent) if parent else None
        if parent_mod is not None and getattr(parent_mod, child, None) is mod:
            try:
                delattr(parent_mod, child)
            except AttributeError:
                pass
    return refs


def _rewritten_by_pytest(mod: ModuleType | None) -> bool:
    loader = getattr(mod, "__loader__", None)
    return type(loader).__name__ == "AssertionRewritingHook"


def rewritten_files(names: list[str]) -> list[tuple[str, str]]:
    """(name, file) of the loaded modules among ``names`` that pytest rewrote: the
    next run rewrites them again (warm/pyc_writer.py writes their pyc ahead)."""
    found = []
    for name in names:
        mod = sys.modules.get(name)
        file = getattr(mod, "__file__", None)
        if _rewritten_by_pytest(mod) and isinstance(file, str) and file.endswith(".py"):
            found.append((name, file))
    return found


class Result:
    """What a reload or re-warm did; ``failure`` None means it can be trusted."""

    def __init__(
        self,
        started: float,
        failure: ReloadFailure | None = None,
        reason: str = "",
        reimported: int = 0,
        failures: list[Failure] | None = None,
    ) -> None:
        self.failure = failure
        self.reason = reason
        self.reimported = reimported
        self.failures = failures or []
        self.duration_ms = (time.perf_counter() - started) * 1000


def reload_modules(names: list[str], reimport: list[str]) -> Result:
    """Purge ``names``; then import ``reimport`` (project modules, never test modules).

    Test modules, and every module pytest rewrote (``pytest_plugins`` modules,
    ``register_assert_rewrite`` ones), are left for the next run to import
    through pytest, so assertions are rewritten as in a cold run, and for a
    later re-warm.
    """
    started = time.perf_counter()
    rewritten = [n for n in names if _rewritten_by_pytest(sys.modules.get(n))]
    refs = purge(names)
    for cleanup in getattr(typing, "_cleanups", []):
        cleanup()
    alive = _still_alive(refs)
    del refs
    if alive:
        return Result(
            started,
            ReloadFailure.ALIVE,
            "objects of the old modules are still referenced: "
            + ", ".join(alive[:ALIVE_REPORT_LIMIT]),
        )
    importlib.invalidate_caches()
    linecache.clearcache()
    for name in reimport:
        if name in sys.modules or name in rewritten:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:
            return Result(
                started,
                ReloadFailure.REIMPORT_ERROR,
                f"re-importing {name} raised {type(exc).__name__}: {exc}",
            )
    plain = [n for n in rewritten if n in sys.modules]
    if plain:
        # A project module imports it: outside pytest it came back without
        # assertion rewriting, and pytest would warn and keep it so.
        listed = ", ".join(plain[:ALIVE_REPORT_LIMIT])
        return Result(
            started,
            ReloadFailure.PLAIN_IMPORT,
            f"rewritten modules were imported plainly: {listed}",
        )
    return Result(started, reimported=sum(1 for n in reimport if n in sys.modules))


def _still_alive(refs: list[tuple[str, weakref.ref[Any]]]) -> list[str]:
    """Labels of the purged objects that a collection leaves alive.

    The layer freezes nothing of its own (``serving.OrderLoop.freezes_heap``):
    what the base froze (pytest, plugins, libraries) is left out of the
    collection, and a frozen object that refers to a purged one still keeps
    it alive, as it must. Only when something survives is the whole heap
    collected, in case a frozen cycle was all that held it (a project module
    the base imported, say as a plugin); the heap then stays unfrozen.
    """
    gc.collect()
    alive = [label for label, ref in refs if ref() is not None]
    if alive and gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
        alive = [label for label, ref in refs if ref() is not None]
    return alive


def rewarm(files: list[str], collect: Callable[[list[str]], list[Failure]]) -> Result:
    """Import purged test modules again through pytest's collection."""
    started = time.perf_counter()
    try:
        failures = collect(files)
        return Result(started, reimported=len(files) - len(failures), failures=failures)
    finally:
        gc.collect()  # the layer's own objects only (see _still_alive)
