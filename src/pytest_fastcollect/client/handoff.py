"""Hand an ordinary pytest run to the project's daemon, or decide to run cold.

Runs in the client before any conftest is imported. Cheap when there is no
daemon (one stat of the socket path). Any doubt means a cold run with a
one-line notice on stderr; never a hang, never a wrong result.
"""

from __future__ import annotations

import os
import sys
import time

from pytest_fastcollect import settings
from pytest_fastcollect.client.transport import connect, lock_is_free, remove_stale_files
from pytest_fastcollect.errors import DaemonConnectionError, FastCollectError, RuntimeDirError
from pytest_fastcollect.settings import disabled_by_env
from pytest_fastcollect.wire import lite
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

# The thin client imports this module: nothing here may import typing,
# pathlib, dataclasses, functools, enum or socket at run time (see wire/lite.py
# and wire/cjson.py): ``_signal`` is ``signal`` without its enums.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    import argparse
    import signal
    from collections.abc import Sequence
    from types import FrameType

    import pytest

    from pytest_fastcollect.paths import ProjectFiles
else:
    import _signal as signal


def notice(message: str) -> None:
    if sys.stderr is None:  # started with stderr closed, as a cold run would be
        return
    sys.stderr.write(f"pytest-fastcollect: {message}\n")
    sys.stderr.flush()


_STASH_KEYS: list[pytest.StashKey[list[str]]] = []


def _startup_sys_path_key() -> pytest.StashKey[list[str]]:
    """Where the config keeps sys.path from before conftests and test modules changed
    it (prepend import mode inserts test dirs): what an autostarted daemon mirrors.
    Made on first use: the thin client imports this module and never pytest."""
    if not _STASH_KEYS:
        from _pytest.stash import StashKey

        _STASH_KEYS.append(StashKey[list[str]]())
    return _STASH_KEYS[0]


def try_handoff(
    config: pytest.Config, ns: argparse.Namespace | None = None, args: Sequence[str] = ()
) -> int | None:
    """The run's exit code if the daemon ran it, or None to run cold here.

    ``ns`` and ``args``: the options as parsed so far and the full argument
    list, when plugins loaded after this one have not added their options yet.
    """
    from pytest_fastcollect import fingerprint
    from pytest_fastcollect.paths import project_files

    # Before pytest inserts its ini pythonpath and test directories: the
    # supervisor compares it with the warm process's, and an autostarted
    # daemon mirrors its first entry.
    startup_sys_path = fingerprint.interpreter_sys_path(fingerprint.ini_pythonpath(config))
    config.stash[_startup_sys_path_key()] = startup_sys_path
    if ns is None:
        ns = config.known_args_namespace
    if _stays_here(ns):
        return None
    try:
        files = project_files(config.rootpath)
    except FastCollectError:
        return None
    if not os.path.exists(files.socket) and not _socket_coming_back(files):
        return None
    # Bad daemon_* values fail the run as pytest's own bad ini values do
    # (UsageError: one line, exit 4), before the daemon could start it.
    settings.check_all(config)
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
        _not_answering(files)
        return None
    try:
        return run_through(
            sock,
            config.invocation_params.args,
            str(config.invocation_params.dir),
            startup_sys_path,
            sys.argv[0] if sys.argv else "pytest",
        )
    finally:
        sock.close()


def _not_answering(files: ProjectFiles) -> None:
    """The socket is there but refuses connections: say why, clean up if stale."""
    if os.path.isdir(files.socket):
        notice(
            f"{files.socket} is a directory, not a daemon's socket; running without the "
            "daemon (remove it to use one)"
        )
    elif lock_is_free(files):
        remove_stale_files(files)
        notice(f"removed stale daemon files for {files.root}; running without the daemon")
    else:
        notice("the daemon is not answering; running without it (pytest --daemon-stop cleans up)")


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


# A live daemon makes a removed socket again within its self-check interval.
SOCKET_BACK_WITHIN = 1.5


def _socket_coming_back(files: ProjectFiles) -> bool:
    """No socket: True if a live daemon (its lock held) has just made it again."""
    if not os.path.exists(files.lock) or lock_is_free(files):
        return False
    deadline = time.monotonic() + SOCKET_BACK_WITHIN
    while time.monotonic() < deadline:
        if os.path.exists(files.socket):
            return True
        time.sleep(0.01)
    notice(
        "the daemon holds its lock but has no socket; running without it "
        "(pytest --daemon-stop stops it)"
    )
    return False


def _stdio_fds() -> tuple[tuple[int, int, int], list[int]]:
    """The descriptors to hand the run as its stdin, stdout and stderr, and those of
    them this process was started without.

    A stream closed at start-up is ``None`` in ``sys.__stdin__`` and the like (the
    number may hold something else by now: never send that). ``/dev/null`` travels
    in its place and the run closes it again, so it starts as a cold one would.
    """
    fds = []
    closed = []
    for fd, stream in enumerate((sys.__stdin__, sys.__stdout__, sys.__stderr__)):
        usable = stream is not None
        if usable:
            try:
                os.fstat(fd)
            except OSError:
                usable = False
        if usable:
            fds.append(fd)
        else:
            closed.append(fd)
            fds.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
    return (fds[0], fds[1], fds[2]), closed


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

    def __init__(self, sock: _socket.socket, follow: Follow | None = None) -> None:
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


def _read(sock: _socket.socket) -> lite.RunResponse:
    try:
        raw, _ = recv_frame(sock, RESPONSE_LIMIT)
    except (FrameError, OSError) as exc:
        raise lite.LiteProtocolError(f"lost the connection to the daemon ({exc})") from exc
    return lite.decode_run_response(raw)


def run_through(
    sock: _socket.socket,
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
    if not _send_run(sock, args, cwd, sys_path, argv0, env):
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
                notice(_refusal(response))
                return None
            else:
                started = False
                return _finished(response, forwarder, follow)
    finally:
        if started:
            forwarder.__exit__()


def _send_run(
    sock: _socket.socket,
    args: Sequence[str],
    cwd: str,
    sys_path: list[str],
    argv0: str,
    env: dict[str, str] | None,
) -> bool:
    stdio, closed = _stdio_fds()
    run_env = dict(os.environ) if env is None else env
    payload = lite.encode_run(args, cwd, run_env, _umask(), sys.executable, sys_path, argv0, closed)
    try:
        send_frame(sock, payload, fds=stdio)
    except OSError as exc:
        notice(f"could not reach the daemon ({exc}); running without it")
        return False
    finally:
        for fd in closed:
            os.close(stdio[fd])
    return True


def _refusal(error: lite.Error) -> str:
    if error.code == "busy":
        # Every run slot is taken: a cold run now beats waiting for one.
        return f"{error.message}; running without it"
    return f"the daemon refused the run ({error.message}); running without it"


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
        if sys.stdout is not None:
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
    from pytest_fastcollect.client import starting

    try:
        starting.spawn_supervisor(
            config,
            starting.warm_args_from(config),
            wait=False,
            sys_path=config.stash.get(_startup_sys_path_key(), None),
        )
    except FastCollectError as exc:
        notice(f"daemon_autostart: {exc.message}")
        return
    notice("started a daemon in the background for the next runs (daemon_autostart)")
