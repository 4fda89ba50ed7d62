"""Talking to a daemon: DaemonClient, socket lookup, stale-file detection.

Runs in the client. Every response is validated with the protocol models;
the public methods return plain dicts (``model_dump``) as the seed document's
examples use them (``status['metrics']['total_requests']``).
"""

from __future__ import annotations

import _socket
import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pydantic
from pydantic import TypeAdapter

from pytest_fastcollect.client.transport import (
    DEFAULT_TIMEOUT,
    connect,
    lock_is_free,
    remove_stale_files,
)
from pytest_fastcollect.errors import (
    DaemonBusy,
    DaemonConnectionError,
    DaemonError,
    FastCollectError,
)
from pytest_fastcollect.paths import ProjectFiles, project_files
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire.framing import FrameError, FrameTimeout, recv_frame, send_frame

RESPONSE_LIMIT = 256 * 1024 * 1024
# A busy daemon (every run slot taken, or a burst of connections) is asked
# again for this long before the caller hears it.
BUSY_RETRY_FOR = 5.0

__all__ = [
    "DaemonClient",
    "connect",
    "get_socket_path",
    "lock_is_free",
    "read_record",
    "remove_stale_files",
]


def get_socket_path(project_root: str | os.PathLike[str]) -> str:
    """The socket of the daemon that serves ``project_root`` (its pytest rootdir)."""
    return str(project_files(project_root).socket)


def read_response(
    sock: _socket.socket,
    timeout: float | None = None,
    adapter: TypeAdapter[Any] | None = None,
    hint: str = "",
) -> Any:
    """The next response; ``hint`` says how to wait longer, for the timeout message."""
    try:
        raw, _ = recv_frame(sock, RESPONSE_LIMIT, timeout=timeout)
    except FrameTimeout as exc:
        # This client gave up waiting; the daemon may still be working.
        raise DaemonError(
            f"no answer from the daemon within {timeout:g}s; {hint or 'it may be busy'}"
        ) from exc
    except FrameError as exc:
        raise DaemonError(f"the daemon closed the connection ({exc})") from exc
    except OSError as exc:
        raise DaemonError(f"lost the connection to the daemon ({exc})") from exc
    try:
        return (adapter or p.response_adapter()).validate_json(raw)
    except pydantic.ValidationError as exc:
        raise DaemonError(
            "the daemon sent a response this client does not understand (a different version?); "
            "restart it with: pytest --daemon-restart"
        ) from exc


class DaemonClient:
    """A connection factory for one daemon's socket; each call is one request."""

    def __init__(
        self, socket_path: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout

    def request(self, req: pydantic.BaseModel, timeout: float | None = None) -> p.Response:
        """Send one request and return the validated response model.

        Raises ``ConnectionError`` (``DaemonConnectionError``) when no daemon
        answers and ``DaemonError`` when the daemon answers with an error.
        """
        t = self.timeout if timeout is None else timeout
        hint = f"DaemonClient({self.socket_path!r}, timeout=SECONDS) waits longer"
        return self._ask(req, t, hint)

    def _ask(self, req: pydantic.BaseModel, timeout: float | None, hint: str) -> p.Response:
        """One request, asked again for a moment while the daemon answers ``busy``;
        ``timeout`` None waits as long as the daemon works."""
        deadline = time.monotonic() + min(BUSY_RETRY_FOR, timeout or BUSY_RETRY_FOR)
        delay = 0.01
        while True:
            response = self._exchange(req, timeout, hint)
            if not isinstance(response, p.ErrorResponse):
                return response
            if response.code is not p.ErrorCode.BUSY:
                raise DaemonError(f"{response.code.value}: {response.message}")
            if time.monotonic() + delay > deadline:
                raise DaemonBusy(f"{response.message}; try again in a moment")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _exchange(self, req: pydantic.BaseModel, timeout: float | None, hint: str) -> p.Response:
        with contextlib.closing(
            connect(self.socket_path, self.timeout if timeout is None else timeout)
        ) as sock:
            sock.settimeout(timeout)  # connecting is bounded; the answer as asked
            try:
                send_frame(sock, p.dump(req))
            except OSError as exc:
                raise DaemonConnectionError(
                    f"Cannot send to daemon at {self.socket_path}: {exc}"
                ) from exc
            response: p.Response = read_response(sock, timeout, hint=hint)
        return response

    def is_daemon_running(self) -> bool:
        """True when a daemon answers a status request on this socket."""
        try:
            self.request(p.StatusRequest(), timeout=min(self.timeout, 5.0))
        except FastCollectError:
            return False
        return True

    def get_status(self) -> dict[str, Any]:
        """StatusResponse as a dict: pid, state, uptime, root, socket_path, log_path,
        versions, generation, warm_pid, cached_modules, metrics{total_requests,
        successful_requests, failed_requests, error_rate, ...}, warmup, reload,
        processes[...] and limits."""
        return self.request(p.StatusRequest(full=True)).model_dump(mode="json")

    def get_health(self) -> dict[str, Any]:
        """HealthResponse as a dict: status (healthy/degraded/unhealthy) and
        checks{name: {ok, value, detail, severity}}."""
        return self.request(p.HealthRequest()).model_dump(mode="json")

    def collect(
        self,
        root: str | os.PathLike[str],
        filters: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Collect like ``pytest --collect-only`` would, in the warm process.

        ``filters`` accepts ``-k``, ``-m`` and ``paths``. Returns node_ids,
        count, errors[{nodeid, message}], exit_code, collection_time (seconds)
        and generation. ``timeout``: seconds to wait for the answer; None (the
        default) waits as long as the collection takes.
        """
        try:
            parsed = p.CollectFilters.model_validate(filters or {})
        except pydantic.ValidationError as exc:
            raise ValueError(
                f"unsupported collect filters {filters!r}: use '-k', '-m' and 'paths'"
            ) from exc
        req = p.CollectRequest(root=os.path.abspath(os.fspath(root)), filters=parsed)
        hint = (
            "the collection may still be running; collect(..., timeout=None) waits "
            "as long as it takes"
        )
        return self._ask(req, timeout, hint).model_dump(mode="json")

    def affected(
        self,
        paths: Iterable[str | os.PathLike[str]],
        test_files: Iterable[str | os.PathLike[str]] | None = None,
        collect: bool = False,
    ) -> dict[str, Any]:
        """Which test files changes to ``paths`` can affect, as watch mode selects them.

        Returns generation, everything (True when the import graph cannot
        tell, with reasons), test_files (absolute paths) and node_ids
        (file -> node ids, filled when ``collect`` is true). ``test_files``:
        the test files to choose from (default: every one the daemon knows).
        Relative paths are taken from the current directory.
        """
        req = p.AffectedRequest(
            paths=[os.path.abspath(os.fspath(x)) for x in paths],
            test_files=None
            if test_files is None
            else [os.path.abspath(os.fspath(x)) for x in test_files],
            collect=collect,
        )
        return self.request(req, timeout=None).model_dump(mode="json")

    def reload(self, timeout: float | None = None) -> dict[str, Any]:
        """Replace the warm process with a freshly warmed one; returns generation and
        duration_ms. ``timeout``: None (the default) waits as long as the warm-up takes."""
        hint = "the warm-up may still be running; reload(timeout=None) waits as long as it takes"
        return self._ask(p.ReloadRequest(), timeout, hint).model_dump(mode="json")

    def stop(self) -> dict[str, Any]:
        """Ask the daemon to stop; returns its pid. The daemon removes its files as it exits."""
        return self.request(p.StopRequest()).model_dump(mode="json")


def read_record(files: ProjectFiles) -> p.DaemonRecord | None:
    try:
        return p.DaemonRecord.model_validate_json(Path(files.state).read_bytes())
    except (OSError, pydantic.ValidationError):
        return None
