"""Typed errors, each with a one-line user message and an exit code.

Standard library only, and no ``enum``: the client's start-up imports this
module, and ``enum`` alone costs it several milliseconds. Exit codes for the
``--daemon-*`` verbs (documented in docs/reference.md) are chosen not to
collide with pytest's own 0-5.
"""

from __future__ import annotations


class Exit:
    """The exit codes, as plain ints."""

    OK = 0
    INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED: Ctrl-C during a verb
    USAGE = 4  # pytest.ExitCode.USAGE_ERROR
    NO_DAEMON = 6
    NOT_HEALTHY = 7
    DAEMON_ERROR = 8

    @classmethod
    def codes(cls) -> dict[str, int]:
        return {name: value for name, value in vars(cls).items() if isinstance(value, int)}


class FastCollectError(Exception):
    exit_code: int = Exit.DAEMON_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(FastCollectError):
    exit_code = Exit.USAGE


class RuntimeDirError(FastCollectError):
    exit_code = Exit.DAEMON_ERROR


class NoDaemon(FastCollectError):
    exit_code = Exit.NO_DAEMON


class DaemonError(FastCollectError):
    """The daemon answered with an error, or broke the protocol."""

    exit_code = Exit.DAEMON_ERROR


class DaemonBusy(DaemonError):
    """The daemon answered ``busy`` (every slot taken) for as long as we retried."""


class DaemonConnectionError(NoDaemon, ConnectionError):
    """No daemon answers on the socket (the seed document's ``ConnectionError``)."""
