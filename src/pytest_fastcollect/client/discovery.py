"""Finding a daemon whose files are not what they should be, for the verbs.

Runs in the client (the verbs; never on the run hand-off path, as it imports
psutil). Files can be removed under a live daemon; the supervisor notices
within half a second (``supervisor/selfcheck.py``): it makes a removed
socket again, and stops when its runtime directory or lock is gone. The
verbs bridge that half second, so that they agree with each other:

- the lock is held but the socket is missing: wait a moment for the new one;
- no lock, yet a supervisor of this project runs (found by its command
  line, ``processes.py``): it is on its way out, or it cannot see that its
  files are gone; stop stops it (verified by command line). A start leaves
  that check to the new supervisor, which holds the lock by then and so
  tells an orphan from a concurrent start.
"""

from __future__ import annotations

import os
import time

from pytest_fastcollect import processes
from pytest_fastcollect.client.transport import lock_is_free
from pytest_fastcollect.paths import ProjectFiles

# Twice the supervisor's self-check interval, and then some.
SOCKET_WAIT = 2.0
POLL = 0.02


def wait_for_socket(files: ProjectFiles, timeout: float = SOCKET_WAIT) -> bool:
    """True when a daemon holds the lock and its socket is (back) in place."""
    deadline = time.monotonic() + timeout
    while not lock_is_free(files):
        if os.path.exists(files.socket):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return False


def stop_orphans(files: ProjectFiles) -> list[int]:
    """Stop this project's supervisors that run without their files; their pids."""
    import psutil

    stopped = []
    for proc in processes.find_supervisors(str(files.root), str(files.directory)):
        pid = proc.pid
        try:
            if not processes.is_supervisor_of(proc.cmdline(), str(files.root)):
                continue
            processes.terminate(proc)
        except psutil.Error:
            continue
        stopped.append(pid)
    return stopped
