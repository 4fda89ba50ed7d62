"""The standby worker: the next run's child, forked and half started before its order comes.

Runs in the project layer (``StandbySlot``: fork one, match a run to it, hand the
run over, discard it) and in the standby child itself (``_standby_main``). Both
single-threaded, like the layer.

A run forked afresh pays, between the fork order and its first line of output,
for the fork (the kernel copies the page tables of the whole warm heap while the
layer waits) and for pytest's ``get_config``: a plugin manager, the built-in
plugins registered, their options added to a new parser, the hook callers built.
Measured, nothing of ``get_config`` depends on the run except:

- the ``-p no:NAME`` blocks among its arguments (``consider_preparse`` with
  ``exclude_only``), in their order;
- the program name pytest derives from ``sys.argv[0]`` (pytest 9.1+; before,
  argparse reads ``sys.argv[0]`` itself, which is then the key);
- ``Config.invocation_params`` (the arguments and the working directory, only
  stored);
- the environment variables it reads (``PYTEST_DEBUG``, argparse's locale and
  terminal variables, ...), recorded while the standby prepares.

So the standby calls ``get_config`` ahead, with the blocks and program name
the layer predicts (the last run's), and reports what it read. A run whose key
matches takes it: its own ``get_config`` call gets the prepared config with
``invocation_params`` set to the run's, exactly what the call would have built
(tests/test_standby.py compares them field by field). Everything after it
(arguments, ini files, entry-point plugins, conftests, the Session) happens in
the run as in a fresh fork. Entry-point plugins are not loaded ahead: pytest
registers them after the ``-p`` plugins and the ini options, and that order
shows (hook order, ``--help``). A preparation that printed, warned, raised or
read the whole environment is never used. Any other run is forked afresh.

The standby is discarded whenever the layer changes (every order but ``fork``,
a registrant scan and a liveness ping) and a new one is forked when the layer
is idle (no run of its own running, no child but a scan's).
It is a fork like any other: ``threads.fork_safety`` is checked first.
``ENV_STANDBY`` (read once by the base process) turns it off, or makes every
run go through a standby (``always``: one is made for the run when none
matches; the equivalence suite uses it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol

from pytest_fastcollect.warm import envtrack, standby_run, threads, timeline, worker
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

FRAME_LIMIT = 256 * 1024 * 1024
# How long a run waits for a standby still preparing (it needs ~10 ms of CPU;
# longer means a loaded machine, where a fresh fork would not be quicker).
READY_TIMEOUT = 2.0
# Standbys in a row that died or could not prepare: then none until the layer changes
# (a standby that crashes on start would otherwise be forked again at once, forever).
MAX_BROKEN = 3
# How long discarding a standby waits to reap it.
REAP_WITHIN = 0.5


@dataclasses.dataclass(frozen=True)
class Key:
    """What a prepared config depends on, besides the environment it read."""

    blocks: tuple[str, ...]  # the "no:NAME" plugin arguments, in order
    prog: str | None  # the program name pytest passes to get_config (None: pytest < 9.1)
    # sys.argv[0] when pytest takes no program name (argparse then reads it); else "".
    argv0: str = ""


def run_key(order: wm.ForkOrder) -> Key | None:
    """The key of a run (None: it cannot go through a standby)."""
    if order.mode != "run":
        return None
    blocks = plugin_blocks(order.args)
    try:
        from _pytest import config as pc

        name_of = getattr(pc, "_get_prog_name", None)
        prog = name_of([order.argv0 or "pytest"]) if name_of is not None else None
    except Exception:
        return None
    if blocks is None:
        return None
    return Key(blocks, prog, "" if prog is not None else order.argv0 or "pytest")


def plugin_blocks(args: list[str]) -> tuple[str, ...] | None:
    """The ``no:NAME`` plugin arguments among ``args``, in order, as
    ``get_config`` acts on them (None: pytest's scan failed on them)."""
    try:
        from _pytest import config as pc

        seen = _Blocks()
        # pytest's own scan of the arguments, on an object that only records.
        pc.PytestPluginManager.consider_preparse(seen, args, exclude_only=True)  # type: ignore[arg-type]
    except Exception:
        return None
    return tuple(seen.args)


class _Blocks:
    def __init__(self) -> None:
        self.args: list[str] = []

    def consider_pluginarg(self, arg: str) -> None:
        self.args.append(arg)


# -- in the standby child ----------------------------------------------------------------


class Prepared:
    """A config built ahead by ``get_config``, for the run that takes this standby."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.config: Any = None
        self.env: dict[str, str | None] = {}  # variables read, None: not set
        self.whole_env = False
        self.why_not = ""

    def report(self) -> dict[str, Any]:
        why = self.why_not or ("it read the whole environment" if self.whole_env else "")
        return {"ok": not why, "why": why, "env": self.env}

    def prepare(self) -> None:
        from _pytest import config as pc

        args: list[str] = []
        for block in self.key.blocks:
            args += ["-p", block]
        out = io.StringIO()
        saved_argv, sys.argv = sys.argv, [self.key.argv0 or "pytest", *args]
        try:
            with (
                _env_reads(self) as reads,
                warnings.catch_warnings(record=True) as caught,
                _streams_to(out),
            ):
                self.config = _call(pc.get_config, args, None, self.key.prog)
        except BaseException as exc:
            self.why_not = f"preparing raised {type(exc).__name__}"
            return
        finally:
            sys.argv = saved_argv
        self.env = reads
        if caught:
            self.why_not = f"preparing warned ({caught[0].category.__name__})"
        elif out.getvalue():
            self.why_not = "preparing printed"

    def install(self) -> None:
        """The run's next ``get_config`` call gets the prepared config (once)."""
        from _pytest import config as pc

        original = pc.get_config
        prepared = self

        def get_config(args: Any = None, plugins: Any = None, *rest: Any, **kw: Any) -> Any:
            pc.get_config = original
            if prepared.fits(args, plugins, rest, kw):
                prepared.config.invocation_params = pc.Config.InvocationParams(
                    args=args or (), plugins=plugins, dir=pathlib.Path.cwd()
                )
                return prepared.config
            return original(args, plugins, *rest, **kw)

        pc.get_config = get_config

    def fits(self, args: Any, plugins: Any, rest: tuple[Any, ...], kw: dict[str, Any]) -> bool:
        """The layer matched the run already; this checks again what it could not see
        (the environment as pytest's ``_main`` left it, the call itself)."""
        if plugins is not None or rest or set(kw) - {"prog"} or self.config is None:
            return False
        if kw.get("prog") != self.key.prog:
            return False
        if self.key.prog is None and sys.argv[:1] != [self.key.argv0]:
            return False
        if plugin_blocks(list(args or ())) != self.key.blocks:
            return False
        return all(os.environ.get(k) == v for k, v in self.env.items())


def _call(get_config: Callable[..., Any], args: list[str], plugins: Any, prog: str | None) -> Any:
    if prog is None:
        return get_config(args, plugins)
    return get_config(args, plugins, prog=prog)


@contextlib.contextmanager
def _streams_to(out: io.StringIO) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _env_reads(prepared: Prepared) -> Iterator[dict[str, str | None]]:
    """Record every environment variable read (a read of all of them is noted)."""
    cls = type(os.environ)
    reads: dict[str, str | None] = {}
    get, has, iterate = cls.__getitem__, cls.__contains__, cls.__iter__

    def note(env: Any, key: object) -> None:
        if env is os.environ and isinstance(key, str) and key not in reads:
            try:
                reads[key] = get(env, key)
            except KeyError:
                reads[key] = None

    def getitem(self: Any, key: Any) -> Any:
        note(self, key)
        return get(self, key)

    def contains(self: Any, key: Any) -> bool:
        note(self, key)
        return bool(has(self, key))

    def iterate_(self: Any) -> Any:
        if self is os.environ:
            prepared.whole_env = True
        return iterate(self)

    cls.__getitem__ = getitem  # type: ignore[method-assign]
    cls.__contains__ = contains  # type: ignore[method-assign]
    cls.__iter__ = iterate_  # type: ignore[method-assign]
    try:
        yield reads
    finally:
        cls.__getitem__ = get  # type: ignore[method-assign]
        cls.__contains__ = has  # type: ignore[method-assign]
        cls.__iter__ = iterate  # type: ignore[method-assign]


def _standby_main(
    sock: socket.socket,
    key: Key,
    env: dict[str, str] | None,
    close: list[int],
    warm_options: dict[str, str] | None,
    known: frozenset[str],
) -> NoReturn:
    """The standby child: prepare, report, wait for the run; never returns."""
    try:
        standby_run.die_with_parent(signal.SIGKILL)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
        # A group of its own already: the run's, as a fresh worker makes it.
        os.setpgid(0, 0)
        envtrack.uninstall()
        if env is not None:
            # The environment the run is expected to have: what pytest reads of it
            # is recorded and must match (the run's own replaces it at hand-off).
            os.environ.clear()
            os.environ.update(env)
        prepared = Prepared(key)
        prepared.prepare()
        send_frame(sock, json.dumps(prepared.report()).encode())
        raw, fds = recv_frame(sock, FRAME_LIMIT, want_fds=True)
        sock.close()
        data = json.loads(raw)
        order = wm.ForkOrder(**data["order"])
    except BaseException:
        # Discarded (the layer closed its end, or killed us) or broken: nothing ran.
        os._exit(0)
    timeline.begin(order, standby=True)
    # A fresh worker outlives a killed layer until the supervisor kills its group.
    standby_run.die_with_parent(0)
    if prepared.report()["ok"]:
        prepared.install()
    worker.run_child(order, fds, [], warm_options, known, data["learn_file"])
    os._exit(3)  # run_child never returns


# -- in the project layer ----------------------------------------------------------------


class _Standby:
    __slots__ = ("key", "order", "pid", "ready", "sock")

    def __init__(
        self, pid: int, sock: socket.socket, key: Key, order: wm.ForkOrder | None = None
    ) -> None:
        self.pid = pid
        self.sock = sock
        self.key = key
        self.order = order  # prepared for this exact run (standby_run.py); None: get_config only
        self.ready: dict[str, Any] | None = None


class Layer(Protocol):
    """What the slot needs of the layer that forks it (``serving.OrderLoop``)."""

    ctl: socket.socket
    wake_r: int
    wake_w: int

    def fork_options(self) -> dict[str, str] | None: ...
    def learn_file(self, order_id: str) -> str: ...


class StandbySlot:
    """At most one standby child of the layer, forked when the layer is idle."""

    def __init__(self, mode: str, warm_args: list[str]) -> None:
        self.mode = mode
        self.current: _Standby | None = None
        # Until a run shows otherwise: the environment's ``pytest`` script (what
        # pytest < 9.1 keys on), with the start's arguments.
        script = os.path.join(os.path.dirname(sys.executable), "pytest")
        first = wm.ForkOrder(
            id="", mode="run", args=warm_args, cwd="", env={}, umask=0, argv0=script
        )
        self.next_key = run_key(first) or Key((), "pytest")
        self.next_env: dict[str, str] | None = None  # the last run's: None, the layer's
        self.last: wm.ForkOrder | None = None  # the last run: the next standby is prepared for it
        self.unsafe = ""  # why the last fork-safety check refused a standby
        self.broken = 0  # standbys in a row that died or could not prepare

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def fileno_waiting(self) -> socket.socket | None:
        """The socket to watch while the standby prepares (its report comes on it)."""
        sb = self.current
        return sb.sock if sb is not None and sb.ready is None else None

    def readable(self) -> None:
        sb = self.current
        if sb is not None and not self._read_ready(sb, timeout=READY_TIMEOUT):
            self.broken += 1
            self.discard()

    def changed(self) -> None:
        """The layer is about to change: what a standby holds would be stale."""
        self.discard()
        self.broken = 0

    def spawn(
        self,
        layer: Layer,
        key: Key | None = None,
        env: dict[str, str] | None = None,
        order: wm.ForkOrder | None = None,
        held: list[int] | None = None,
    ) -> _Standby | None:
        """Fork a standby prepared for ``order`` (default: the last run, if any;
        standby_run.py), else for ``key`` and ``env`` (default: the last run's).
        ``held``: descriptors the layer holds for a run waiting for this standby
        (the run's own numbers must be free in it, as in a fresh worker)."""
        self.discard()
        if self.broken >= MAX_BROKEN:
            self.unsafe = f"{self.broken} standby workers in a row could not prepare"
            return None
        verdict = threads.fork_safety()
        if not verdict.safe:
            self.unsafe = verdict.reason
            return None
        key = key or self.next_key
        env = env or self.next_env
        order = order or self.last
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        known = frozenset(sys.modules)
        options = layer.fork_options()
        close = [layer.ctl.fileno(), layer.wake_r, layer.wake_w, ours.fileno(), *(held or ())]
        from pytest_fastcollect.warm.serving import fork_accounted

        pid = fork_accounted()
        if pid == 0:
            if order is not None:
                standby_run.main(theirs, order, close, options, known)
            _standby_main(theirs, key, env, close, options, known)
        theirs.close()
        self.current = _Standby(pid, ours, key, order)
        return self.current

    def discard(self) -> None:
        sb, self.current = self.current, None
        if sb is None:
            return
        sb.sock.close()
        # Our own unreaped child: its pid cannot be anyone else's yet.
        with contextlib.suppress(OSError):
            os.kill(sb.pid, signal.SIGKILL)
        # Reaped here and now, so health never counts it as a zombie meanwhile
        # (SIGKILL ends it within milliseconds; the order loop reaps any we miss).
        deadline = time.monotonic() + REAP_WITHIN
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(sb.pid, os.WNOHANG)[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.001)

    def prepared_and_ready(self) -> bool:
        """A standby prepared for the last run's command has reported ready."""
        sb = self.current
        return sb is not None and sb.order is not None and sb.ready is not None

    def close_fds(self) -> list[int]:
        """Descriptors a fresh worker must close (the layer's end of the standby's socket)."""
        return [self.current.sock.fileno()] if self.current is not None else []

    def take(
        self, layer: Layer, order: wm.ForkOrder, fds: list[int]
    ) -> tuple[int | None, str, bool]:
        """Hand ``order`` to the standby: its pid, or None and why it is forked afresh;
        and whether the standby was prepared for this exact run."""
        key = run_key(order)
        if key is None:
            return None, "the run cannot go through a standby", False
        self.next_key, self.next_env, self.last = key, dict(order.env), order
        sb = self.current
        why = self._mismatch(sb, key, order)
        if why and self.mode == "always":
            sb = self.spawn(layer, order=order, held=fds)
            why = self._mismatch(sb, key, order)
        if why:
            return None, why, False
        assert sb is not None
        payload = {"order": dataclasses.asdict(order), "learn_file": layer.learn_file(order.id)}
        try:
            send_frame(sb.sock, json.dumps(payload).encode(), tuple(fds))
        except OSError as exc:
            self.discard()
            return None, f"the standby worker is gone ({exc})", False
        self.current = None
        self.broken = 0
        sb.sock.close()
        return sb.pid, "", sb.order is not None

    def _mismatch(self, sb: _Standby | None, key: Key, order: wm.ForkOrder) -> str:
        if sb is None:
            return self.unsafe or "no standby worker"
        if sb.order is None and self.mode == "always":
            self.discard()  # every run through a standby prepared for it
            return "not prepared for this run"
        if sb.order is not None:
            why = standby_run.differs(sb.order, order)
            if why:
                self.discard()  # the next one is prepared for this run
                return why
        elif sb.key != key:
            # Predicted wrong: the next standby is prepared like this run.
            self.discard()
            return f"prepared for {_describe(sb.key)}, the run has {_describe(key)}"
        if sb.ready is None and not self._read_ready(sb, timeout=READY_TIMEOUT):
            self.broken += 1
            self.discard()
            return "the standby worker did not get ready"
        assert sb.ready is not None
        if not sb.ready.get("ok"):
            why = str(sb.ready.get("why"))
            self.broken += 1
            self.discard()
            return why
        for name, value in dict(sb.ready.get("env", {})).items():
            if order.env.get(name) != value:
                self.discard()  # the next one is prepared with this run's environment
                return f"{name} differs from the standby's"
        return ""

    @staticmethod
    def _read_ready(sb: _Standby, timeout: float) -> bool:
        try:
            raw, _ = recv_frame(sb.sock, FRAME_LIMIT, timeout=timeout)
            data = json.loads(raw)
        except (FrameError, OSError, ValueError):
            return False
        sb.ready = data if isinstance(data, dict) else {"ok": False, "why": "bad report"}
        return True


def _describe(key: Key) -> str:
    blocks = " ".join(f"-p {b}" for b in key.blocks) or "no -p no:NAME"
    return f"{blocks} ({key.prog or key.argv0})"
