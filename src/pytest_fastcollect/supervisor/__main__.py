"""Entry point of the daemon process: ``python -m pytest_fastcollect.supervisor``.

Started detached (new session, stdio on /dev/null) by ``pytest --daemon-start``.
Reports start-up progress over an inherited pipe, which it closes once warm,
so the starting command returns promptly and the daemon keeps none of its
file descriptors.
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

import psutil

from pytest_fastcollect import __version__
from pytest_fastcollect.paths import ensure_runtime_dir, project_files
from pytest_fastcollect.supervisor.daemon import DaemonConfig, Limits, Supervisor
from pytest_fastcollect.supervisor.runtime import AlreadyRunning, Runtime
from pytest_fastcollect.supervisor.server import Server
from pytest_fastcollect.supervisor.watcher import Watcher
from pytest_fastcollect.wire import protocol as p

log = logging.getLogger("pytest_fastcollect.daemon")

LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


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


def setup_logging(path: str, level: str) -> int:
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS
    )
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s")
    )
    root = logging.getLogger("pytest_fastcollect")
    root.addHandler(handler)
    root.setLevel(level)
    assert handler.stream is not None
    return handler.stream.fileno()


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="pytest-fastcollect-daemon")
    ap.add_argument("--root", required=True)
    ap.add_argument("--cwd", required=True)
    ap.add_argument("--progress-fd", type=int, default=None)
    ap.add_argument("--sys-path0", default=None)
    ap.add_argument("--max-connections", type=int, default=10)
    ap.add_argument("--max-request-bytes", type=int, default=10 * 1024 * 1024)
    ap.add_argument("--request-timeout", type=float, default=30.0)
    ap.add_argument("--debounce", type=float, default=0.02)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--polling", action="store_true")
    ap.add_argument("--no-learn-imports", dest="learn_imports", action="store_false")
    ap.add_argument("warm_args", nargs=argparse.REMAINDER)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse(sys.argv[1:] if argv is None else argv)
    progress = ProgressPipe(ns.progress_fd)
    try:
        files = project_files(ns.root, ensure_runtime_dir())
    except Exception as exc:
        progress.emit(p.StartFailed(message=str(exc)))
        return 1
    runtime = Runtime(files)
    try:
        runtime.acquire()
    except AlreadyRunning:
        progress.emit(
            p.StartFailed(
                message=f"a daemon is already running for {files.root}", already_running=True
            )
        )
        return 1
    log_fd = setup_logging(str(files.log), ns.log_level.upper())
    try:
        listener = runtime.bind(backlog=max(ns.max_connections, 16))
    except OSError as exc:
        log.error("Cannot create socket: %s", exc)
        progress.emit(p.StartFailed(message=f"Cannot create socket: {exc}"))
        runtime.release()
        return 1
    warm_args = list(ns.warm_args)
    if warm_args[:1] == ["--"]:
        warm_args = warm_args[1:]
    me = psutil.Process()

    def write_record(warm_pid: int | None) -> None:
        runtime.write_record(
            p.DaemonRecord(
                pid=me.pid,
                create_time=me.create_time(),
                root=str(files.root),
                socket_path=str(files.socket),
                log_path=str(files.log),
                version=__version__,
                warm_pid=warm_pid,
                warm_args=warm_args,
                cwd=ns.cwd,
            )
        )

    write_record(None)
    limits = Limits(
        max_connections=ns.max_connections,
        max_request_bytes=ns.max_request_bytes,
        request_timeout=ns.request_timeout,
        debounce=ns.debounce,
        learn_imports=ns.learn_imports,
    )
    config = DaemonConfig(
        root=str(files.root),
        socket_path=str(files.socket),
        log_path=str(files.log),
        cache_dir=str(files.cache),
        cwd=ns.cwd,
        env=dict(os.environ),
        sys_path0=ns.sys_path0,
        warm_args=warm_args,
        limits=limits,
    )
    sup = Supervisor(config, log_fd)
    sup.progress_cb = lambda ev: progress.emit(p.StartProgress(done=ev.done, total=ev.total))
    log.info(
        "Daemon %d starting for %s (pytest-fastcollect %s)", os.getpid(), files.root, __version__
    )

    def on_signal(signum: int, _frame: object) -> None:
        sup.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    watcher = Watcher(str(files.root), sup.note_changes, force_polling=ns.polling)
    try:
        sup.watcher_kind = watcher.start()
    except Exception as exc:
        log.warning("No file watcher (%s); relying on the per-run stat sweep", exc)
        sup.watcher_kind = "none"
    server = Server(sup, listener)
    threading.Thread(target=server.serve_forever, name="accept", daemon=True).start()
    sup.site_dirs = [
        d for d in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(d)
    ]

    wp = sup.start_warm()
    if wp.ready is None:
        progress.emit(p.StartFailed(message=wp.error or "the warm process failed to start"))
        log.error("Warm process failed to start: %s", wp.error)
        exit_code = 1
        sup.stop_event.set()
    else:
        write_record(wp.pid)
        progress.emit(
            p.StartReady(
                pid=os.getpid(),
                socket_path=str(files.socket),
                log_path=str(files.log),
                warmup=sup.warmup,
            )
        )
        exit_code = 0
    progress.close()
    sup.stop_event.wait()
    log.info("Daemon %d stopping", os.getpid())
    try:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()
    watcher.stop()
    sup.shutdown()
    runtime.release()
    log.info("Daemon %d stopped", os.getpid())
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
