"""The xdist fork server, and the birth of each xdist worker it forks.

Runs in a child that a run worker forks while its pytest session is starting
(warm/xdist_fork.py), before any conftest is imported and before any thread
exists: a single-threaded copy of the warm state. It serves that run's xdist
controller over a socket pair: each request asks for one worker and carries
the two pipe ends of an execnet popen gateway, the controller's stderr, and
its environment, working directory and umask at that moment.

Each worker becomes what execnet's popen gateway would have started,
``python -u -c "import sys;exec(eval(sys.stdin.readline()))"``: the pipes on
fds 0 and 1, the controller's stderr on fd 2, the controller's environment,
cwd and umask, ``sys.argv == ['-c']``, unbuffered standard streams, a fresh
``__main__`` and default signal handlers. Then it runs that very line, so
execnet's own bootstrap code sets up the gateway and serves it; xdist's
``remote`` module builds a fresh Config and Session from the arguments the
controller sends. Nothing is imported twice: pytest, the plugins, the
conftests, the project and the test modules came with the fork. Nor is
pytest's ``get_config`` done twice: the fork server calls it once, ahead,
with the run's ``-p no:NAME`` blocks (warm/standby.py's ``Prepared``), and a
worker whose own call would build the same config (same blocks, program name
and environment as read) gets its copy of that one.

Workers stay in the run's process group (a Ctrl-C or a kill of the group
reaches them, as in a cold run) and are killed if the fork server dies; the
fork server is killed if the run worker dies, and kills its workers when the
run worker closes the socket. Constraint: single-threaded; never returns.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import json
import linecache
import os
import random
import select
import signal
import socket
import sys
import traceback
import types
from typing import Any, NoReturn

from pytest_fastcollect import process_exit
from pytest_fastcollect.warm import learn, metadata_cache, standby
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

# A request carries the controller's environment: generous, not unbounded.
REQUEST_LIMIT = 16 * 1024 * 1024
PR_SET_PDEATHSIG = 1
# What ``python -u`` sets up at start-up besides the defaults.
PYTHON_IGNORED_SIGNALS = ("SIGPIPE", "SIGXFSZ")
# A worker's sys.argv: ``python -c`` code, as execnet's popen gateway starts it.
WORKER_ARGV0 = "-c"


class _Worker:
    """In a worker: the config its fork server prepared, if there was one."""

    prepared: standby.Prepared | None = None


worker_state = _Worker()


def os_threads() -> int:
    """OS threads of this process (Linux); forking is only safe with one."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import threading

    return threading.active_count()


def die_with_parent(parent: int) -> bool:
    """SIGKILL this process when its parent dies (Linux); False if it is already gone."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    # The parent may have died before the prctl: then nothing would ever fire.
    return os.getppid() == parent


# -- the fork server -------------------------------------------------------------------


def serve(ctl: socket.socket, parent: int, run_args: list[str]) -> NoReturn:
    """The fork server's life: answer spawn requests until the run worker hangs up.

    ``run_args``: the run's arguments, whose ``-p no:NAME`` blocks the workers'
    own arguments (xdist sends them the run's, paths made relative) repeat.
    """
    code = 0
    try:
        _serve(ctl, parent, run_args)
    except BaseException:
        code = 1
    os._exit(code)


def _serve(ctl: socket.socket, parent: int, run_args: list[str]) -> None:
    if not die_with_parent(parent):
        return
    # Ctrl-C reaches the run's whole process group: the workers turn it into
    # xdist's interrupted report; the fork server must outlive them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Never the client's terminal: each worker gets the controller's stderr
    # with its request.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        import execnet  # noqa: F401 - every worker needs it: import it once, here
    except ImportError:
        pass
    # While the run's session starts on the other side: its first request
    # waits for this at most (about what each worker would spend on it).
    ready = prepare_config(run_args)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    children: set[int] = set()
    own = [ctl.fileno(), wake_r, wake_w]
    watched: list[socket.socket | int] = [ctl, wake_r]
    while True:
        readable, _, _ = select.select(watched, [], [])
        if wake_r in readable:
            _drain(wake_r)
            _reap(children, block=False)
        if ctl in readable:
            try:
                raw, fds = recv_frame(ctl, REQUEST_LIMIT, want_fds=True)
            except (FrameError, OSError):
                break  # the run is over (or gone)
            reply, pidfd = _spawn(json.loads(raw), fds, own, children, ready)
            try:
                send_frame(ctl, json.dumps(reply).encode(), () if pidfd is None else (pidfd,))
            except OSError:
                break
            finally:
                if pidfd is not None:
                    os.close(pidfd)
    # No worker outlives its run.
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(children, block=True)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _reap(children: set[int], block: bool) -> None:
    while children:
        try:
            pid, _status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)


def prepare_config(run_args: list[str]) -> standby.Prepared | None:
    """``get_config`` as a worker will call it, done once ahead (None: not usable)."""
    blocks = standby.plugin_blocks(run_args)
    if blocks is None:
        return None
    # xdist's worker calls ``_prepareconfig(args, None)``: no program name.
    ahead = standby.Prepared(standby.Key(blocks, None, WORKER_ARGV0))
    ahead.prepare()
    return ahead if ahead.report()["ok"] else None


def _spawn(
    request: dict[str, Any],
    fds: list[int],
    own: list[int],
    children: set[int],
    ready: standby.Prepared | None,
) -> tuple[dict[str, Any], int | None]:
    try:
        if len(fds) != 3:
            return {"error": f"expected 3 descriptors, got {len(fds)}"}, None
        threads = os_threads()
        if threads != 1:
            return {"error": f"the fork server has {threads} threads"}, None
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            become_worker(request, fds, own, server, ready)
        children.add(pid)
        # Opened before this process can reap the child, so it names that
        # child and no later process that reuses its pid.
        return {"pid": pid}, os.pidfd_open(pid)
    finally:
        for fd in fds:
            os.close(fd)


# -- a worker --------------------------------------------------------------------------


def become_worker(
    request: dict[str, Any],
    fds: list[int],
    close: list[int],
    server: int,
    ready: standby.Prepared | None = None,
) -> NoReturn:
    """In a child of the fork server: become an execnet popen gateway's process; never returns."""
    code = 1
    try:
        _become(request, fds, close, server)
        if ready is not None:
            worker_state.prepared = ready
            ready.install()  # checked again at the call (its environment is the request's)
        born = frozenset(sys.modules)
        code = _run_bootstrap()
        if request.get("learn_file"):
            # What its tests imported lazily, for the warm process to learn.
            learn.record(born, request["learn_file"])
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    process_exit.exit_now(code)


def _default_signals() -> None:
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    for name in PYTHON_IGNORED_SIGNALS:
        ignored = getattr(signal, name, None)
        if ignored is not None:
            signal.signal(ignored, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _become(request: dict[str, Any], fds: list[int], close: list[int], server: int) -> None:
    from pytest_fastcollect.warm.worker import _stream

    _default_signals()
    if not die_with_parent(server):
        os._exit(1)
    for fd in close:
        os.close(fd)
    env: dict[str, str] = request["env"]
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    # Received descriptors are all above 2 (0-2 were /dev/null): no overlap.
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        os.close(fd)
    # ``python -u``: unbuffered binary layer, write-through text streams.
    unbuffered = {**env, "PYTHONUNBUFFERED": "1"}
    sys.stdin = _stream(0, "r", unbuffered)
    sys.stdout = _stream(1, "w", unbuffered)
    sys.stderr = _stream(2, "w", unbuffered)
    setattr(sys, "__stdin__", sys.stdin)  # noqa: B010
    setattr(sys, "__stdout__", sys.stdout)  # noqa: B010
    setattr(sys, "__stderr__", sys.stderr)  # noqa: B010
    sys.argv = ["-c"]
    sys.path[:] = ["", *_startup_sys_path()[1:]]
    sys.dont_write_bytecode = bool(request.get("dont_write_bytecode")) or bool(
        env.get("PYTHONDONTWRITEBYTECODE")
    )
    _remove_rewrite_hooks()
    sys.modules["__main__"] = _fresh_main()
    # A cold interpreter starts with fresh random state and empty caches.
    random.seed()
    linecache.clearcache()
    importlib.invalidate_caches()
    # xdist's remote module starts a pytest session: serve its plugin start-up
    # from memory too (our pytest_load_initial_conftests removes the cache).
    metadata_cache.install()


def _startup_sys_path() -> list[str]:
    # xdist froze the interpreter's start-up sys.path when its plugin was
    # imported; the worker's session replaces sys.path with the controller's copy.
    xdist_plugin = sys.modules.get("xdist.plugin")
    frozen = getattr(xdist_plugin, "_sys_path", None)
    return list(frozen) if isinstance(frozen, list) else list(sys.path)


def _remove_rewrite_hooks() -> None:
    """The run's pytest installed its assertion rewriter before the fork; the
    worker's own session installs its own."""
    from _pytest.assertion.rewrite import AssertionRewritingHook

    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, AssertionRewritingHook)]


def _fresh_main() -> types.ModuleType:
    """``__main__`` as ``python -c`` makes it."""
    main = types.ModuleType("__main__")
    main.__dict__.update(
        {
            "__builtins__": builtins,
            "__loader__": importlib.machinery.BuiltinImporter,
            "__spec__": None,
            "__package__": None,
            "__annotations__": {},
        }
    )
    return main


def _run_bootstrap() -> int:
    """Run execnet's popen bootstrap line as ``python -c`` runs it; the exit code."""
    from execnet.gateway_io import popen_bootstrapline

    main = sys.modules["__main__"]
    try:
        exec(compile(popen_bootstrapline, "<string>", "exec"), main.__dict__)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.stderr.flush()
        # As a cold interpreter does: die of the signal.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0
