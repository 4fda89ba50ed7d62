"""The base process: pytest, its plugins and the project's libraries, no project code.

Runs as its own interpreter (``python -m pytest_fastcollect.warm.zygote``),
started by the supervisor with a control socket; single-threaded. It
imports pytest, its built-in and installed plugins, and later (when idle)
the library modules a project layer's warm-up imported, after a trial in a
child like learned imports. It serves two kinds of fork (``serving.py``):

- ``layer``: a project layer (``zygote.Zygote``), which imports conftests,
  project and test modules, with a control socket of its own whose other
  end goes back to the supervisor with the ``layer_forked`` event. So a new
  project layer re-imports only project code;
- ``fork``: a run that imports the project itself, for when no project layer
  can serve it exactly (while one warms up, or when it holds modules the run
  must not see).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import os
import signal
import socket
import sys
import time
from typing import Any

import pytest

from pytest_fastcollect import fingerprint, processes, role, settings
from pytest_fastcollect.warm import envtrack, metadata_cache, threads
from pytest_fastcollect.warm.serving import OrderLoop, fork_accounted, fork_verdict
from pytest_fastcollect.warm.standby import StandbySlot
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import send_frame

PR_SET_PDEATHSIG = 1


class Base(OrderLoop):
    def __init__(self, ctl: socket.socket, root: str, warm_args: list[str], cache_dir: str) -> None:
        super().__init__(ctl, root, cache_dir)
        self.warm_args = warm_args
        self.layers: set[int] = set()
        self.key: wm.WarmKey | None = None
        self.handlers["layer"] = self.layer
        # Read before envtrack starts recording: the daemon's own setting, not the project's.
        self.standby_mode = settings.standby_mode()

    def start(self) -> None:
        started = time.monotonic()
        envtrack.install()
        _import_plugins()
        metadata_cache.prepare()
        # Every pytest session that starts in a fork of this process is a run's
        # (a client's here would hand its run to the daemon again).
        role.become_worker()
        self.key = wm.WarmKey(
            python=sys.executable,
            sys_path=fingerprint.interpreter_sys_path(),
            options={},
            env={**fingerprint.fixed_env(), **envtrack.recorded},
        )
        gc.collect()
        gc.freeze()
        self.send(
            wm.BaseReady(
                pid=os.getpid(),
                key=self.key,
                fork=fork_verdict(),
                cached_modules=len(sys.modules),
                seconds=time.monotonic() - started,
            )
        )

    def report(self) -> dict[str, Any]:
        if self.key is not None:
            self.key.env.update(envtrack.recorded)
        return {
            "cached_modules": len(sys.modules),
            "modules": [],
            "env_keys": sorted(envtrack.recorded),
            "test_files": [],
            "conftests": [],
        }

    def reaped(self, pid: int, status: int) -> bool:
        if pid not in self.layers:
            return False
        self.layers.discard(pid)
        self.send(wm.LayerExited(pid=pid, code=os.waitstatus_to_exitcode(status)))
        return True

    def layer(self, order: wm.LayerOrder, fds: list[int]) -> bool:
        for fd in fds:
            os.close(fd)
        verdict = threads.fork_safety()
        if not verdict.safe:
            self.send(wm.Tainted(id=order.id, reason=verdict.reason))
            return True
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = fork_accounted()
        if pid == 0:
            ours.close()
            _become_layer(self, theirs, order.env)
        theirs.close()
        self.layers.add(pid)
        try:
            send_frame(self.ctl, wm.encode(wm.LayerForked(id=order.id, pid=pid)), (ours.fileno(),))
        finally:
            ours.close()
        return True

    def shutdown(self) -> None:
        super().shutdown()
        for pid in list(self.layers):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _become_layer(base: Base, ctl: socket.socket, env: dict[str, str]) -> None:
    """In the forked child: the project layer. Never returns."""
    code = 0
    try:
        _die_with_parent()
        for fd in (base.ctl.fileno(), base.wake_r, base.wake_w):
            os.close(fd)
        if env != dict(os.environ):
            os.environ.clear()
            os.environ.update(env)
        from pytest_fastcollect.warm.zygote import Zygote

        # Its command line is the base's: say in `ps` that this one is the layer.
        processes.set_title(processes.title("warm process", base.root))

        layer = Zygote(ctl, base.root, base.warm_args, base.cache_dir)
        layer.warm_up()
        layer.standby = StandbySlot(base.standby_mode, base.warm_args)
        layer.loop()
    except ConnectionError:
        # The supervisor went away during the warm-up (stopped meanwhile): a
        # traceback in the log would read as a failure.
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    os._exit(code)


def _die_with_parent() -> None:
    """Linux: the layer is killed when the base process dies (its workers have
    process groups of their own and are killed by the supervisor)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _import_plugins() -> None:
    """pytest's own plugins, which every start-up imports before any conftest.

    Installed plugins are left to the project layer's warm-up: pytest imports
    them through its assertion-rewriting hook, and one imported without it
    would make every session warn that it cannot be rewritten.
    """
    from _pytest.config import default_plugins

    for name in default_plugins:
        try:
            importlib.import_module(f"_pytest.{name}")
        except ImportError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-fastcollect-warm")
    # What `ps` shows, so `pgrep -f pytest-fastcollect` finds it (processes.py).
    parser.add_argument("--title", default="")
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
    base = Base(ctl, ns.root, warm_args, ns.cache_dir)
    try:
        base.start()
        base.loop()
    except ConnectionError:
        base.shutdown()  # the supervisor went away: take the layers down, quietly
    assert pytest  # imported above for the layers to inherit
    return 0
