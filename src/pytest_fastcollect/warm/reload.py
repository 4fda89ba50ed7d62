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


def purge(names: list[str]) -> list[tuple[str, weakref.ref[Any]]]:
    refs: list[tuple[str, weakref.ref[Any]]] = []
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


def reload_modules(
    names: list[str],
    recollect: list[str],
    reimport: bool,
    collect: Callable[[list[str]], list[dict[str, str]]],
) -> dict[str, Any]:
    started = time.perf_counter()
    gc.unfreeze()
    try:
        refs = purge(names)
        for cleanup in getattr(typing, "_cleanups", []):
            cleanup()
        gc.collect()
        alive = [label for label, ref in refs if ref() is not None]
        del refs
        if alive:
            return {
                "ok": False,
                "reason": "objects of the old modules are still referenced: "
                + ", ".join(alive[:ALIVE_REPORT_LIMIT]),
                "reimported": 0,
                "failures": [],
                "duration_ms": (time.perf_counter() - started) * 1000,
            }
        importlib.invalidate_caches()
        linecache.clearcache()
        failures: list[dict[str, str]] = []
        if reimport:
            if recollect:
                failures.extend(collect(recollect))
            for name in names:
                if name in sys.modules or name.rpartition(".")[2] == "conftest":
                    continue
                try:
                    importlib.import_module(name)
                except Exception as exc:
                    return {
                        "ok": False,
                        "reason": f"re-importing {name} raised {type(exc).__name__}: {exc}",
                        "reimported": 0,
                        "failures": failures,
                        "duration_ms": (time.perf_counter() - started) * 1000,
                    }
        reimported = sum(1 for n in names if n in sys.modules)
        if failures and any(not f["error"].startswith("SyntaxError") for f in failures):
            return {
                "ok": False,
                "reason": "re-import raised: " + "; ".join(f"{f['path']}: {f['error']}" for f in failures[:3]),
                "reimported": reimported,
                "failures": failures,
                "duration_ms": (time.perf_counter() - started) * 1000,
            }
        return {
            "ok": True,
            "reason": "",
            "reimported": reimported,
            "failures": failures,
            "duration_ms": (time.perf_counter() - started) * 1000,
        }
    finally:
        gc.collect()
        gc.freeze()
