"""Public API for scripts: talk to a project's daemon.

PYTEST_DONT_REWRITE. ``DaemonClient(socket_path)`` with ``is_daemon_running()``,
``get_status()``, ``get_health()``, ``collect(root, filters=...)``,
``affected(paths)``, ``reload()`` and ``stop()``; ``get_socket_path(project_root)``;
``stop_daemon(socket_path)``. See docs/api.md for what each returns.
"""

from __future__ import annotations

import logging
import os

from pytest_fastcollect.client.connect import DaemonClient, get_socket_path
from pytest_fastcollect.errors import DaemonConnectionError, DaemonError

__all__ = ["DaemonClient", "DaemonConnectionError", "DaemonError", "get_socket_path", "stop_daemon"]

log = logging.getLogger(__name__)


def stop_daemon(socket_path: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """Stop the daemon on ``socket_path`` and wait until it has exited.

    Returns True if a daemon was stopped, False if none answered.
    """
    import psutil

    try:
        pid = int(DaemonClient(socket_path).stop()["pid"])
    except (DaemonConnectionError, DaemonError) as exc:
        log.debug("stop_daemon: %s", exc)
        return False
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired as exc:
        raise DaemonError(
            f"the daemon (pid {pid}) did not exit within {timeout:g}s; "
            "stop it with: pytest --daemon-stop"
        ) from exc
    return True
