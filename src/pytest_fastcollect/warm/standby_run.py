"""A standby prepared for one exact command: the last run's, up to its first conftest.

The plain standby (standby.py) prepares only pytest's ``get_config``, which
depends on little, so most runs can take it. In the edit-test loop the same
command comes again and again; for it the standby goes much further. It
starts the run the layer predicts (the last run's order: arguments, program,
working directory, environment, umask, the standard streams the client
lacked), as a fresh worker would, on placeholder stdio, and runs pytest until
``pytest_load_initial_conftests``, where the plugin's outermost wrapper calls
the worker hooks (role.py). There it pauses: it has parsed the arguments and
the ini file, loaded the ``-p`` and entry-point plugins with their options,
and imported nothing of the project's conftests or tests yet; capturing has
not started, and no plugin has looked at a terminal.

A run takes it only when its order equals the predicted one in all of
those fields (``differs``); any other run is forked afresh. Until the pause
nothing may have been written to the placeholder stdout or stderr (a
warning, ``PYTEST_DEBUG`` tracing, a usage error): then it reports that it
cannot be used. Should pytest go on past the conftests without the pause
(the plugin not loaded in that session), the standby ends before
``pytest_configure``: it never runs a session nobody asked for. At the hand-off it puts the run's own descriptors in place,
makes the ``sys`` streams from them (buffering follows the real terminal),
reseeds ``random``, clears the import and line caches, and runs the worker
hooks of the real order (the option check with its refusal descriptor, the
timeline, xdist's fork point); then pytest goes on with the conftests.

What it read before the pause is what a fresh run reads at that point: the
order's fields, the ini files and ``-p`` modules (a change to either reaches
the layer as an order, and every order but a run discards the standby), and
the file system around the arguments for the rootdir (every batch of file
events reaches the layer too: ``PingOrder.changed``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import tempfile
from typing import Any, NoReturn

from pytest_fastcollect import processes
from pytest_fastcollect.warm import timeline, worker
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import recv_frame, send_frame

FRAME_LIMIT = 256 * 1024 * 1024
PR_SET_PDEATHSIG = 1


# The fields of an order the preparation depends on (the environment apart), in the
# order they are compared, with what the log says when one differs.
_PREPARED_FOR = (
    ("args", "prepared for other arguments"),
    ("argv0", "prepared for another program name"),
    ("cwd", "prepared in another working directory"),
    ("umask", "prepared with another umask"),
    ("closed_fds", "prepared with other standard streams closed"),
)


def differs(predicted: wm.ForkOrder, order: wm.ForkOrder) -> str:
    """Why ``order`` cannot take a standby prepared for ``predicted`` ("" if it can)."""
    if order.mode != "run" or predicted.mode != "run":
        return "the order is not a run"
    for field, why in _PREPARED_FOR:
        if getattr(order, field) != getattr(predicted, field):
            return why
    if order.env != predicted.env:
        # Names only: values may be secrets, and the log is kept.
        names = sorted(set(order.env) ^ set(predicted.env)) or sorted(
            k for k in order.env if order.env[k] != predicted.env.get(k)
        )
        return f"{names[0]} differs from the standby's"
    return ""


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def die_with_parent(sig: int) -> None:
    """Linux: the kernel sends ``sig`` (0: nothing) when the layer dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class PreparedRun:
    """The hand-off of a standby prepared for one command (``worker.Handoff``)."""

    def __init__(self, sock: socket.socket, warm_options: dict[str, str] | None) -> None:
        self.sock = sock
        self.warm_options = warm_options
        self.taken = False
        self.learn_file: str | None = None
        self.closed: frozenset[int] = frozenset()
        self.warm_argv = list(sys.argv)  # the layer's: it names the project

    def start(self, order: wm.ForkOrder) -> list[int]:
        """The placeholder stdio: nothing to read, and one unnamed file for output."""
        self._guard()
        self.closed = frozenset(order.closed_fds)
        argv0 = order.argv0 or "pytest"
        processes.set_title(processes.worker_title(self.warm_argv, argv0, order.args, "standby"))
        fd, path = tempfile.mkstemp(prefix="fastcollect-standby-")
        os.unlink(path)
        return [os.open(os.devnull, os.O_RDONLY), fd, os.dup(fd)]

    def _guard(self) -> None:
        """Never run a session unprompted: a session that goes past its conftests
        without the pause (the plugin's hook did not run) ends the standby there."""
        from _pytest import config as pc

        original = getattr(pc.Config, "_do_configure", None)
        if original is None:
            return
        prepared = self

        def _do_configure(config: Any) -> None:
            if not prepared.taken:
                prepared.not_taken("pytest went past its conftests without the plugin's pause")
            original(config)

        pc.Config._do_configure = _do_configure  # type: ignore[method-assign,assignment]

    def printed(self) -> bool:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        return any(os.fstat(fd).st_size for fd in (1, 2) if fd not in self.closed)

    def pause(self, early_config: Any) -> None:
        """A worker hook: report ready, wait for the run, become it."""
        printed = self.printed()
        # The run's descriptors must not arrive as 0, 1 or 2 where the client lacks
        # that stream: those numbers are held until they are in place.
        held = [n for n in sorted(self.closed) if not _is_open(n)]
        try:
            for n in held:
                fd = os.open(os.devnull, os.O_RDONLY)
                if fd != n:
                    os.dup2(fd, n)
                    os.close(fd)
            report = {"ok": not printed, "why": "preparing printed" if printed else ""}
            send_frame(self.sock, json.dumps(report).encode())
            # Until the layer discards it (it never hands a run to an unusable one).
            raw, fds = recv_frame(self.sock, FRAME_LIMIT, want_fds=True)
            if printed:
                raise ConnectionAbortedError
            self.sock.close()
            data = json.loads(raw)
            order = wm.ForkOrder(**data["order"])
        except BaseException:
            # Discarded (the layer closed its end, or killed us) or unusable: nothing ran.
            os._exit(0)
        self.taken = True
        self.learn_file = data["learn_file"]
        timeline.begin(order, standby=True)
        # A fresh worker outlives a killed layer until the supervisor kills its group.
        die_with_parent(0)
        argv0 = order.argv0 or "pytest"
        processes.set_title(processes.worker_title(self.warm_argv, argv0, order.args))
        worker.take_stdio(order, fds, closed_already=True)
        for n in held:
            os.close(n)
        worker.fresh_state()
        for hook in worker.run_hooks(order, fds, self.warm_options, self.learn_file):
            hook(early_config)

    def not_taken(self, why: str = "pytest ended before its conftests") -> NoReturn:
        """pytest ended before the pause (its output went to the placeholder)."""
        with contextlib.suppress(Exception):
            send_frame(self.sock, json.dumps({"ok": False, "why": why}).encode())
        os._exit(0)


def main(
    sock: socket.socket,
    predicted: wm.ForkOrder,
    close: list[int],
    warm_options: dict[str, str] | None,
    known: frozenset[str],
) -> NoReturn:
    """The standby child: start the predicted run, pause, hand over; never returns."""
    try:
        die_with_parent(signal.SIGKILL)
        prepared = PreparedRun(sock, warm_options)
    except BaseException:
        os._exit(0)
    worker.run_child(predicted, [], close, warm_options, known, None, handoff=prepared)
    os._exit(3)  # run_child never returns
