"""The supervisor's periodic look at itself: its files, its record, its warm process.

Runs in the supervisor's main thread, which otherwise only waits for the
stop event, every ``SELF_CHECK_INTERVAL`` (a few stats and, for the warm
process, one read of /proc: cheap). What it finds and does:

- the runtime directory deleted, or the lock file gone or replaced: another
  supervisor could now take the project, so this one stops (and removes
  only what is provably its own, ``runtime.py``);
- the socket file removed or replaced (the seed document's "remove the stale
  socket" step done to a live daemon): a new socket is bound at the same
  path, so the verbs and the runs find the daemon again;
- the record removed, or naming another warm process than the current one:
  written again;
- the warm process stopped answering (``lifecycle.check_responsive``):
  replaced, and killed if it still does not answer a while later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pytest_fastcollect.supervisor.core import Supervisor
from pytest_fastcollect.supervisor.runtime import Health, Runtime
from pytest_fastcollect.supervisor.server import Server

log = logging.getLogger("pytest_fastcollect.daemon")

SELF_CHECK_INTERVAL = 0.5


class SelfCheck:
    def __init__(
        self,
        runtime: Runtime,
        sup: Supervisor,
        server: Server,
        write_record: Callable[[int | None], None],
        backlog: int,
    ) -> None:
        self.runtime = runtime
        self.sup = sup
        self.server = server
        self._write_record = write_record
        self.backlog = backlog
        self._lock = threading.Lock()
        self._written_warm: int | None = None

    def record(self, warm_pid: int | None) -> None:
        """Write the record naming ``warm_pid`` (called on every adoption, and here)."""
        with self._lock:
            try:
                self._write_record(warm_pid)
            except OSError as exc:
                log.warning("Cannot write the daemon record: %s", exc)
                return
            self._written_warm = warm_pid

    def _current_warm(self) -> int | None:
        wp = self.sup.slot.current
        return wp.pid if wp is not None and wp.alive() else None

    def run_once(self) -> bool:
        """One look; False when the daemon must stop."""
        health = self.runtime.check()
        files = self.runtime.files
        if health is Health.LOST:
            log.warning(
                "The runtime directory %s or the lock %s is gone or not this daemon's; "
                "stopping (another daemon may now serve the project)",
                files.directory,
                files.lock,
            )
            return False
        if health is Health.SOCKET_GONE:
            try:
                listener = self.runtime.bind(self.backlog)
            except OSError as exc:
                log.error(
                    "The socket %s was removed and cannot be made again: %s", files.socket, exc
                )
                return False
            self.server.replace_listener(listener)
            log.warning("The socket %s was removed; listening on a new one", files.socket)
        self.sup.check_warm()
        warm = self._current_warm()
        if warm != self._written_warm or not self.runtime.record_is_ours():
            self.record(warm)
        return True
