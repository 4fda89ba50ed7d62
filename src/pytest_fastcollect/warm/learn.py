"""Learned imports: library modules the runs import lazily, imported once in the warm process.

Libraries import parts of themselves on first use (sympy's units when an
expression is simplified, pandas' IO modules, ...). The warm process never
did, so every forked run paid for them again. A run records the library
modules it imported (worker side); when the daemon is idle, the warm process
imports them too, after a trial import in a forked child shows that importing
them is invisible: no warning (any category, whatever the filters), no
output, no exception, no new thread, and no project module pulled in. What
fails the trial is never tried again in this daemon.

Only modules under the interpreter's library directories (the standard
library, site-packages) are learned. Project and test modules belong to the
reload machinery; a change to an installed package replaces the warm process.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
import os
import site
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Callable, Iterable

from pytest_fastcollect.warm.threads import ForkSafety
from pytest_fastcollect.wire.warm import NOT_TRIED

ForkCheck = Callable[[], ForkSafety]

SKIP_PREFIXES = ("_pytest", "pytest", "pluggy", "pytest_fastcollect", "__main__")


@functools.cache
def library_dirs() -> tuple[str, ...]:
    dirs: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            dirs.add(os.path.realpath(paths[key]))
    try:
        dirs.update(os.path.realpath(d) for d in site.getsitepackages())
    except AttributeError:  # some virtualenv site modules lack it
        pass
    user = getattr(site, "ENABLE_USER_SITE", False) and site.getusersitepackages()
    if user:
        dirs.add(os.path.realpath(user))
    return tuple(d + os.sep for d in sorted(dirs))


@functools.cache
def plugin_packages() -> frozenset[str]:
    """Top-level packages of installed pytest plugins. pytest imports them through
    its assertion-rewriting hook; imported without it, every session would warn."""
    names: set[str] = set()
    for dist in importlib.metadata.distributions():
        if not any(ep.group == "pytest11" for ep in dist.entry_points):
            continue
        for ep in dist.entry_points:
            if ep.group == "pytest11":
                names.add(ep.value.partition(":")[0].split(".")[0].strip())
        for file in dist.files or []:
            parts = str(file).split("/")
            if parts[0].endswith((".dist-info", ".egg-info")) or ".." in parts:
                continue
            names.add(parts[0].removesuffix(".py"))
    return frozenset(names)


def _is_library(name: str, module: object, dirs: tuple[str, ...]) -> bool:
    top = name.split(".", maxsplit=1)[0]
    if name.startswith(SKIP_PREFIXES) or top in ("pytest", "_pytest") or top in plugin_packages():
        return False
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return False
    return os.path.realpath(path).startswith(dirs)


def new_library_modules(known: frozenset[str], dirs: tuple[str, ...]) -> list[str]:
    """Library modules in sys.modules that were not in ``known``."""
    modules = sys.modules
    return sorted(
        name for name in modules.keys() - known if _is_library(name, modules.get(name), dirs)
    )


def module_file(name: str) -> str:
    """The real path a loaded module came from ("" if it has none)."""
    path = getattr(sys.modules.get(name), "__file__", None)
    return os.path.realpath(path) if isinstance(path, str) else ""


def record(known: frozenset[str], path: str) -> None:
    """In a finished run: write the library modules it imported to ``path``."""
    names = new_library_modules(known, library_dirs())
    if not names:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(names, fh)
    os.replace(tmp, path)


def read_recorded(path: str) -> list[str]:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return []
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return (
        [n for n in data if isinstance(n, str) and n not in sys.modules]
        if isinstance(data, list)
        else []
    )


def _import_quietly(name: str, fork_check: ForkCheck, root: str) -> str | None:
    """Import ``name``; the reason it is not invisible, or None."""
    before = set(sys.modules)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importlib.import_module(name)
        except BaseException as exc:
            return f"raised {type(exc).__name__}"
    if caught:
        return f"warned ({caught[0].category.__name__})"
    verdict = fork_check()
    if not verdict.safe:
        return f"made forking unsafe ({verdict.reason})"
    prefix, libraries = root + os.sep, library_dirs()
    for new in set(sys.modules) - before:
        path = getattr(sys.modules[new], "__file__", None)
        real = os.path.realpath(path) if isinstance(path, str) else ""
        if real.startswith(prefix) and not real.startswith(libraries):
            return f"imported the project module {new}"
    return None


def start_trial(
    names: list[str],
    root: str,
    fork_check: ForkCheck,
    result_path: str,
    expected: dict[str, str] | None = None,
) -> int:
    """Fork a child that imports ``names`` and writes each one's verdict to
    ``result_path`` (``finish_trial`` reads it); its pid. This process goes on
    serving meanwhile. ``expected``: the file a module must come from (where
    the project imported it from); another one is refused."""
    ordered = sorted(set(names))
    pid = os.fork()
    if pid == 0:  # the trial child: never returns
        code = 0
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            # Output shows as a growing file: stdout and stderr go to one.
            out = tempfile.TemporaryFile()  # noqa: SIM115 - lives until os._exit
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            results = _trial_imports(ordered, root, fork_check, expected or {})
            tmp = f"{result_path}.tmp"
            with open(tmp, "w") as fh:
                json.dump(results, fh)
            os.replace(tmp, result_path)
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def _trial_imports(
    ordered: list[str], root: str, fork_check: ForkCheck, expected: dict[str, str]
) -> dict[str, str | None]:
    results: dict[str, str | None] = {}
    for name in ordered:
        loaded = len(sys.modules)
        reason = _import_quietly(name, fork_check, root)
        if reason is None and expected.get(name, module_file(name)) != module_file(name):
            # sys.path differs where the project imported it (a conftest moved it).
            reason = f"came from {module_file(name)}, not {expected[name]}"
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        if reason is None and os.fstat(1).st_size:
            reason = "printed output"
        results[name] = reason
        harmless = reason is not None and reason.startswith("raised") and len(sys.modules) == loaded
        if reason is not None and not harmless:
            # Later imports would be judged in a changed process. (An import
            # that only raised, importing nothing, changed nothing.)
            for rest in ordered[ordered.index(name) + 1 :]:
                results.setdefault(rest, NOT_TRIED)
            break
    return results


def finish_trial(names: Iterable[str], result_path: str) -> dict[str, str | None]:
    """The verdicts a finished trial child wrote (a crash leaves none)."""
    try:
        with open(result_path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        data = {}
    finally:
        try:
            os.unlink(result_path)
        except OSError:
            pass
    if not isinstance(data, dict):
        data = {}
    return {name: data.get(name, "the trial import crashed") for name in sorted(set(names))}


def trial(names: Iterable[str], root: str, fork_check: ForkCheck) -> dict[str, str | None]:
    """Import ``names`` in a forked child and wait: name -> why it is not invisible, or None."""
    with tempfile.TemporaryDirectory(prefix="fc-trial-") as tmp:
        path = os.path.join(tmp, "trial.json")
        pid = start_trial(list(names), root, fork_check, path)
        os.waitpid(pid, 0)
        return finish_trial(names, path)


class Adopted:
    def __init__(self) -> None:
        self.imported: list[str] = []
        self.rejected: dict[str, str] = {}  # never to be tried again
        self.deferred: list[str] = []  # not tried: an earlier one failed its trial
        self.tainted = ""  # a real import did what its trial did not


def adopt(names: Iterable[str], root: str, fork_check: ForkCheck) -> Adopted:
    """Trial-import ``names`` in a child, then import in this process what passed."""
    wanted = [n for n in sorted(set(names)) if n not in sys.modules]
    if not wanted:
        return Adopted()
    return import_trialled(trial(wanted, root, fork_check), root, fork_check)


def import_trialled(
    trial_results: dict[str, str | None], root: str, fork_check: ForkCheck
) -> Adopted:
    """Import in this process the modules whose trial passed (verdict None)."""
    result = Adopted()
    for name in sorted(trial_results):
        reason = trial_results[name]
        if reason == NOT_TRIED:
            result.deferred.append(name)
        elif reason is not None:
            result.rejected[name] = reason
        elif name in sys.modules:
            result.imported.append(name)  # came with an earlier one
        else:
            reason = _import_quietly(name, fork_check, root)
            if reason is not None:
                result.rejected[name] = reason
                result.tainted = f"learning the import of {name} {reason}"
                break
            result.imported.append(name)
    return result
