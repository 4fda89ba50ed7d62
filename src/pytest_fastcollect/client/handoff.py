"""Hand an ordinary pytest run to the project's daemon, or decide to run cold.

Runs in the client before any conftest is imported. Cheap when there is no
daemon (one stat of the socket path). Any doubt means a cold run with a
one-line notice on stderr; never a hang, never a wrong result.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys

from pytest_fastcollect.client.transport import connect, lock_is_free, remove_stale_files
from pytest_fastcollect.errors import DaemonConnectionError, FastCollectError, RuntimeDirError
from pytest_fastcollect.settings import disabled_by_env
from pytest_fastcollect.wire import lite
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

# The thin client imports this module: nothing here may import typing,
# pathlib or dataclasses at run time (see wire/lite.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from types import FrameType

    import pytest


def notice(message: str) -> None:
    sys.stderr.write(f"pytest-fastcollect: {message}\n")
    sys.stderr.flush()


@functools.cache
def _startup_sys_path_key() -> pytest.StashKey[list[str]]:
    """Where the config keeps sys.path from before conftests and test modules changed
    it (prepend import mode inserts test dirs): what an autostarted daemon mirrors.
    Made on first use: the thin client imports this module and never pytest."""
    from _pytest.stash import StashKey

    return StashKey[list[str]]()


def try_handoff(
    config: pytest.Config, ns: argparse.Namespace | None = None, args: Sequence[str] = ()
) -> int | None:
    """The run's exit code if the daemon ran it, or None to run cold here.

    ``ns`` and ``args``: the options as parsed so far and the full argument
    list, when plugins loaded after this one have not added their options yet.
    """
    from pytest_fastcollect import fingerprint
    from pytest_fastcollect.paths import project_files

    startup_sys_path = fingerprint.base_sys_path(fingerprint.ini_pythonpath(config))
    config.stash[_startup_sys_path_key()] = startup_sys_path
    if ns is None:
        ns = config.known_args_namespace
    if _stays_here(ns):
        return None
    try:
        files = project_files(config.rootpath)
    except FastCollectError:
        return None
    if not os.path.exists(files.socket):
        return None
    interpreter_options = fingerprint.interpreter_options()
    if interpreter_options:
        notice(
            f"the warm process was started without python {' '.join(interpreter_options)}; "
            "running without the daemon"
        )
        return None
    if getattr(ns, "cov_source", None) or any(a == "--cov" or a.startswith("--cov=") for a in args):
        notice(
            "--cov needs to see every import, which the warm process already did; running without the daemon"
        )
        return None
    try:
        sock = connect(files.socket, timeout=None)
    except RuntimeDirError as exc:
        notice(f"{exc.message}; running without the daemon")
        return None
    except DaemonConnectionError:
        if lock_is_free(files):
            remove_stale_files(files)
            notice(f"removed stale daemon files for {files.root}; running without the daemon")
        else:
            notice(
                "the daemon is not answering; running without it (pytest --daemon-stop cleans up)"
            )
        return None
    sys_path = fingerprint.base_sys_path(fingerprint.ini_pythonpath(config))
    with sock:
        return run_through(
            sock,
            config.invocation_params.args,
            str(config.invocation_params.dir),
            sys_path,
            sys.argv[0] if sys.argv else "pytest",
        )


def _stays_here(ns: argparse.Namespace) -> bool:
    """Runs the daemon is never asked to serve (without a notice: nothing is wrong)."""
    return (
        # The start-up hook asked the daemon already, and it said no.
        _declined_at_startup()
        or getattr(ns, "no_daemon", False)
        or disabled_by_env()
        or getattr(ns, "help", False)
        or getattr(ns, "version", False)
        # An xdist worker gets its run from its controller over execnet (with
        # the controller's args, so it would hand off again, recursively).
        or bool(os.environ.get("PYTEST_XDIST_WORKER"))
    )


def _declined_at_startup() -> bool:
    early = sys.modules.get("pytest_fastcollect.client.early")
    state = getattr(early, "State", None)
    return bool(getattr(state, "declined", False))


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


class Follow:
    """How a caller that outlives its runs (watch mode) follows one.

    The ``pytest`` command dies of the signal that killed its run, so the shell
    sees what it would have seen; a caller passing a ``Follow`` gets the exit
    code 128 + signal instead, and reads afterwards ``interrupts`` (the
    user's Ctrl-Cs during the run) and ``signal`` (the last other signal
    forwarded to it: SIGTERM, SIGHUP, SIGQUIT).
    """

    __slots__ = ("interrupts", "signal")

    def __init__(self) -> None:
        self.interrupts = 0
        self.signal: int | None = None


class _Forwarder:
    """Forwards signals to the run; a second Ctrl-C kills it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

    def __init__(self, sock: socket.socket, follow: Follow | None = None) -> None:
        self.sock = sock
        self.interrupts = 0
        self.follow = follow
        self.saved: dict[int, object] = {}

    def __enter__(self) -> _Forwarder:
        for sig in self.SIGNALS:
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.follow is not None and signum != signal.SIGINT:
            self.follow.signal = signum
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.follow is not None:
                self.follow.interrupts = self.interrupts
            if self.interrupts > 1:
                signum = signal.SIGKILL
        try:
            send_frame(self.sock, lite.encode_signal(signum))
        except OSError:
            pass


RESPONSE_LIMIT = 1024 * 1024


def _read(sock: socket.socket) -> lite.RunResponse:
    try:
        raw, _ = recv_frame(sock, RESPONSE_LIMIT)
    except (FrameError, OSError) as exc:
        raise lite.LiteProtocolError(f"lost the connection to the daemon ({exc})") from exc
    return lite.decode_run_response(raw)


def run_through(
    sock: socket.socket,
    args: Sequence[str],
    cwd: str,
    sys_path: list[str],
    argv0: str = "pytest",
    env: dict[str, str] | None = None,
    follow: Follow | None = None,
) -> int | None:
    """Send a run over ``sock`` and follow it; None means: run it cold.

    ``env``: the run's environment (default: this process's).
    """
    payload = lite.encode_run(
        args,
        cwd,
        dict(os.environ) if env is None else env,
        _umask(),
        sys.executable,
        sys_path,
        argv0,
    )
    try:
        send_frame(sock, payload, fds=_stdio_fds())
    except OSError as exc:
        notice(f"could not reach the daemon ({exc}); running without it")
        return None
    started = False
    forwarder = _Forwarder(sock, follow)
    try:
        while True:
            try:
                response = _read(sock)
            except lite.LiteProtocolError as exc:
                if not started:
                    notice(f"{exc}; running without the daemon")
                    return None
                notice(f"the daemon went away during the run ({exc})")
                return 3
            if isinstance(response, lite.Notice):
                notice(response.message)
            elif isinstance(response, lite.Started):
                if not started:
                    forwarder.__enter__()
                    started = True
            elif isinstance(response, lite.Refused):
                notice(f"{response.reason}; running without the daemon")
                return None
            elif isinstance(response, lite.Error):
                notice(f"the daemon refused the run ({response.message}); running without it")
                return None
            else:
                started = False
                return _finished(response, forwarder, follow)
    finally:
        if started:
            forwarder.__exit__()


def _finished(response: lite.Finished, forwarder: _Forwarder, follow: Follow | None) -> int:
    """The run's exit code; a run that died of a signal makes this process die of it."""
    if response.message:
        notice(response.message)
    die_with = response.signal if follow is None else None
    if die_with == signal.SIGKILL and forwarder.interrupts > 1:
        # Killed at the user's second Ctrl-C: die of SIGINT, as a shell
        # expects of a program stopped with Ctrl-C.
        die_with = signal.SIGINT
    forwarder.__exit__()
    if die_with is not None:
        # Die the way the run died, so the shell sees the same status.
        sys.stdout.flush()
        if die_with not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(die_with, signal.SIG_DFL)
        os.kill(os.getpid(), die_with)
    return response.exit_code


def autostart(config: pytest.Config) -> None:
    """``daemon_autostart = true``: after a cold run, start a daemon for the next ones."""
    if disabled_by_env() or getattr(config.option, "no_daemon", False):
        return
    from pytest_fastcollect.paths import project_files

    try:
        files = project_files(config.rootpath)
    except FastCollectError:
        return
    if os.path.exists(files.socket) and not lock_is_free(files):
        return
    from pytest_fastcollect.client import commands

    try:
        commands.spawn_supervisor(
            config,
            commands.warm_args_from(config),
            wait=False,
            sys_path=config.stash.get(_startup_sys_path_key(), None),
        )
    except FastCollectError as exc:
        notice(f"daemon_autostart: {exc.message}")
        return
    notice("started a daemon in the background for the next runs (daemon_autostart)")
