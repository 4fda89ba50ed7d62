"""What a forked run does: become the client's pytest process, run, exit.

Runs only in a child forked from the warm process. Everything here happens
after fork() and before pytest.main(): take the client's stdio, environment,
cwd and umask, reset what the warm process set up for itself, and start a
fresh pytest session (never a reused Config or Session).
"""

from __future__ import annotations

import importlib
import io
import linecache
import os
import random
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from pytest_fastcollect import fingerprint, process_exit, processes, role
from pytest_fastcollect.settings import plugin_disabled
from pytest_fastcollect.warm import (
    collect_reads,
    envtrack,
    learn,
    metadata_cache,
    timeline,
    xdist_fork,
)
from pytest_fastcollect.wire import warm as wm


def _default_errors(fd: int) -> str:
    # Python picks these at start-up from the locale (surrogateescape under
    # C.UTF-8 and the C locale, else strict); the warm process did the same.
    if fd == 2:
        return "backslashreplace"
    original = sys.__stdin__ if fd == 0 else sys.__stdout__
    return getattr(original, "errors", None) or "strict"


def _stream(fd: int, mode: str, env: dict[str, str]) -> io.TextIOWrapper:
    """A stdio stream made the way CPython makes it at start-up (create_stdio)."""
    encoding = None
    errors = None
    spec = env.get("PYTHONIOENCODING")
    if spec:
        enc, _, err = spec.partition(":")
        encoding = enc or None
        errors = err or None
    buffered_stdio = not env.get("PYTHONUNBUFFERED")
    write = mode != "r"
    raw = io.FileIO(fd, "wb" if write else "rb", closefd=False)
    raw.name = ("<stdin>", "<stdout>", "<stderr>")[fd]
    tty = raw.isatty()
    # Unbuffered (-u) output goes straight to the raw file; stdin is always buffered.
    buffer: Any = raw
    if write and buffered_stdio:
        buffer = io.BufferedWriter(raw)
    elif not write:
        buffer = io.BufferedReader(raw)
    wrapper = io.TextIOWrapper(
        buffer,
        encoding=encoding or (sys.__stdout__.encoding if sys.__stdout__ else "utf-8"),
        errors=errors or _default_errors(fd),
        newline="\n",  # no newline translation on POSIX, on input either
        line_buffering=buffered_stdio and (tty or fd == 2),
        write_through=not buffered_stdio,
    )
    wrapper.mode = "w" if write else "r"  # type: ignore[misc]
    return wrapper


def _become_client(order: wm.ForkOrder, fds: list[int], close: list[int]) -> None:
    become_process(order, close)
    take_stdio(order, fds)
    fresh_state()


def become_process(order: wm.ForkOrder, close: list[int]) -> None:
    """The client's process: signals, group, environment, cwd, umask, ``sys.argv``."""
    for fd in close:
        try:
            os.close(fd)
        except OSError:
            pass
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    # A process group of its own: the client's Ctrl-C reaches the run and
    # whatever the tests spawned, and never the warm process.
    os.setpgid(0, 0)

    envtrack.uninstall()
    os.environ.clear()
    os.environ.update(order.env)
    os.chdir(order.cwd)
    os.umask(order.umask)
    # `ps` shows a run worker of this project (the warm process's title says which).
    processes.set_title(processes.worker_title(sys.argv, order.argv0 or "pytest", order.args))
    sys.argv = [order.argv0 or "pytest", *order.args]


def take_stdio(order: wm.ForkOrder, fds: list[int], closed_already: bool = False) -> None:
    """The client's stdin, stdout and stderr as fds 0-2 and as ``sys`` streams.

    ``closed_already``: the streams the client lacks were closed before (a
    standby prepared for this command closed them when it started): their
    numbers are left as they are, whatever the run opened there since."""
    closed = set(order.closed_fds)
    for target, fd in enumerate(fds[:3]):
        if fd != target and not (closed_already and target in closed):
            os.dup2(fd, target)
    for fd in set(fds[:3]):
        if fd > 2:
            os.close(fd)
    # A stream the client was started without is closed here too, and is None,
    # as CPython makes it at start-up (the number is then free, as in a cold run).
    if not closed_already:
        for fd in closed:
            os.close(fd)
    env = order.env
    sys.stdin = None if 0 in closed else _stream(0, "r", env)
    sys.stdout = None if 1 in closed else _stream(1, "w", env)
    sys.stderr = None if 2 in closed else _stream(2, "w", env)
    # faulthandler and pytest's capture fall back to the dunder streams.
    setattr(sys, "__stdin__", sys.stdin)  # noqa: B010
    setattr(sys, "__stdout__", sys.stdout)  # noqa: B010
    setattr(sys, "__stderr__", sys.stderr)  # noqa: B010


def fresh_state() -> None:
    # A cold process starts with fresh random state; so does each run.
    random.seed()
    linecache.clearcache()
    importlib.invalidate_caches()


def _console_entry() -> Callable[[], int]:
    """What the ``pytest`` script calls: it names the program from sys.argv[0]
    in usage errors (not "pytest.main()") and handles a closed stdout."""
    from _pytest import config as pytest_config

    entry: Callable[[], int] | None = getattr(pytest_config, "_console_main", None)
    return entry if entry is not None else pytest_config.console_main


def _finish(code: int, die_of: int | None = None) -> None:
    # Threads, atexit handlers and streams, in a cold interpreter's order.
    process_exit.exit_now(code, die_of)


def _uncaught(exc: BaseException) -> None:
    """Print an exception that escaped pytest as the interpreter would (sys.excepthook),
    without this module's frames: a cold run's traceback starts at pytest's entry point."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    try:
        # The hook prints the exception's own traceback: trim that one.
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
    except BaseException:
        pass  # stderr closed, as a cold run's would be: nothing is printed there either


def _system_exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    try:
        # sys.exit("message"): the interpreter prints it and exits 1.
        print(exc.code, file=sys.stderr)
    except BaseException:
        pass
    return 1


def _check_options(warm_options: dict[str, str], refuse_fd: int) -> Callable[[Any], None]:
    """The run's import-time options must match the warm process's, else refuse the run
    (the client then runs it cold): a worker hook, run at pytest_load_initial_conftests."""

    def check(config: Any) -> None:
        reasons = fingerprint.option_differences(warm_options, fingerprint.option_key(config))
        if reasons:
            os.write(refuse_fd, reasons[0].encode())
            os._exit(fingerprint.REFUSED_EXIT)
        # Closed, so the tests do not inherit it.
        os.close(refuse_fd)

    return check


def _uninstall_metadata_cache(_config: Any) -> None:
    metadata_cache.uninstall()


class Handoff(Protocol):
    """A standby prepared for one exact command (``standby_run.py``): the run it was
    prepared for starts under ``predicted`` and takes over at ``pause``."""

    taken: bool
    learn_file: str | None

    def start(self, order: wm.ForkOrder) -> list[int]: ...
    def pause(self, early_config: Any) -> None: ...
    def not_taken(self) -> NoReturn: ...


def run_hooks(
    order: wm.ForkOrder,
    fds: list[int],
    warm_options: dict[str, str] | None,
    learn_file: str | None,
) -> list[Callable[[Any], None]]:
    """What the run's ``pytest_load_initial_conftests`` does (``role.run_worker_hooks``)."""
    if learn_file is not None:
        xdist_fork.note_run(learn_file, order.id)
    hooks: list[Callable[[Any], None]] = [_uninstall_metadata_cache]
    if len(fds) > 3:
        os.set_inheritable(fds[3], False)
        if warm_options is not None:
            hooks.append(_check_options(warm_options, fds[3]))
        else:
            os.close(fds[3])
    hooks.extend(timeline.hooks())
    # Last, before any conftest: xdist's workers fork from this state.
    hooks.append(xdist_fork.start)
    return hooks


def _run_pytest(
    order: wm.ForkOrder,
    fds: list[int],
    close: list[int],
    warm_options: dict[str, str] | None,
    learn_file: str | None,
    handoff: Handoff | None = None,
) -> int:
    if handoff is None:
        _become_client(order, fds, close)
        role.set_worker_hooks(run_hooks(order, fds, warm_options, learn_file))
    else:
        become_process(order, close)
        take_stdio(order, handoff.start(order))
        fresh_state()
        role.set_worker_hooks([handoff.pause])
    if not plugin_disabled(order.args, order.env.get("PYTEST_ADDOPTS", "")):
        metadata_cache.install()  # a worker hook removes it
    return int(_console_entry()())


def run_child(
    order: wm.ForkOrder,
    fds: list[int],
    close: list[int],
    warm_options: dict[str, str] | None,
    known: frozenset[str] | None = None,
    learn_file: str | None = None,
    handoff: Handoff | None = None,
) -> None:
    """Entry point in the forked child; never returns.

    ``warm_options``: import-time options the run must match (None: a run
    from the base process, which imported no project code, checks nothing).
    ``known``: the warm process's modules, to record in ``learn_file`` what the
    run imported.
    """
    code = 3
    die_of = None
    if handoff is None:
        timeline.begin(order)
    try:
        if order.mode == "collect":
            code = _collect_child(order, fds, close)
        else:
            code = _run_pytest(order, fds, close, warm_options, learn_file, handoff)
    except SystemExit as exc:
        code = _system_exit_code(exc)
    except KeyboardInterrupt as exc:
        # Unhandled: the interpreter prints it, then dies of SIGINT (as a shell expects).
        _uncaught(exc)
        code, die_of = 130, signal.SIGINT
    except BaseException as exc:
        # What escapes pytest (a pytest_unconfigure that raises, a stdout a test
        # closed): printed as the interpreter prints it, and exit status 1.
        _uncaught(exc)
        code = 1
    if handoff is not None:
        if not handoff.taken:
            handoff.not_taken()  # ended before its run came: nothing was shown
        learn_file = handoff.learn_file
    if known is not None and learn_file is not None:
        try:
            learn.record(known, learn_file)
        except BaseException:
            pass
    timeline.finish(code)
    _finish(code, die_of)


class _Collector:
    def __init__(self) -> None:
        self.node_ids: list[str] = []
        self.errors: list[wm.CollectedError] = []

    def pytest_collection_finish(self, session: Any) -> None:
        self.node_ids = [item.nodeid for item in session.items]

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.errors.append(
                wm.CollectedError(nodeid=report.nodeid, message=short_error(report.longreprtext))
            )


def short_error(text: str) -> str:
    """The last ``E   ...`` line of a pytest failure (the exception), else the last line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("E "):
            return line[1:].strip()
    return lines[-1].strip() if lines else "unknown error"


def _collect_child(order: wm.ForkOrder, fds: list[int], close: list[int]) -> int:
    result_fd = fds[0]
    devnull = os.open(os.devnull, os.O_RDWR)
    _become_client(order, [devnull, devnull, devnull], close)
    import pytest

    collector = _Collector()
    role.set_worker_hooks([_uninstall_metadata_cache])
    metadata_cache.install()
    reads = collect_reads.Reads(order.cwd)
    code = int(pytest.main(list(order.args), plugins=[collector]))
    payload = wm.encode(
        wm.CollectResult(
            node_ids=collector.node_ids,
            errors=collector.errors,
            exit_code=code,
            files=sorted(reads.files),
            dirs=sorted(reads.dirs),
        )
    )
    view = memoryview(payload)
    while view:
        written = os.write(result_fd, view)
        view = view[written:]
    os.close(result_fd)
    return code
