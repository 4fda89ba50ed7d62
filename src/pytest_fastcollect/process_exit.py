"""Leave a process whose work is done without interpreter finalization.

A cold interpreter waits for non-daemon threads, runs atexit handlers and
flushes its streams, then tears every module down. The last step does
nothing anyone can observe and costs tens of milliseconds once pytest and
its plugins are imported, so the hand-off client and the run worker skip it.
"""

from __future__ import annotations

import atexit
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    threading = sys.modules.get("threading")  # no threads without it
    try:
        if threading is not None:
            threading._shutdown()
    except BaseException:
        pass
    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)
