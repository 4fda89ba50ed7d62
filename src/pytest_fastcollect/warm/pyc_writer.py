"""Write pytest's rewritten bytecode of an edited test module before the run needs it.

After a save to a test module (or a conftest), the reload purges it from the
layer and the next run imports it through pytest's assertion rewriter. Its
cached pyc no longer matches the source, so that run parses, rewrites and
compiles it: 20-40 ms of a first run after a save, on a 4 KB test file, that
a steady run does not pay.

So after such a reload, once the next standby is ready and the layer runs
nothing (serving.py: a run already waiting is quicker rewriting the file
itself than sharing a core with a writer), the layer forks one more child.
It starts the last run's command exactly as the prepared standby does
(``standby_run.py``: the same order, placeholder stdio), and at the same
pause, with the command's own config and assertion-rewrite hook, it writes
the pyc of each purged file that hook rewrites, with pytest's own functions
(``_rewrite_test``, ``_write_pyc``: the bytes pytest writes, written the way
pytest writes them, to a temporary name and renamed). Then it exits. It
imports nothing of the project and runs no conftest; a run that comes later
reads the pyc as it would read one left by an earlier run.

It writes nothing when the run would not: bytecode writing off
(``PYTHONDONTWRITEBYTECODE``), assertion rewriting off (``--assert=plain``,
``-O``), a file the hook would not rewrite by the rules it knows before the
session starts, a pyc that is already current, or a rewrite that warned (the
run must rewrite it itself and show the warning, as cold pytest does) or
failed. Anything unexpected (a pytest whose private functions differ) means
nothing is written, and the run rewrites the file as before.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from pytest_fastcollect import processes
from pytest_fastcollect.warm import standby_run, worker
from pytest_fastcollect.wire import warm as wm

TITLE_ROLE = "pyc writer"


def write_pycs(config: Any, files: list[tuple[str, str]]) -> list[str]:
    """Write the rewritten pyc of each ``(module name, file)`` the run would write;
    the files written."""
    try:
        from _pytest.assertion import rewrite as rw

        state = config.stash.get(rw.assertstate_key, None)
        hook = getattr(state, "hook", None)
    except Exception:
        return []
    if hook is None or sys.dont_write_bytecode:
        return []
    written = []
    for name, file in files:
        try:
            if _write_one(rw, config, state, hook, name, Path(file)):
                written.append(file)
        except Exception:
            continue
    return written


def _write_one(rw: Any, config: Any, state: Any, hook: Any, name: str, path: Path) -> bool:
    # The session is not made yet: what the hook decides now it decides in the run too.
    if not hook._should_rewrite(name, str(path), state):
        return False
    cache_dir = rw.get_cache_dir(path)
    if not rw.try_makedirs(cache_dir):
        return False
    pyc = cache_dir / (path.name[:-3] + rw.PYC_TAIL)
    if rw._read_pyc(path, pyc) is not None:
        return False  # current already
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source_key, code = rw._rewrite_test(path, config)
    if caught:
        return False  # the run's own rewrite shows these warnings
    return bool(rw._write_pyc(state, code, source_key, pyc))


class PycWriter:
    """The ``worker.Handoff`` of the writer: its run is never taken."""

    def __init__(self, files: list[tuple[str, str]]) -> None:
        self.files = files
        self.taken = False
        self.learn_file: str | None = None
        self.warm_argv = list(sys.argv)  # the layer's: it names the project

    def start(self, order: wm.ForkOrder) -> list[int]:
        argv0 = order.argv0 or "pytest"
        title = processes.worker_title(self.warm_argv, argv0, order.args, TITLE_ROLE)
        processes.set_title(title)
        null = os.open(os.devnull, os.O_RDWR)
        return [null, os.dup(null), os.dup(null)]

    def pause(self, early_config: Any) -> None:
        try:
            write_pycs(early_config, self.files)
        finally:
            os._exit(0)

    def not_taken(self) -> NoReturn:
        os._exit(0)


def spawn(
    order: wm.ForkOrder,
    files: list[tuple[str, str]],
    close: list[int],
    warm_options: dict[str, str] | None,
) -> int:
    """Fork the writer for ``files`` under the last run's ``order``; its pid."""
    from pytest_fastcollect.warm.serving import fork_accounted

    pid = fork_accounted()
    if pid == 0:
        try:
            standby_run.die_with_parent(signal.SIGKILL)
            worker.run_child(order, [], close, warm_options, None, None, handoff=PycWriter(files))
        finally:
            os._exit(0)
    return pid
