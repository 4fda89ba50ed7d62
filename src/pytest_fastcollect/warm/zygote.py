"""The warm process: warm up through pytest, then fork one worker per order.

Runs as its own interpreter (``python -m pytest_fastcollect.warm.zygote``),
started by the supervisor with a control socket. It must stay single-threaded:
it checks its OS thread count before every fork and reports itself tainted
instead of forking from a multi-threaded process. Orders and events are the
dataclasses of ``wire/warm.py``; the supervisor validates the events.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import gc
import os
import select
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_fastcollect import fingerprint, role
from pytest_fastcollect.warm import envtrack, learn, metadata_cache, reload, threads, worker
from pytest_fastcollect.warm.reload import Result as ReloadResult
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import PeerClosed, recv_frame, send_frame

CONTROL_FRAME_LIMIT = 256 * 1024 * 1024
PROGRESS_INTERVAL = 0.1


def fork_accounted() -> int:
    """``os.fork()`` once ``threads.fork_safety`` found every other thread fork-safe.

    Python 3.12+ warns on a fork from a process with several OS threads; the
    pools we fork beside were checked (their atfork handlers), so the warning
    says nothing here, and a PYTHONWARNINGS=error must not turn it into a failure.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*multi-threaded.*fork\(\)", DeprecationWarning)
        return os.fork()


def fork_verdict() -> wm.ForkVerdict:
    verdict = threads.fork_safety()
    return wm.ForkVerdict(
        safe=verdict.safe,
        reason=verdict.reason,
        os_threads=verdict.os_threads,
        native=dict(verdict.native),
    )


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


class WarmupPlugin:
    """Counts modules imported by collection and records the warm key."""

    def __init__(self, send: Callable[[Any], None] | None) -> None:
        self._send = send
        self.key: wm.WarmKey | None = None
        self.total = 0
        self.imported = 0
        self.failures: list[wm.Failure] = []
        self._modules: dict[str, str] = {}
        self.test_files: set[str] = set()
        self._last_progress = 0.0
        self.config: pytest.Config | None = None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_load_initial_conftests(self, early_config: pytest.Config) -> Generator[None]:
        self.key = wm.WarmKey(
            python=sys.executable,
            sys_path=fingerprint.interpreter_sys_path(),
            options=fingerprint.option_key(early_config),
            env=fingerprint.fixed_env(),
            ini_pythonpath=fingerprint.ini_pythonpath(early_config),
        )
        return (yield)

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

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


class Zygote:
    def __init__(self, ctl: socket.socket, root: str, warm_args: list[str], cache_dir: str) -> None:
        self.ctl = ctl
        self.root = os.path.realpath(root)
        self.warm_args = warm_args
        self.children: dict[int, str] = {}  # worker pid -> order id
        self.cache_dir = cache_dir
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        self.warm_options: list[str] = []
        self.warm_paths: list[str] = []
        self.key: wm.WarmKey | None = None
        self.test_files: set[str] = set()
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        self.wake_r, self.wake_w = rfd, wfd
        self.handlers: dict[str, Callable[[Any, list[int]], bool]] = {
            "fork": self.fork,
            "reload": self.reload,
            "rewarm": self.rewarm,
            "learn": self.learn,
            "exit": self.exit,
        }

    def send(self, event: Any) -> None:
        send_frame(self.ctl, wm.encode(event))

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

    def warm_up(self) -> None:
        started = time.monotonic()
        plugin = WarmupPlugin(self.send)
        envtrack.install()
        with _stdout_to_devnull(), role.warm():
            code = pytest.main(
                [*self.warm_args, "--collect-only", "-q", "-o", f"cache_dir={self.cache_dir}"],
                plugins=[plugin],
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
        self.key = plugin.key
        plugin.config = None
        detach_rewrite_hooks()
        self.test_files |= plugin.test_files
        self.key.env.update(envtrack.recorded)
        role.become_worker()
        metadata_cache.prepare()
        learn.library_dirs()  # computed once, for every run to inherit
        gc.collect()
        gc.freeze()
        self.send(
            wm.Ready(
                pid=os.getpid(),
                key=self.key,
                imported=plugin.imported,
                total=plugin.imported + len(plugin.failures),
                seconds=time.monotonic() - started,
                failures=plugin.failures,
                warm_paths=self.warm_paths,
                fork=fork_verdict(),
                log_level=requested_log_level(),
                **self.module_report(),
            )
        )

    def module_report(self) -> dict[str, Any]:
        """The fields of ``wm.ModuleReport``: the project modules held now."""
        project: list[tuple[str, str]] = []
        prefix = self.root + os.sep
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None)
            if not f:
                continue
            real = os.path.realpath(f)
            if real.startswith(prefix) and "site-packages" not in real:
                project.append((name, real))
        return {
            "cached_modules": len(sys.modules),
            "modules": project,
            "env_keys": sorted(envtrack.recorded),
            "test_files": sorted(self.test_files),
        }

    # -- serving ---------------------------------------------------------------

    def loop(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        while True:
            watched: list[socket.socket | int] = [self.ctl, self.wake_r]
            readable, _, _ = select.select(watched, [], [])
            if self.wake_r in readable:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                self.reap()
            if self.ctl in readable:
                try:
                    raw, fds = recv_frame(self.ctl, CONTROL_FRAME_LIMIT, want_fds=True)
                except PeerClosed:
                    self.shutdown()
                    return
                order = wm.decode_order(raw)
                if not self.handlers[order.op](order, fds):
                    return

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            order_id = self.children.pop(pid, None)
            if order_id is None:
                continue
            self.send(
                wm.Exited(
                    id=order_id,
                    pid=pid,
                    code=os.waitstatus_to_exitcode(status),
                    imports=learn.read_recorded(self.learn_file(order_id)),
                )
            )

    def learn_file(self, order_id: str) -> str:
        return os.path.join(self.cache_dir, f"learn-{order_id}.json")

    def learn(self, order: wm.LearnOrder, _fds: list[int]) -> bool:
        started = time.perf_counter()
        result = learn.adopt(order.modules, self.root, threads.fork_safety)
        if result.imported:
            gc.collect()
            gc.freeze()
        self.send(
            wm.Learned(
                id=order.id,
                imported=result.imported,
                rejected=result.rejected,
                deferred=result.deferred,
                tainted=result.tainted,
                duration_ms=(time.perf_counter() - started) * 1000,
                **self.module_report(),
            )
        )
        return True

    def fork(self, order: wm.ForkOrder, fds: list[int]) -> bool:
        verdict = threads.fork_safety()
        if not verdict.safe:
            for fd in fds:
                os.close(fd)
            self.send(wm.Tainted(id=order.id, reason=verdict.reason))
            return True
        known = None
        learn_file = None
        if order.mode == "run":
            # The run records the library modules it imports (learn.py).
            known = frozenset(sys.modules)
            learn_file = self.learn_file(order.id)
        pid = fork_accounted()
        if pid == 0:
            close = [self.ctl.fileno(), self.wake_r, self.wake_w]
            options = self.key.options if self.key is not None else {}
            worker.run_child(order, fds, close, options, known, learn_file)
            os._exit(3)  # run_child never returns; belt and braces
        for fd in fds:
            os.close(fd)
        self.children[pid] = order.id
        self.send(wm.Forked(id=order.id, pid=pid))
        return True

    def recollect(self, paths: list[str]) -> list[wm.Failure]:
        plugin = WarmupPlugin(None)
        with _stdout_to_devnull(), role.warm():
            pytest.main(self.collect_args(paths), plugins=[plugin])
        plugin.config = None
        detach_rewrite_hooks()
        self.test_files |= plugin.test_files
        return plugin.failures

    def reload(self, order: wm.ReloadOrder, _fds: list[int]) -> bool:
        envtrack.install()
        result = reload.reload_modules(order.modules, order.reimport)
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
        self.send(
            wm.Reloaded(
                id=order_id,
                failure=result.failure,
                reason=result.reason,
                reimported=result.reimported,
                failures=result.failures,
                duration_ms=result.duration_ms,
                **self.module_report(),
            )
        )

    def exit(self, _order: wm.ExitOrder, _fds: list[int]) -> bool:
        """Retired by the supervisor: let running workers finish, then exit."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            order_id = self.children.pop(pid, None)
            if order_id is not None:
                try:
                    self.send(
                        wm.Exited(id=order_id, pid=pid, code=os.waitstatus_to_exitcode(status))
                    )
                except OSError:
                    pass
        return False

    def shutdown(self) -> None:
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-fastcollect-warm")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--sys-path0", default=None)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("warm_args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    # Mirror the client's interpreter: `pytest` puts its script directory first
    # on sys.path, `python -m` puts the cwd; the supervisor tells us which.
    if ns.sys_path0 is not None and sys.path:
        sys.path[0] = ns.sys_path0
    warm_args = [a for a in ns.warm_args if a != "--"]
    ctl = socket.socket(fileno=ns.control_fd)
    zygote = Zygote(ctl, ns.root, warm_args, ns.cache_dir)
    try:
        zygote.warm_up()
        zygote.loop()
    except ConnectionError:
        # The supervisor went away (stopped during a warm-up or an order):
        # nobody is left to report to, and a traceback in the log would
        # read as a failure. Take the running workers down and go.
        zygote.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
