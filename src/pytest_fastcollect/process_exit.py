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


def exit_now(code: int, die_of: int | None = None) -> NoReturn:
    """Wait for threads, run atexit handlers, flush, and leave with ``code`` (or die of
    the signal ``die_of``, as an interpreter does after an unhandled KeyboardInterrupt)."""
    threading = sys.modules.get("threading")  # no threads without it
    try:
        if threading is not None:
            threading._shutdown()
    except BaseException as exc:
        # Ctrl-C while a thread that never ends is waited for: the interpreter
        # reports it this way, and exits with the code it had.
        _report_ignored(exc, threading)
    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    if die_of is not None:
        import signal

        signal.signal(die_of, signal.SIG_DFL)
        os.kill(os.getpid(), die_of)
    os._exit(code)


def _report_ignored(exc: BaseException, where: object) -> None:
    """What CPython's default ``sys.unraisablehook`` prints."""
    try:
        import traceback

        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next  # the interpreter calls threading._shutdown from C
        lines = traceback.format_exception(type(exc), exc, tb)
        # The hook writes "Type: message" even when the message is empty.
        last = f"{type(exc).__name__}: {exc}\n"
        sys.stderr.write(f"Exception ignored in: {where!r}\n{''.join(lines[:-1])}{last}")
        sys.stderr.flush()
    except BaseException:
        pass
