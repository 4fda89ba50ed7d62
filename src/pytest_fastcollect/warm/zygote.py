"""The project layer of the warm process: warm up through pytest, then fork runs.

Forked from the base process (``base.py``), which holds pytest, the plugins
and the libraries; this layer imports the conftests, the project and the
test modules by running ``pytest --collect-only`` in-process, then serves
orders on its own control socket (``serving.py``): fork a run, reload a
closure, re-warm test modules, learn library imports. It must stay
single-threaded. Orders and events are the dataclasses of ``wire/warm.py``.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import gc
import json
import os
import socket
import sys
import time
import types
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.pathlib import resolve_package_path

from pytest_fastcollect import fingerprint, role
from pytest_fastcollect.warm import (
    envtrack,
    learn,
    loaded,
    metadata_cache,
    registrants,
    reload,
    threads,
    worker,
)
from pytest_fastcollect.warm.reload import Result as ReloadResult
from pytest_fastcollect.warm.serving import OrderLoop, fork_accounted, fork_verdict
from pytest_fastcollect.wire import warm as wm

PROGRESS_INTERVAL = 0.1


def requested_log_level() -> int | None:
    """The level a conftest set on the daemon's loggers, as older guides advise
    (``logging.getLogger("pytest_fastcollect.daemon").setLevel(logging.DEBUG)``).

    Conftests run here, not in the supervisor that writes the log, so the
    level is reported with ``Ready`` and the supervisor applies it.
    """
    import logging

    levels = [
        logging.getLogger(n).level for n in ("pytest_fastcollect", "pytest_fastcollect.daemon")
    ]
    chosen = [level for level in levels if level != logging.NOTSET]
    return min(chosen) if chosen else None


# What a collect-only session writes besides the imports it makes: reports
# and logs named by options (on the command line, in ``addopts`` of the ini
# file or PYTEST_ADDOPTS) or ini values. The warm process's own sessions
# (warm-up, re-collects) are no command of the user's: they must not replace
# the user's report or log with one of their own, nor measure coverage (which
# erases the data files of the user's last ``--cov`` run). Option dest: off.
SESSION_WRITERS: dict[str, object] = {
    "xmlpath": None,  # --junitxml (pytest)
    "log_file": os.devnull,  # --log-file and the log_file ini value (pytest)
    "pastebin": None,  # --pastebin (pytest: it posts the session's output)
    "report_log": None,  # --report-log (pytest-reportlog)
    "htmlpath": None,  # --html (pytest-html)
    "json_report": False,  # --json-report (pytest-json-report)
}


def silence_session_writers(config: pytest.Config) -> None:
    """Turn off, in a session of the warm process's own, what would write files."""
    for dest, off in SESSION_WRITERS.items():
        if hasattr(config.option, dest):
            setattr(config.option, dest, off)


class WarmupPlugin:
    """Counts modules imported by collection and records the warm key; keeps
    the session from writing reports, logs and coverage data."""

    def __init__(self, send: Callable[[Any], None] | None) -> None:
        self._send = send
        self.key: wm.WarmKey | None = None
        self.total = 0
        self.imported = 0
        self.failures: list[wm.Failure] = []
        self._modules: dict[str, str] = {}
        self.test_files: set[str] = set()
        self.conftests: set[str] = set()
        self._last_progress = 0.0
        self.config: pytest.Config | None = None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_load_initial_conftests(self, early_config: pytest.Config) -> Generator[None]:
        self.key = wm.WarmKey(
            python=sys.executable,
            sys_path=fingerprint.interpreter_sys_path(fingerprint.ini_pythonpath(early_config)),
            options=fingerprint.option_key(early_config),
            env=fingerprint.fixed_env(),
            ini_pythonpath=fingerprint.ini_pythonpath(early_config),
        )
        # pytest-cov starts measuring in its own (tryfirst) hook, if this is set.
        if getattr(early_config.known_args_namespace, "cov_source", None):
            early_config.known_args_namespace.cov_source = None
        return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config
        silence_session_writers(config)  # before the writers' own pytest_configure

    def pytest_plugin_registered(self, plugin: object) -> None:
        # Every conftest the session imported, also those pytest drops from
        # sys.modules again (a conftest outside a package is always "conftest").
        path = getattr(plugin, "__file__", None)
        if (
            isinstance(plugin, types.ModuleType)
            and path
            and os.path.basename(path) == "conftest.py"
        ):
            self.conftests.add(os.path.realpath(path))

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        self.total = estimate_modules(session.config)
        self._progress(force=True)

    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        if isinstance(collector, pytest.Module):
            self._modules[collector.nodeid] = str(collector.path)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        path = self._modules.pop(report.nodeid, None)
        if path is None:
            return
        if report.failed:
            self.failures.append(
                wm.Failure(path=path, error=worker.short_error(report.longreprtext))
            )
        else:
            self.imported += 1
            self.test_files.add(os.path.realpath(path))
        self._progress()

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._send is None or (not force and now - self._last_progress < PROGRESS_INTERVAL):
            return
        self._last_progress = now
        done = self.imported + len(self.failures)
        self._send(wm.Progress(done=done, total=max(self.total, done)))


def estimate_modules(config: pytest.Config) -> int:
    """How many test modules collection will import (for the progress display)."""
    patterns = [str(p) for p in config.getini("python_files")]
    norecurse = [str(p) for p in config.getini("norecursedirs")]
    count = 0
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        if path.is_file():
            count += 1
            continue
        for _dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [
                d
                for d in dirnames
                if d != "__pycache__" and not any(fnmatch.fnmatch(d, pat) for pat in norecurse)
            ]
            count += sum(
                1
                for f in filenames
                if f.endswith(".py") and any(fnmatch.fnmatch(f, p) for p in patterns)
            )
    return count


def detach_rewrite_hooks() -> None:
    """Let a finished session be garbage.

    Every module that pytest's assertion rewriter imported keeps the rewriter
    as its ``__loader__``, and the rewriter keeps its Config and Session, which
    keep every collected item and so every test function. Without this, the
    objects of a purged module stay reachable and every reload would look
    unsafe. The loader needs neither after its session ended.
    """
    from _pytest.assertion.rewrite import AssertionRewritingHook

    for module in list(sys.modules.values()):
        loader = getattr(module, "__loader__", None)
        if isinstance(loader, AssertionRewritingHook):
            loader.config = None  # type: ignore[assignment]
            loader.session = None


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _session_sys_path(entries: list[str]) -> Iterator[None]:
    """sys.path as a session sees it: pytest puts the ini ``pythonpath`` entries in
    front at configure time and takes them out at unconfigure, so between
    sessions a project module may not be importable without them."""
    added = [e for e in entries if e not in sys.path]
    for entry in reversed(added):
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)


def import_root(path: str) -> str:
    """The directory pytest puts on ``sys.path`` to import the file at ``path`` in its
    ``prepend`` and ``append`` modes (its own rule: the one above the top package)."""
    package = resolve_package_path(Path(path))
    return str(package.parent if package is not None else Path(path).parent)


@contextlib.contextmanager
def _collection_roots_removed(plugin: WarmupPlugin, taken: list[str]) -> Iterator[None]:
    """A collect session in the layer. Afterwards the directories pytest put on
    ``sys.path`` to import its test files and conftests come off again (into
    ``taken``): a cold run of one directory never had those of the others, and
    each run's session puts back those of the files it collects. What the
    modules themselves put there at import stays."""
    before = collections.Counter(sys.path)
    try:
        yield
    finally:
        config = plugin.config
        mode = str(config.getoption("importmode", "prepend")) if config is not None else ""
        # In importlib mode pytest puts nothing there: what is new came from the modules.
        inserting = mode in ("prepend", "append")
        files = (*plugin.test_files, *plugin.conftests) if inserting else ()
        roots = {import_root(f) for f in files}
        for entry, count in (collections.Counter(sys.path) - before).items():
            if entry and os.path.realpath(entry) in roots:
                for _ in range(count):
                    sys.path.remove(entry)
                if entry not in taken:
                    taken.append(entry)


class Zygote(OrderLoop):
    """The project layer: conftests, project and test modules imported; forks runs."""

    def __init__(self, ctl: socket.socket, root: str, warm_args: list[str], cache_dir: str) -> None:
        super().__init__(ctl, root, cache_dir)
        self.freezes_heap = False
        self.warm_args = warm_args
        self.warm_options: list[str] = []
        self.warm_paths: list[str] = []
        self.key: wm.WarmKey | None = None
        self.test_files: set[str] = set()
        self.conftests: set[str] = set()
        self.conftests_imported: list[str] = []  # by the last re-warm
        self.pythonpath: list[str] = []  # the ini's, which pytest adds for each session
        # What pytest put on sys.path to import the test files (taken off after each
        # collect session; a reload, which imports by name, puts them back for a while).
        self.collection_roots: list[str] = []
        self.handlers["reload"] = self.reload
        self.handlers["rewarm"] = self.rewarm
        self.handlers["scan"] = self.scan

    def fork_options(self) -> dict[str, str] | None:
        return self.key.options if self.key is not None else {}

    # -- warm-up -------------------------------------------------------------

    def collect_args(self, paths: list[str]) -> list[str]:
        return [
            *self.warm_options,
            "--collect-only",
            "-q",
            "-o",
            f"cache_dir={self.cache_dir}",
            *paths,
        ]

    def _collect_session(self, plugin: WarmupPlugin, args: list[str]) -> int | pytest.ExitCode:
        """One of the layer's own pytest sessions: quiet, and the directories
        pytest put on ``sys.path`` for its files taken off again afterwards."""
        with (
            _stdout_to_devnull(),
            role.warm(),
            _collection_roots_removed(plugin, self.collection_roots),
        ):
            return pytest.main(args, plugins=[plugin])

    def warm_up(self) -> None:
        started = time.monotonic()
        plugin = WarmupPlugin(self.send)
        known = frozenset(sys.modules)  # what the base process holds
        envtrack.install()
        code = self._collect_session(
            plugin, [*self.warm_args, "--collect-only", "-q", "-o", f"cache_dir={self.cache_dir}"]
        )
        if plugin.config is None or plugin.key is None:
            self.send(
                wm.WarmFailed(
                    error=f"pytest could not start (exit code {int(code)}); "
                    "run the same command without the daemon to see why"
                )
            )
            sys.exit(1)
        ns = plugin.config.known_args_namespace
        positionals = list(getattr(ns, "file_or_dir", None) or [])
        self.warm_options = list(self.warm_args)
        for p in positionals:
            if p in self.warm_options:
                self.warm_options.remove(p)
        self.warm_paths = [str(a) for a in plugin.config.args]
        self.pythonpath = [str(p) for p in plugin.config.getini("pythonpath")]
        self.key = plugin.key
        plugin.config = None
        detach_rewrite_hooks()
        self.test_files |= plugin.test_files
        self.conftests |= plugin.conftests
        self.key.env.update(envtrack.recorded)
        role.become_worker()
        metadata_cache.prepare()
        libraries = learn.new_library_modules(known, learn.library_dirs())
        gc.collect()  # what warming left behind; the layer's objects stay unfrozen
        self.send(
            wm.Ready(
                libraries=[(name, learn.module_file(name)) for name in libraries],
                env_written=sorted(envtrack.written),
                pid=os.getpid(),
                key=self.key,
                imported=plugin.imported,
                total=plugin.imported + len(plugin.failures),
                seconds=time.monotonic() - started,
                failures=plugin.failures,
                warm_paths=self.warm_paths,
                fork=fork_verdict(),
                log_level=requested_log_level(),
                **self.report(),
            )
        )

    def report(self) -> dict[str, Any]:
        """The fields of ``wm.ModuleReport``: the project modules held now (``loaded.py``)."""
        return {
            "cached_modules": len(sys.modules),
            "modules": loaded.project_modules(self.root),
            "env_keys": sorted(envtrack.recorded),
            "test_files": sorted(self.test_files),
            "conftests": sorted(self.conftests),
        }

    def scan(self, order: wm.ScanOrder, _fds: list[int]) -> bool:
        """Find registrant modules in a child (a pass over the heap), serving meanwhile."""
        if not threads.fork_safety().safe:
            self.send(wm.Scanned(id=order.id, registrants={}, complete=False))
            return True
        path = os.path.join(self.cache_dir, f"scan-{os.getpid()}-{order.id}.json")
        modules = {name: file for name, file in self.report()["modules"]}
        pid = fork_accounted()
        if pid == 0:
            code = 0
            try:
                found = registrants.find(modules, [*self.test_files, *self.conftests])
                with open(f"{path}.tmp", "w") as fh:
                    json.dump({modules[name]: why for name, why in found.items()}, fh)
                os.replace(f"{path}.tmp", path)
            except BaseException:
                code = 1
            os._exit(code)

        def done() -> None:
            try:
                with open(path) as fh:
                    found = json.load(fh)
                os.unlink(path)
                self.send(wm.Scanned(id=order.id, registrants=found, complete=True))
            except (OSError, ValueError):
                self.send(wm.Scanned(id=order.id, registrants={}, complete=False))

        self.jobs[pid] = done
        # The next run's standby need not wait for it: the layer stays as it is.
        self.quiet_jobs.add(pid)
        return True

    def recollect(self, paths: list[str]) -> list[wm.Failure]:
        plugin = WarmupPlugin(None)
        self._collect_session(plugin, self.collect_args(paths))
        plugin.config = None
        detach_rewrite_hooks()
        self.test_files |= plugin.test_files
        self.conftests |= plugin.conftests
        self.conftests_imported = sorted(plugin.conftests)
        return plugin.failures

    def reload(self, order: wm.ReloadOrder, _fds: list[int]) -> bool:
        envtrack.install()
        rewritten = reload.rewritten_files(order.modules)
        with _session_sys_path([*self.pythonpath, *self.collection_roots]):
            result = reload.reload_modules(order.modules, order.reimport)
        if result.failure is None:
            self.pyc_ahead = rewritten  # written ahead once the standby is ready (serving.py)
        self._reloaded(order.id, result)
        return True

    def rewarm(self, order: wm.RewarmOrder, _fds: list[int]) -> bool:
        envtrack.install()
        result = reload.rewarm(order.files, self.recollect)
        self._reloaded(order.id, result)
        return True

    def _reloaded(self, order_id: str, result: ReloadResult) -> None:
        if self.key is not None:
            self.key.env.update(envtrack.recorded)
        ran, self.conftests_imported = self.conftests_imported, []
        self.send(
            wm.Reloaded(
                id=order_id,
                failure=result.failure,
                reason=result.reason,
                reimported=result.reimported,
                failures=result.failures,
                duration_ms=result.duration_ms,
                conftests_imported=ran,
                **self.report(),
            )
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_fastcollect.warm.zygote``: the base process (it forks this layer)."""
    from pytest_fastcollect.warm import base

    return base.main(argv)


if __name__ == "__main__":
    sys.exit(main())
