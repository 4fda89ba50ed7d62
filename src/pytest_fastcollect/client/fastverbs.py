"""``--daemon-status`` and ``--daemon-health`` without pydantic: quick, and usable before pytest.

Runs in the client. These two verbs are asked for often (a prompt, an
editor's status bar, a script polling for readiness), so they take the
shortest path: connect, send a hand-encoded request, decode the answer with
``wire/lite_verbs.py``, render it with ``client/ui.py``. Nothing here imports
pydantic or pytest; ``status`` and ``health`` take the project's files, so a
caller that has not started pytest (the start-up hook) can use them too.
``--daemon-json`` asks the daemon for every figure, PSS included; the text
form leaves out what costs the daemon time.
"""

from __future__ import annotations

import os
import sys

from pytest_fastcollect.client import ui
from pytest_fastcollect.client.transport import DEFAULT_TIMEOUT, connect
from pytest_fastcollect.errors import (
    DaemonConnectionError,
    DaemonError,
    Exit,
    FastCollectError,
    NoDaemon,
)
from pytest_fastcollect.wire import lite_verbs
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any

    import pytest

    from pytest_fastcollect.paths import ProjectFiles

RESPONSE_LIMIT = 64 * 1024 * 1024
HEALTHY = "healthy"


def ask(files: ProjectFiles, command: str, **fields: Any) -> tuple[Any, dict[str, Any]]:
    """One request to the project's daemon: its answer as a record and as JSON data."""
    try:
        sock = connect(files.socket, DEFAULT_TIMEOUT)
    except DaemonConnectionError:
        sock = _reconnect(files)
    try:
        send_frame(sock, lite_verbs.encode_request(command, **fields))
        raw, _ = recv_frame(sock, RESPONSE_LIMIT, timeout=DEFAULT_TIMEOUT)
    except (FrameError, OSError) as exc:
        raise DaemonError(f"lost the connection to the daemon ({exc})") from exc
    finally:
        sock.close()
    try:
        record, data = lite_verbs.decode_response(raw, command)
    except lite_verbs.LiteVerbError as exc:
        raise DaemonError(
            "the daemon sent a response this client does not understand (a different version?); "
            "restart it with: pytest --daemon-restart"
        ) from exc
    if data["kind"] == "error":
        raise DaemonError(f"{data['code']}: {data['message']}")
    return record, data


def _reconnect(files: ProjectFiles) -> _socket.socket:
    """A live daemon makes a removed socket again within a second: wait for it, as the other verbs do."""
    from pytest_fastcollect.client import discovery

    if os.path.exists(files.socket) or not discovery.wait_for_socket(files):
        raise _no_daemon(files)
    try:
        return connect(files.socket, DEFAULT_TIMEOUT)
    except DaemonConnectionError:
        raise _no_daemon(files) from None


def _no_daemon(files: ProjectFiles) -> NoDaemon:
    from pytest_fastcollect.client.transport import lock_is_free, remove_stale_files

    path = files.socket
    if os.path.isdir(path) and not os.path.islink(path):
        # Not ours to remove: say what blocks the path (client/commands.py says the same).
        return NoDaemon(
            f"no daemon running for {files.root}; {path} is a directory, not a daemon's "
            f"socket; remove it (rmdir {path})"
        )
    removed = remove_stale_files(files) if lock_is_free(files) else []
    extra = " (removed its stale files)" if removed else ""
    return NoDaemon(
        f"no daemon running for {files.root}{extra}; start one with: pytest --daemon-start"
    )


def status(files: ProjectFiles, as_json: bool) -> int:
    record, data = ask(files, "status", full=as_json)
    if as_json:
        import json  # here only: the text answer is spared its import (wire/cjson.py)

        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(ui.render_status(record))
    return int(Exit.OK)


def health(files: ProjectFiles, as_json: bool) -> int:
    record, data = ask(files, "health")
    if as_json:
        import json

        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(ui.render_health(record))
    return int(Exit.OK) if data["status"] == HEALTHY else int(Exit.NOT_HEALTHY)


def run(name: str, config: pytest.Config) -> int:
    """The verb ``name`` for the ``pytest`` command, once pytest has found the rootdir.

    Quick only when a daemon holds the rootdir's lock. Otherwise the full verb
    (client/commands.py) looks for the daemon started from this directory and
    says what blocks the socket path, at the cost of importing pydantic.
    """
    if not _rootdir_daemon_lives(str(config.rootpath)):
        from pytest_fastcollect.client import commands

        return commands.run_verb(getattr(commands, name), config)
    as_json = bool(getattr(config.known_args_namespace, "daemon_json", False))
    return serve(name, str(config.rootpath), as_json)


def _rootdir_daemon_lives(rootdir: str) -> bool:
    from pytest_fastcollect.client.transport import lock_is_free
    from pytest_fastcollect.paths import project_files

    try:
        return not lock_is_free(project_files(rootdir))
    except (FastCollectError, OSError):
        return False  # the full verb says what is wrong, in one line


def serve(name: str, rootdir: str, as_json: bool) -> int:
    """The verb ``name`` for the project at ``rootdir``; expected failures become one line.

    The plugin calls it through ``run``, the start-up hook (client/early.py)
    directly: both paths print the same and exit with the same code.
    """
    from pytest_fastcollect.paths import project_files

    try:
        files = project_files(rootdir)
        return status(files, as_json) if name == "status" else health(files, as_json)
    except FastCollectError as exc:
        sys.stderr.write(f"pytest-fastcollect: error: {exc.message}\n")
        return int(exc.exit_code)
