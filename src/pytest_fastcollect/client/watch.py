"""Watch mode: after each save, run the tests it can affect, warm, once the save is applied.

Runs in the client, behind ``pytest --daemon-watch`` and ``pytest-fastcollect
watch`` (so it imports neither pytest nor pydantic: requests go through
``wire/lite.py``). The loop:

1. start a daemon if none serves the project, and take the cursor of its
   change log;
2. run the arguments once;
3. wait for a key, or for the daemon's answer to a ``watch`` request (a
   quiet batch of saves after the cursor, already applied to the warm
   process, with the test files they can affect);
4. run those files (as far as the arguments select them) plus the tests that
   failed when they last ran, or everything when the daemon cannot tell,
   through the ordinary warm run path: the output is pytest's own;
5. back to 3 with the answer's cursor: saves made during the run are in the
   next answer, never lost.

Each run loads a small silent plugin (``watch_report.py``) whose report says
which tests the arguments select and which failed. ``watch_cli.py`` holds the
two ways in (the ``--daemon-watch`` verb and the thin client).
"""

from __future__ import annotations

import _socket
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from pytest_fastcollect.client import watch_args as wa
from pytest_fastcollect.client.handoff import Follow, notice, run_through
from pytest_fastcollect.client.transport import connect
from pytest_fastcollect.client.watch_term import Terminal
from pytest_fastcollect.errors import DaemonConnectionError, DaemonError, Exit, FastCollectError
from pytest_fastcollect.settings import ENV_WATCH_REPORT as REPORT_ENV
from pytest_fastcollect.wire import lite
from pytest_fastcollect.wire.framing import FrameError, recv_frame, send_frame

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, TextIO

REPORT_PLUGIN = "pytest_fastcollect.client.watch_report"
POLL_TIMEOUT = 60.0  # a watch request answers at least this often (the daemon is alive)
RESPONSE_LIMIT = 64 * 1024 * 1024
INTERRUPTED = 130
RECONNECT_S = 20.0  # how long a lost daemon may take to answer again (--daemon-restart)


class Daemon:
    """The daemon a watch talks to, and what its runs send with them."""

    __slots__ = ("env", "socket", "sys_path")

    def __init__(self, socket: str, sys_path: list[str], env: dict[str, str] | None = None) -> None:
        self.socket = socket
        self.sys_path = sys_path
        self.env = env or {}  # on top of this process's environment (PYTEST_VERSION, say)


class Plan:
    """One run: what the header says, and the arguments (None: nothing to run)."""

    __slots__ = ("args", "full", "label")

    def __init__(self, label: str, args: list[str] | None, full: bool = False) -> None:
        self.label = label
        self.args = args
        self.full = full  # every test the arguments select (the report replaces what we know)


class Knowledge:
    """What the runs' reports taught: the test files the arguments select, and what fails."""

    def __init__(self) -> None:
        self.rootdir = ""
        self.files: dict[str, list[str]] = {}  # test file -> node ids
        self.failing: dict[str, None] = {}  # node ids (a file's id if it failed to collect)
        self.patterns: list[str] = []
        self.default_roots: list[str] = []
        self.complete = False  # a full run reported

    def file_of(self, nodeid: str) -> str:
        return os.path.realpath(os.path.join(self.rootdir, nodeid.split("::", 1)[0]))

    def learn(self, report: dict[str, Any], full: bool) -> None:
        self.rootdir = str(report["rootdir"])
        self.patterns = [str(x) for x in report["python_files"]]
        if full:  # what pytest chose for the arguments alone (testpaths, the directory)
            self.default_roots = [str(x) for x in report["args"]]
        collected, errors = list(report["collected"]), [e for e in report["errors"] if e]
        by_file: dict[str, list[str]] = {}
        for nodeid in collected:
            by_file.setdefault(self.file_of(nodeid), []).append(nodeid)
        for nodeid in errors:
            by_file.setdefault(self.file_of(nodeid), [])
        if full:
            self.files = by_file
            self.complete = True
        else:
            self.files.update(by_file)
        current = set(collected) | set(errors)
        for nodeid in list(self.failing):
            if self.file_of(nodeid) in by_file and nodeid not in current:
                del self.failing[nodeid]  # deleted, renamed, or its file collects now
        for nodeid, outcome in report["outcomes"].items():
            if outcome == "failed":
                self.failing[nodeid] = None
            else:
                self.failing.pop(nodeid, None)
        self.failing.update(dict.fromkeys(errors))
        self.forget_deleted()

    def forget_deleted(self) -> None:
        for f in [f for f in self.files if not os.path.exists(f)]:
            del self.files[f]
        for nodeid in [n for n in self.failing if not os.path.exists(self.file_of(n))]:
            del self.failing[nodeid]

    def count(self, files: Iterable[str]) -> int | None:
        total = 0
        for f in files:
            ids = self.files.get(f)
            if not ids:
                return None  # not collected yet, or it failed to collect
            total += len(ids)
        return total


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Watch:
    def __init__(
        self,
        args: Sequence[str],
        cwd: str,
        argv0: str,
        start_daemon: Callable[[], Daemon],
        cold_command: list[str],
        clear: bool = False,
        out: TextIO | None = None,
        stdin_fd: int = 0,
    ) -> None:
        self.args = list(args)
        self.options, paths = wa.split_args(self.args, cwd)
        self.roots = wa.Roots(paths, cwd)
        self.socket_path = ""
        self.cwd = cwd
        self.sys_path: list[str] = []
        self.run_env: dict[str, str] = {}
        self.argv0 = argv0
        self.start_daemon = start_daemon
        self.cold_command = cold_command
        self.term = Terminal(out or sys.stdout, stdin_fd, clear)
        self.k = Knowledge()
        self.cursor: int | None = None
        self.epoch: str | None = None
        self.sock: _socket.socket | None = None
        self.last: Plan | None = None
        self.file_filter: str | None = None
        self.name_filter: str | None = None
        self.report_dir = tempfile.mkdtemp(prefix="fc-watch-")
        self.report = os.path.join(self.report_dir, "report.json")

    # -- the loop -------------------------------------------------------------------------

    def main(self) -> int:
        saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
        for sig in saved:
            signal.signal(sig, _exit_on_signal)
        os.environ[REPORT_ENV] = self.report
        try:
            return self._main()
        except KeyboardInterrupt:
            self.term.write("\n")
            return INTERRUPTED
        except FastCollectError as exc:
            self.term.restore()
            sys.stderr.write(f"pytest-fastcollect: error: {exc.message}\n")
            return int(exc.exit_code)
        finally:
            self.term.restore()
            os.environ.pop(REPORT_ENV, None)
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            if self.sock is not None:
                self.sock.close()
            shutil.rmtree(self.report_dir, ignore_errors=True)

    def _main(self) -> int:
        daemon = self.start_daemon()
        self.socket_path, self.sys_path, self.run_env = daemon.socket, daemon.sys_path, daemon.env
        self._ask()  # the change log's cursor: saves from now on count
        self.term.enter_keys()
        if self.execute(self.full_plan(f"watch: {wa.show(['pytest', *self.args])}")):
            return INTERRUPTED
        while True:
            event = self._wait()
            if isinstance(event, lite.Watched):
                if event.selection is None and not event.lost:
                    continue  # a heartbeat: nothing changed
                plan: Plan | None = self.change_plan(event)
            elif event == "quit":
                return int(Exit.OK)
            else:
                plan = self.key_plan(event)
            if plan is not None and self.execute(plan, event):
                return INTERRUPTED

    def _send(self) -> None:
        try:
            sock = connect(self.socket_path, timeout=None)
            send_frame(
                sock,
                lite.encode_watch(
                    self.cursor,
                    self.epoch,
                    POLL_TIMEOUT,
                    list(self.k.files) if self.k.complete else None,
                    self.k.patterns,
                ),
            )
        except (DaemonConnectionError, OSError) as exc:
            raise DaemonConnectionError(
                f"the daemon is gone ({exc}); watch mode ends (pytest --daemon-watch starts one)"
            ) from None
        self.sock = sock

    def _receive(self) -> lite.Watched:
        assert self.sock is not None
        sock, self.sock = self.sock, None
        try:
            with contextlib.closing(sock):
                raw, _ = recv_frame(sock, RESPONSE_LIMIT)
            answer = lite.decode_watch_response(raw)
        except (FrameError, OSError, lite.LiteProtocolError) as exc:
            raise DaemonConnectionError(
                f"lost the daemon ({exc}); watch mode ends (pytest --daemon-watch starts one)"
            ) from None
        if isinstance(answer, lite.Error):
            raise DaemonError(f"the daemon refused to watch: {answer.message}")
        self.cursor, self.epoch = answer.cursor, answer.epoch
        return answer

    def _ask(self) -> lite.Watched:
        self._send()
        return self._receive()

    def _wait(self) -> lite.Watched | str:
        """The daemon's next answer, or the action of a key typed meanwhile."""
        while True:
            if self.sock is None:
                self._send()
            waiting: list[Any] = [self.sock] + ([self.term.fd] if self.term.keys else [])
            readable, _, _ = select.select(waiting, [], [])
            if self.term.keys and self.term.fd in readable:
                action = self.term.read_key()
                if action is not None:
                    return action
            if self.sock in readable:
                try:
                    return self._receive()
                except DaemonConnectionError:
                    self._reconnect()

    def _reconnect(self) -> None:
        """The daemon went away (a restart, say): wait a while for one to answer again.

        A new daemon answers our cursor as lost, so everything runs once more.
        """
        notice("lost the daemon; waiting for one to answer")
        deadline = time.monotonic() + RECONNECT_S
        while True:
            try:
                self._send()
                return
            except DaemonConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- what to run ----------------------------------------------------------------------

    def _rel(self, path: str) -> str:
        return self.roots.rel(path)

    def full_plan(self, label: str) -> Plan:
        options = wa.with_keyword(self.options, self.name_filter)
        if self.file_filter is None:
            return Plan(label, [*options, *self.roots.given], full=True)
        files = [f for f in self.roots.narrow(self.k.files) if self._matches(f)]
        if not files:
            return Plan(f"{label}: no test file matches {self.file_filter!r}", None)
        return Plan(label, [*options, *files])

    def _matches(self, arg: str) -> bool:
        import re

        pattern = self.file_filter or ""
        try:
            return re.search(pattern, arg.split("::", 1)[0]) is not None
        except re.error:
            return pattern in arg

    def change_plan(self, w: lite.Watched) -> Plan:
        names = [self._rel(x) for x in w.changed]
        what = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        what = f"{what} changed" if what else "the daemon restarted"
        if w.everything or w.lost or not self.k.complete:
            why = w.reasons[0] if w.reasons else "no complete run yet"
            return self.full_plan(f"{what}: all tests ({why})")
        selected = [f for f in w.selection or () if os.path.exists(f)]
        new = [f for f in selected if f not in self.k.files and self.roots.contains(f)]
        if new:
            return self.full_plan(f"{what}: all tests ({self._rel(new[0])} is new)")
        files = [a for a in self.roots.narrow(selected) if self._matches(a)]
        self.k.forget_deleted()
        chosen = set(selected)
        failed = [
            wa.node_arg(n, self.k.rootdir, self.cwd)
            for n in self.k.failing
            if self.k.file_of(n) not in chosen
        ]
        failed = [a for a in failed if self._matches(a)]
        if not files and not failed:
            return Plan(f"{what}: no test affected", None)
        label = f"{what}: {_plural(len(files), 'test file')}"
        count = self.k.count(f for f in selected if self.roots.contains(f))
        if count is not None and not any(x in chosen for x in w.changed):
            label += f", {_plural(count, 'test')}"
        if failed:
            label += f" + {len(failed)} that failed"
        # What a full run imports and registers, these tests see too (not when
        # the user narrowed the run to some files).
        along = [] if self.file_filter else self.roots.narrow(set(w.companions) - chosen)
        if along:
            label += f" + {_plural(len(along), 'registering file')}"
        options = wa.with_keyword(self.options, self.name_filter)
        return Plan(label, [*options, *files, *along, *failed])

    def key_plan(self, action: str) -> Plan | None:
        if action == "rerun":
            return self.last or self.full_plan("rerun: all tests")
        if action == "all":
            self.file_filter = self.name_filter = None
            return self.full_plan("all tests")
        if action == "failed":
            self.k.forget_deleted()
            ids = [wa.node_arg(n, self.k.rootdir, self.cwd) for n in self.k.failing]
            if not ids:
                self.term.line("no failed tests to run")
                return None
            return Plan(f"{_plural(len(ids), 'failed test')}", [*self.options, *ids])
        if action == "file":
            self.file_filter = self.term.prompt("test file pattern (a regex; empty: all): ") or None
            return self.full_plan(
                f"test files matching {self.file_filter!r}"
                if self.file_filter
                else "all test files"
            )
        self.name_filter = self.term.prompt("test name (-k expression; empty: all): ") or None
        return self.full_plan(
            f"tests matching {self.name_filter!r}" if self.name_filter else "all tests"
        )

    # -- running --------------------------------------------------------------------------

    def execute(self, plan: Plan, cause: object = None) -> bool:
        """Run a plan with its header and footer; True when the user interrupted it."""
        self.term.header(plan.label)
        if plan.args is None:
            return False
        self.last = plan
        try:
            os.unlink(self.report)
        except FileNotFoundError:
            pass
        started = time.monotonic()
        with self.term.cooked():
            code, interrupted = self._run(plan.args)
        elapsed = time.monotonic() - started
        report = self._read_report()
        if report is not None:
            self.k.learn(report, plan.full)
            self.roots.set_default(self.k.default_roots)
        parts = []
        if isinstance(cause, lite.Watched) and (cause.ready_ms is not None or cause.replaced):
            parts.append(_reload_text(cause))
        parts.append(f"run {elapsed:.2f} s")
        parts.append(f"exit {code}")
        if self.k.failing:
            parts.append(f"{len(self.k.failing)} failing")
        self.term.footer(" · ".join(parts))
        return interrupted

    def _run(self, args: list[str]) -> tuple[int, bool]:
        full = [*args, "-p", REPORT_PLUGIN]
        follow = Follow()
        try:
            sock = connect(self.socket_path, timeout=None)
        except FastCollectError as exc:
            notice(f"{exc.message}; running without the daemon")
            return self._cold(full), False
        with contextlib.closing(sock):
            env = {**os.environ, **self.run_env}
            code = run_through(sock, full, self.cwd, self.sys_path, self.argv0, env, follow)
        if follow.signal is not None:
            raise SystemExit(128 + follow.signal)  # SIGTERM, SIGHUP: the run ended, so do we
        if code is None:
            code = self._cold(full)
        return code, follow.interrupts > 0

    def _cold(self, args: list[str]) -> int:
        env = dict(os.environ, PYTEST_FASTCOLLECT_DISABLE="1")
        return subprocess.call([*self.cold_command, *args], cwd=self.cwd, env=env)

    def _read_report(self) -> dict[str, Any] | None:
        try:
            with open(self.report) as fh:
                data: dict[str, Any] = json.load(fh)
        except (OSError, ValueError):
            return None
        return data


def _reload_text(w: lite.Watched) -> str:
    ready = "" if w.ready_ms is None else f"{w.ready_ms:.0f} ms"
    if w.replaced:
        return f"restarted the warm process ({w.replaced[-1]}) {ready}".strip()
    if w.reloaded:
        return f"reload {ready} ({_plural(w.reloaded, 'module')})"
    return f"reload {ready}".strip()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
