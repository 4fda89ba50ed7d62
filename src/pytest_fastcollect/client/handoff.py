"""Hand an ordinary pytest run to the project's daemon, or decide to run cold.

Runs in the client before any conftest is imported. Cheap when there is no
daemon (one stat of the socket path). Any doubt means a cold run with a
one-line notice on stderr; never a hang, never a wrong result.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from pytest_fastcollect import keys
from pytest_fastcollect.client.connect import connect, lock_is_free, read_response, remove_stale_files
from pytest_fastcollect.errors import DaemonConnectionError, DaemonError, FastCollectError
from pytest_fastcollect.paths import project_files
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire.framing import send_frame

if TYPE_CHECKING:
    import pytest

DISABLE_ENV = "PYTEST_FASTCOLLECT_DISABLE"


def notice(message: str) -> None:
    sys.stderr.write(f"pytest-fastcollect: {message}\n")
    sys.stderr.flush()


def disabled_by_env() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def try_handoff(config: pytest.Config) -> int | None:
    """The run's exit code if the daemon ran it, or None to run cold here."""
    ns = config.known_args_namespace
    if getattr(ns, "no_daemon", False) or disabled_by_env():
        return None
    if getattr(ns, "help", False) or getattr(ns, "version", False):
        return None
    try:
        files = project_files(config.rootpath)
    except FastCollectError:
        return None
    if not os.path.exists(files.socket):
        return None
    if getattr(ns, "cov_source", None):
        notice("--cov needs to see every import, which the warm process already did; running without the daemon")
        return None
    try:
        sock = connect(files.socket, timeout=None)
    except DaemonConnectionError:
        if lock_is_free(files):
            remove_stale_files(files)
            notice(f"removed stale daemon files for {files.root}; running without the daemon")
        else:
            notice("the daemon is not answering; running without it (pytest --daemon-stop cleans up)")
        return None
    sys_path = keys.base_sys_path(keys.ini_pythonpath(config))
    with sock:
        return run_through(sock, config.invocation_params.args, str(config.invocation_params.dir), sys_path)


def _stdio_fds() -> tuple[int, int, int]:
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return (fds[0], fds[1], fds[2])


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class _Forwarder:
    """Forwards signals to the run; a second Ctrl-C kills it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.interrupts = 0
        self.saved: dict[int, object] = {}

    def __enter__(self) -> _Forwarder:
        for sig in self.SIGNALS:
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts > 1:
                signum = signal.SIGKILL
        try:
            send_frame(self.sock, p.dump(p.SignalRequest(signum=signum)))
        except OSError:
            pass


def run_through(sock: socket.socket, args: Sequence[str], cwd: str, sys_path: list[str]) -> int | None:
    """Send a run over ``sock`` and follow it; None means: run it cold."""
    req = p.RunRequest(args=list(args), cwd=cwd, env=dict(os.environ), umask=_umask(),
                       python=sys.executable, sys_path=sys_path)
    try:
        send_frame(sock, p.dump(req), fds=_stdio_fds())
    except OSError as exc:
        notice(f"could not reach the daemon ({exc}); running without it")
        return None
    started = False
    forwarder = _Forwarder(sock)
    try:
        while True:
            try:
                response = read_response(sock)
            except DaemonError as exc:
                if not started:
                    notice(f"{exc}; running without the daemon")
                    return None
                notice(f"the daemon went away during the run ({exc})")
                return 3
            if isinstance(response, p.Notice):
                notice(response.message)
            elif isinstance(response, p.RunStarted):
                if not started:
                    forwarder.__enter__()
                    started = True
            elif isinstance(response, p.RunRefused):
                notice(f"{response.reason}; running without the daemon")
                return None
            elif isinstance(response, p.ErrorResponse):
                notice(f"the daemon refused the run ({response.message}); running without it")
                return None
            elif isinstance(response, p.RunFinished):
                if response.message:
                    notice(response.message)
                if response.signal is not None and response.signal not in (signal.SIGINT,):
                    # Die the way the run died, so the shell sees the same status.
                    forwarder.__exit__()
                    started = False
                    sys.stdout.flush()
                    signal.signal(response.signal, signal.SIG_DFL)
                    os.kill(os.getpid(), response.signal)
                return response.exit_code
    finally:
        if started:
            forwarder.__exit__()


def autostart(config: pytest.Config) -> None:
    """``daemon_autostart = true``: after a cold run, start a daemon for the next ones."""
    if disabled_by_env() or getattr(config.option, "no_daemon", False):
        return
    try:
        files = project_files(config.rootpath)
    except FastCollectError:
        return
    if os.path.exists(files.socket) and not lock_is_free(files):
        return
    from pytest_fastcollect.client import commands

    try:
        commands.spawn_supervisor(config, list(config.invocation_params.args), wait=False)
    except FastCollectError as exc:
        notice(f"daemon_autostart: {exc.message}")
        return
    notice("started a daemon in the background for the next runs (daemon_autostart)")
