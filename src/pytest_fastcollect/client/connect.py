"""Talking to a daemon: DaemonClient, socket lookup, stale-file detection.

Runs in the client. Every response is validated with the protocol models;
the public methods return plain dicts (``model_dump``) as the seed document's
examples use them (``status['metrics']['total_requests']``).
"""

from __future__ import annotations

import os
import socket
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
from pytest_fastcollect.errors import DaemonConnectionError, DaemonError, FastCollectError
from pytest_fastcollect.paths import ProjectFiles, project_files
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

RESPONSE_LIMIT = 256 * 1024 * 1024

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
    sock: socket.socket, timeout: float | None = None, adapter: TypeAdapter[Any] | None = None
) -> Any:
    try:
        raw, _ = recv_frame(sock, RESPONSE_LIMIT, timeout=timeout)
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
        with connect(self.socket_path, t) as sock:
            try:
                send_frame(sock, p.dump(req))
            except OSError as exc:
                raise DaemonConnectionError(
                    f"Cannot send to daemon at {self.socket_path}: {exc}"
                ) from exc
            response: p.Response = read_response(sock, t)
        if isinstance(response, p.ErrorResponse):
            raise DaemonError(f"{response.code.value}: {response.message}")
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
        return self.request(p.StatusRequest()).model_dump(mode="json")

    def get_health(self) -> dict[str, Any]:
        """HealthResponse as a dict: status (healthy/degraded/unhealthy) and
        checks{name: {ok, value, detail, severity}}."""
        return self.request(p.HealthRequest()).model_dump(mode="json")

    def collect(
        self, root: str | os.PathLike[str], filters: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Collect like ``pytest --collect-only`` would, in the warm process.

        ``filters`` accepts ``-k``, ``-m`` and ``paths``. Returns node_ids,
        count, errors[{nodeid, message}], exit_code, collection_time (seconds)
        and generation.
        """
        try:
            parsed = p.CollectFilters.model_validate(filters or {})
        except pydantic.ValidationError as exc:
            raise ValueError(
                f"unsupported collect filters {filters!r}: use '-k', '-m' and 'paths'"
            ) from exc
        return self.request(
            p.CollectRequest(root=os.path.abspath(os.fspath(root)), filters=parsed), timeout=None
        ).model_dump(mode="json")

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

    def reload(self) -> dict[str, Any]:
        """Replace the warm process with a freshly warmed one; returns generation and duration_ms."""
        return self.request(p.ReloadRequest(), timeout=None).model_dump(mode="json")

    def stop(self) -> dict[str, Any]:
        """Ask the daemon to stop; returns its pid. The daemon removes its files as it exits."""
        return self.request(p.StopRequest()).model_dump(mode="json")


def read_record(files: ProjectFiles) -> p.DaemonRecord | None:
    try:
        return p.DaemonRecord.model_validate_json(Path(files.state).read_bytes())
    except (OSError, pydantic.ValidationError):
        return None
