"""Parallel warm runs: pytest-xdist's local workers forked from warm state, not spawned.

Runs in a run worker. In a cold ``pytest -n N`` the controller starts each
worker as a new interpreter (an execnet popen gateway) that imports pytest,
the plugins, the conftests and the test modules all over again. Here:

- ``start`` (a run-worker hook at ``pytest_load_initial_conftests``, the
  run's own session only) forks the fork server (warm/fork_server.py) when
  the options say the run will distribute its tests. At that point pytest has parsed them, no
  conftest is imported and no thread exists: the fork server keeps that
  state for every worker.
- ``start`` then registers a small plugin whose ``pytest_xdist_setupnodes``
  makes xdist's popen gateways come from the fork server
  (warm/xdist_gateway.py).

Everything else is xdist's own code: scheduling, reports, replacing crashed
workers, ``--maxfail``, Ctrl-C. When the fork server cannot serve (not
Linux, a thread already running, the server gone) xdist starts its ordinary
workers: slower, same results. Light imports only: this module is imported
by every run worker.
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import signal
import socket
import sys
import threading

from pytest_fastcollect.paths import xdist_record
from pytest_fastcollect.warm import fork_server
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pytest

REPLY_LIMIT = 64 * 1024


class _RunState:
    """What this run worker knows about its parallel run (one per process)."""

    def __init__(self) -> None:
        self.record_path: str | None = None
        self.learn_file: str | None = None
        self.tried = False
        self.server: ForkServer | None = None
        self.config: object | None = None


_state = _RunState()


class ForkServerError(Exception):
    """The fork server cannot give a worker; xdist starts an ordinary one instead."""


def note_run(learn_file: str, run_id: str) -> None:
    """In a run worker before pytest starts: where this run lists its xdist processes
    and records the library modules it imported (warm/learn.py)."""
    _state.record_path = xdist_record(os.path.dirname(learn_file), run_id)
    _state.learn_file = learn_file


def will_distribute(config: pytest.Config) -> bool:
    """Whether pytest-xdist will start workers for these options (its own rules)."""
    ns = config.known_args_namespace
    if getattr(ns, "collectonly", False):
        return False  # xdist leaves --collect-only alone
    numprocesses = getattr(ns, "numprocesses", None)
    if numprocesses in ("auto", "logical") and getattr(ns, "usepdb", False):
        numprocesses = 0  # xdist: -n auto with --pdb runs in-process
    return bool(numprocesses) or bool(getattr(ns, "tx", None))


def supported() -> bool:
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "pidfd_open")
        and hasattr(signal, "pidfd_send_signal")
    )


def start(config: pytest.Config) -> None:
    """Fork the fork server if this run will want xdist workers (once, in the run's own session)."""
    if _state.tried:
        return  # a pytest that a test runs in this process, or a worker of ours
    _state.tried = True
    if _state.record_path is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if not will_distribute(config) or not supported():
        return
    if fork_server.os_threads() != 1:
        return  # forking now would copy a thread's half-done work
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        ours.close()
        fork_server.serve(theirs, me, [str(arg) for arg in config.invocation_params.args])
    theirs.close()
    server = ForkServer(ours, pid)
    _state.server = server
    _state.config = config
    atexit.register(server.close)
    server.write_record()
    config.pluginmanager.register(_Routing(), "fastcollect-xdist-routing")


class _Routing:
    """Registered only when xdist will distribute, so its hook is known to pytest."""

    def pytest_xdist_setupnodes(self, config: pytest.Config) -> None:
        route_gateways(config)


def route_gateways(config: pytest.Config) -> None:
    """xdist is about to start its workers: route its popen gateways to the fork server."""
    if _state.server is None or config is not _state.config:
        return
    from pytest_fastcollect.warm import xdist_gateway

    xdist_gateway.route(config, _state.server)


def _umask() -> int:
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


class ForkServer:
    """The run worker's end of the fork server; spawn() may be called from any thread."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.workers: list[tuple[str, int]] = []
        self.broken: str | None = None
        self._lock = threading.Lock()

    def spawn(
        self, gateway: str, dont_write_bytecode: bool, fds: tuple[int, int, int]
    ) -> tuple[int, int]:
        """A new worker on ``fds`` (its stdin, stdout, stderr): its pid and a pidfd for it."""
        try:
            cwd = os.getcwd()
        except OSError as exc:
            raise ForkServerError(f"no working directory ({exc})") from exc
        request = {
            "gateway": gateway,
            "env": dict(os.environ),
            "cwd": cwd,
            "umask": _umask(),
            "dont_write_bytecode": dont_write_bytecode,
            # The library modules the worker's tests import lazily, to learn.
            "learn_file": f"{_state.learn_file}.{gateway}" if _state.learn_file else None,
        }
        with self._lock:
            if self.broken is not None:
                raise ForkServerError(self.broken)
            try:
                send_frame(self.sock, json.dumps(request).encode(), fds)
                raw, got = recv_frame(self.sock, REPLY_LIMIT, want_fds=True)
            except (FrameError, OSError) as exc:
                self.broken = f"the fork server is gone ({exc})"
                raise ForkServerError(self.broken) from exc
        reply = json.loads(raw)
        if not isinstance(reply.get("pid"), int) or len(got) != 1:
            for fd in got:
                os.close(fd)
            raise ForkServerError(str(reply.get("error", "no worker")))
        self.workers.append((gateway, reply["pid"]))
        self.write_record()
        return reply["pid"], got[0]

    def write_record(self) -> None:
        record_path = _state.record_path
        if record_path is None:
            return
        data = {
            "fork_server": self.pid,
            "workers": [{"gateway": g, "pid": p} for g, p in self.workers],
        }
        tmp = f"{record_path}.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, record_path)
        except OSError:
            pass

    def close(self) -> None:
        """At the run worker's exit: the fork server kills what is left of its workers and exits."""
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        merge_learned()


def merge_learned() -> None:
    """Add what the workers imported to what the run worker imported: the warm
    process reads one file per run when it reaps the run worker."""
    learn_file = _state.learn_file
    if learn_file is None:
        return
    names: set[str] = set()
    for path in [learn_file, *glob.glob(glob.escape(learn_file) + ".*")]:
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            data = None
        if path != learn_file:
            try:
                os.unlink(path)
            except OSError:
                pass
        if isinstance(data, list):
            names.update(n for n in data if isinstance(n, str))
    if not names:
        return
    tmp = f"{learn_file}.tmp"
    try:
        with open(tmp, "w") as fh:
            json.dump(sorted(names), fh)
        os.replace(tmp, learn_file)
    except OSError:
        pass
