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
from pytest_fastcollect.paths import ProjectFiles, ensure_runtime_dir, project_files
from pytest_fastcollect.settings import DaemonSettings
from pytest_fastcollect.supervisor.core import DaemonConfig, Supervisor, process_layers
from pytest_fastcollect.supervisor.runtime import AlreadyRunning, Runtime
from pytest_fastcollect.supervisor.server import Server
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
        files = project_files(ns.root, ensure_runtime_dir())
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
    settings: DaemonSettings = ns.settings
    log_fd = setup_logging(str(files.log), settings.log_level)
    try:
        listener = runtime.bind(backlog=max(settings.max_connections, 16))
    except OSError as exc:
        log.error("Cannot create socket: %s", exc)
        progress.emit(p.StartFailed(message=f"Cannot create socket: {exc}"))
        runtime.release()
        return None
    return Claimed(files, runtime, log_fd, listener)


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
        sup.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    sup.start_watching()
    server = Server(sup, claimed.listener)
    threading.Thread(target=server.serve_forever, name="accept", daemon=True).start()

    wp = sup.start()
    if wp.ready is None:
        progress.emit(p.StartFailed(message=wp.error or "the warm process failed to start"))
        log.error("Warm process failed to start: %s", wp.error)
        exit_code = 1
        sup.stop_event.set()
    else:
        write_record(claimed, config, wp.pid)
        ready = p.StartReady(
            pid=os.getpid(),
            socket_path=config.socket_path,
            log_path=config.log_path,
            warmup=sup.warmup(),
        )
        progress.emit(ready)
        exit_code = 0
    progress.close()
    sup.stop_event.wait()
    log.info("Daemon %d stopping", os.getpid())
    try:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        claimed.listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    claimed.listener.close()
    sup.shutdown()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    ns = parse(sys.argv[1:] if argv is None else argv)
    progress = ProgressPipe(ns.progress_fd)
    claimed = claim(ns, progress)
    if claimed is None:
        return 1
    config = daemon_config(ns, claimed.files)
    write_record(claimed, config, None)
    try:
        return serve(claimed, config, progress)
    finally:
        claimed.runtime.release()
        log.info("Daemon %d stopped", os.getpid())


if __name__ == "__main__":
    sys.exit(main())
