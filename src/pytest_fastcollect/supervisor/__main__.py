"""Entry point of the daemon process: ``python -m pytest_fastcollect.supervisor``.

Started detached (new session, stdio on /dev/null) by ``pytest --daemon-start``.
Reports start-up progress over an inherited pipe, which it closes once warm,
so the starting command returns promptly and the daemon keeps none of its
file descriptors. Every way start-up can fail is reported over that pipe
in one line that names the cause, and leaves no file behind. Once serving,
the main thread checks twice a second that the daemon's files are still
its own (``selfcheck.py``).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import site
import socket
import sys
import threading
from pathlib import Path

import psutil

from pytest_fastcollect import __version__, processes
from pytest_fastcollect.paths import ProjectFiles, ensure_runtime_dir, project_files
from pytest_fastcollect.settings import DaemonSettings
from pytest_fastcollect.supervisor.core import DaemonConfig, Supervisor, process_layers
from pytest_fastcollect.supervisor.runtime import AlreadyRunning, Runtime
from pytest_fastcollect.supervisor.selfcheck import SELF_CHECK_INTERVAL, SelfCheck
from pytest_fastcollect.supervisor.server import BACKLOG, Server
from pytest_fastcollect.wire import protocol as p

log = logging.getLogger("pytest_fastcollect.daemon")

LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
# A supervisor of the same project found by process (its files deleted) is
# given this long to notice and exit before a new one gives up.
OTHER_SUPERVISOR_GRACE = 5.0
# On the way out, answers being sent get this long to leave.
REPLY_GRACE = 2.0


class ProgressPipe:
    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def emit(self, event: p.StartProgress | p.StartReady | p.StartFailed) -> None:
        with self._lock:
            if self.fd is None:
                return
            try:
                os.write(self.fd, p.dump(event) + b"\n")
            except OSError:
                # The starting command went away (Ctrl-C); the daemon carries on.
                self.close_locked()

    def close_locked(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


# Control characters in a message (a client's text in a rejection, say) are
# escaped: every log line is one line that the daemon wrote, never a forged one.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, 0x85)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


class OneLineFormatter(logging.Formatter):
    """One line per message; a traceback, when logged, follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_ESCAPES)
        return super().formatMessage(record)


def setup_logging(path: str, level: str) -> int:
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS
    )
    handler.setFormatter(
        OneLineFormatter("%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s")
    )
    root = logging.getLogger("pytest_fastcollect")
    root.addHandler(handler)
    root.setLevel(level)
    assert handler.stream is not None
    return handler.stream.fileno()


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="pytest-fastcollect-daemon")
    # What `ps` shows, so `pgrep -f pytest-fastcollect` finds it (processes.py).
    ap.add_argument("--title", default="")
    ap.add_argument("--root", required=True)
    ap.add_argument("--runtime-dir", default=None)
    ap.add_argument("--cwd", required=True)
    ap.add_argument("--progress-fd", type=int, default=None)
    ap.add_argument("--sys-path0", default=None)
    ap.add_argument(
        "--settings",
        type=DaemonSettings.from_json,
        default=DaemonSettings(),
        help="the resolved daemon settings, as JSON (settings.py)",
    )
    ap.add_argument("warm_args", nargs=argparse.REMAINDER)
    return ap.parse_args(argv)


class Claimed:
    """What a supervisor holds once it won the project: lock, log, socket."""

    def __init__(
        self, files: ProjectFiles, runtime: Runtime, log_fd: int, listener: socket.socket
    ) -> None:
        self.files = files
        self.runtime = runtime
        self.log_fd = log_fd
        self.listener = listener


def claim(ns: argparse.Namespace, progress: ProgressPipe) -> Claimed | None:
    """Take the lock, open the log, bind the socket; None (and a reason sent) if we cannot."""
    try:
        directory = Path(ns.runtime_dir) if ns.runtime_dir else None
        files = project_files(ns.root, ensure_runtime_dir(directory))
    except Exception as exc:
        progress.emit(p.StartFailed(message=str(exc)))
        return None
    runtime = Runtime(files)
    try:
        runtime.acquire()
    except AlreadyRunning:
        message = f"a daemon is already running for {files.root}"
        progress.emit(p.StartFailed(message=message, already_running=True))
        return None
    except OSError as exc:
        progress.emit(p.StartFailed(message=f"cannot create the lock {files.lock}: {exc.strerror}"))
        return None
    failure = _other_supervisor(files)
    if failure is not None:
        runtime.release()
        progress.emit(p.StartFailed(message=failure))
        return None
    settings: DaemonSettings = ns.settings
    try:
        log_fd = setup_logging(str(files.log), settings.log_level)
    except OSError as exc:
        runtime.release()
        progress.emit(p.StartFailed(message=f"cannot write the log {files.log}: {exc.strerror}"))
        return None
    try:
        listener = runtime.bind(backlog=BACKLOG)
    except OSError as exc:
        log.error("Cannot create socket: %s", exc)
        progress.emit(p.StartFailed(message=f"cannot create the socket {files.socket}: {exc}"))
        runtime.release()
        return None
    return Claimed(files, runtime, log_fd, listener)


def _other_supervisor(files: ProjectFiles) -> str | None:
    """A supervisor of this project that runs without its files (they were deleted):
    it notices and exits (``selfcheck.py``); wait for that, else do not start beside it.

    Only older ones count: a younger one is a concurrent start that loses the lock."""
    mine = psutil.Process().create_time()
    others = [
        proc
        for proc in processes.find_supervisors(str(files.root), str(files.directory))
        if _started_before(proc, mine)
    ]
    alive = processes.wait_gone(others, OTHER_SUPERVISOR_GRACE) if others else []
    if not alive:
        return None
    pids = ", ".join(str(proc.pid) for proc in alive)
    return (
        f"a daemon is already running for {files.root} (pid {pids}) without its files "
        f"in {files.directory}; stop it with: pytest --daemon-stop"
    )


def _started_before(proc: psutil.Process, create_time: float) -> bool:
    try:
        return proc.create_time() < create_time
    except psutil.Error:
        return False


def daemon_config(ns: argparse.Namespace, files: ProjectFiles) -> DaemonConfig:
    warm_args = list(ns.warm_args)
    if warm_args[:1] == ["--"]:
        warm_args = warm_args[1:]
    site_dirs = tuple(
        d for d in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(d)
    )
    return DaemonConfig(
        root=str(files.root),
        socket_path=str(files.socket),
        log_path=str(files.log),
        cache_dir=str(files.cache),
        cwd=ns.cwd,
        env=dict(os.environ),
        sys_path0=ns.sys_path0,
        warm_args=warm_args,
        settings=ns.settings,
        site_dirs=site_dirs,
    )


def write_record(claimed: Claimed, config: DaemonConfig, warm_pid: int | None) -> None:
    me = psutil.Process()
    claimed.runtime.write_record(
        p.DaemonRecord(
            pid=me.pid,
            create_time=me.create_time(),
            root=config.root,
            socket_path=config.socket_path,
            log_path=config.log_path,
            version=__version__,
            warm_pid=warm_pid,
            warm_args=config.warm_args,
            cwd=config.cwd,
        )
    )


def serve(claimed: Claimed, config: DaemonConfig, progress: ProgressPipe) -> int:
    """Start the warm process, serve until stopped; the exit code."""
    layers = process_layers(
        config,
        claimed.log_fd,
        lambda ev: progress.emit(p.StartProgress(done=ev.done, total=ev.total)),
    )
    sup = Supervisor(config, layers)
    log.info(
        "Daemon %d starting for %s (pytest-fastcollect %s)", os.getpid(), config.root, __version__
    )

    def on_signal(signum: int, _frame: object) -> None:
        if sup.stop_event.is_set():
            sup.force_stop.set()  # a second stop: runs in progress end now
        sup.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    sup.start_watching()
    server = Server(sup, claimed.listener)
    check = SelfCheck(
        claimed.runtime,
        sup,
        server,
        lambda warm_pid: write_record(claimed, config, warm_pid),
        BACKLOG,
    )
    # The record names the current warm process from the moment it serves.
    sup.on_adopted = check.record
    threading.Thread(target=server.serve_forever, name="accept", daemon=True).start()

    wp = sup.start()
    if wp.ready is None:
        progress.emit(p.StartFailed(message=wp.error or "the warm process failed to start"))
        log.error("Warm process failed to start: %s", wp.error)
        exit_code = 1
        sup.stop_event.set()
    else:
        ready = p.StartReady(
            pid=os.getpid(),
            socket_path=config.socket_path,
            log_path=config.log_path,
            warmup=sup.warmup(),
        )
        progress.emit(ready)
        exit_code = 0
    progress.close()
    while not sup.stop_event.wait(SELF_CHECK_INTERVAL):
        if not check.run_once():
            sup.stop_event.set()
    log.info("Daemon %d stopping", os.getpid())
    # Still listening: a second --daemon-stop ends the runs at once.
    sup.stop_runs()
    server.replace_listener(None)
    server.wait_replies(REPLY_GRACE)
    sup.shutdown()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    ns = parse(sys.argv[1:] if argv is None else argv)
    progress = ProgressPipe(ns.progress_fd)
    claimed = claim(ns, progress)
    if claimed is None:
        return 1
    try:
        config = daemon_config(ns, claimed.files)
        try:
            write_record(claimed, config, None)
        except OSError as exc:
            progress.emit(
                p.StartFailed(
                    message=f"cannot write the record {claimed.files.state}: {exc.strerror}"
                )
            )
            return 1
        return serve(claimed, config, progress)
    except Exception as exc:
        # Once warm, the pipe is closed and this only reaches the log.
        log.exception("Daemon %d failed", os.getpid())
        progress.emit(p.StartFailed(message=f"{type(exc).__name__}: {exc}"))
        return 1
    finally:
        claimed.runtime.release()
        log.info("Daemon %d stopped", os.getpid())


if __name__ == "__main__":
    sys.exit(main())
