"""pytest hooks: the ``--daemon-*`` options, the verbs, and the early hand-off.

Loaded in every pytest process of an environment where the plugin is
installed, so it stays small and imports the rest lazily. The hand-off runs
in ``pytest_load_initial_conftests`` as the outermost wrapper: after pytest
found the rootdir and ini file, before any conftest is imported, before
output capturing starts and before the full argument parse.

The same module plays three roles: ``client`` (a user's pytest process),
``warm`` (the warm process warming up; does nothing) and ``worker`` (a
forked run; checks that options read at import time match the warm
process, else refuses the run so the client runs it cold).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator

import pytest

_role = "client"
_warm_options: dict[str, str] | None = None
_refuse_fd: int | None = None

VERBS = (
    "daemon_start",
    "daemon_stop",
    "daemon_status",
    "daemon_health",
    "daemon_restart",
    "daemon_reload",
)


def become_worker(options: dict[str, str]) -> None:
    global _role, _warm_options
    _role = "worker"
    _warm_options = options


@contextlib.contextmanager
def warm_role() -> Iterator[None]:
    global _role
    saved, _role = _role, "warm"
    try:
        yield
    finally:
        _role = saved


def set_refuse_fd(fd: int) -> None:
    global _refuse_fd
    _refuse_fd = fd


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastcollect", "pytest-fastcollect daemon")
    group.addoption(
        "--daemon-start",
        action="store_true",
        dest="daemon_start",
        help="Start this project's daemon, warmed with the given paths and options, and exit.",
    )
    group.addoption(
        "--daemon-stop",
        action="store_true",
        dest="daemon_stop",
        help="Stop this project's daemon and remove its files (also stale ones), and exit.",
    )
    group.addoption(
        "--daemon-status",
        action="store_true",
        dest="daemon_status",
        help="Show this project's daemon: pid, files, warm-up, requests, reloads, resources.",
    )
    group.addoption(
        "--daemon-health",
        action="store_true",
        dest="daemon_health",
        help="Show health checks and the verdict (exit 7 unless healthy).",
    )
    group.addoption(
        "--daemon-restart",
        action="store_true",
        dest="daemon_restart",
        help="Stop the daemon and start it again (with the given paths, else the previous ones).",
    )
    group.addoption(
        "--daemon-reload",
        action="store_true",
        dest="daemon_reload",
        help="Replace the daemon's warm process with a freshly warmed one.",
    )
    group.addoption(
        "--daemon-json",
        action="store_true",
        dest="daemon_json",
        help="With --daemon-status or --daemon-health: print JSON.",
    )
    group.addoption(
        "--no-daemon",
        action="store_true",
        dest="no_daemon",
        help="Run in this process even if a daemon serves the project "
        "(also: PYTEST_FASTCOLLECT_DISABLE=1).",
    )
    parser.addini(
        "daemon_autostart",
        type="bool",
        default=False,
        help="Start the daemon in the background after a cold run (pytest-fastcollect).",
    )
    parser.addini(
        "daemon_max_connections", default="10", help="Daemon: concurrent connections (default 10)."
    )
    parser.addini(
        "daemon_max_request_bytes",
        default=str(10 * 1024 * 1024),
        help="Daemon: largest request in bytes (default 10 MB).",
    )
    parser.addini(
        "daemon_request_timeout",
        default="30",
        help="Daemon: seconds to read a request (default 30).",
    )
    parser.addini(
        "daemon_debounce_ms",
        default="20",
        help="Daemon: quiet period after file events (default 20).",
    )
    parser.addini("daemon_log_level", default="INFO", help="Daemon: log level (default INFO).")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None]:
    if _role == "worker":
        _check_worker_options(early_config)
    elif _role == "client":
        ns = early_config.known_args_namespace
        given = [v for v in VERBS if getattr(ns, v, False)]
        if len(given) > 1:
            flags = " and ".join("--" + v.replace("_", "-") for v in given)
            raise pytest.UsageError(f"{flags} do not go together; give one --daemon-* command")
        verb = given[0] if given else None
        if verb is not None:
            from pytest_fastcollect.client import commands

            raise SystemExit(commands.run_verb(verb, early_config))
        if getattr(ns, "daemon_json", False):
            raise pytest.UsageError("--daemon-json goes with --daemon-status or --daemon-health")
        from pytest_fastcollect.client import handoff

        code = handoff.try_handoff(early_config)
        if code is not None:
            raise SystemExit(code)
    return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _role != "client" or not session.config.getini("daemon_autostart"):
        return
    from pytest_fastcollect.client import handoff

    handoff.autostart(session.config)


def _check_worker_options(config: pytest.Config) -> None:
    global _refuse_fd
    # Only the run itself is checked, once: a pytest that a test runs in this
    # process (pytester's runpytest) has other options and must not refuse
    # the run half-way. The fd is closed so the tests do not inherit it.
    fd, _refuse_fd = _refuse_fd, None
    if _warm_options is None or fd is None:
        return
    from pytest_fastcollect import keys

    reasons = keys.option_differences(_warm_options, keys.option_key(config))
    if reasons:
        os.write(fd, reasons[0].encode())
        os._exit(keys.REFUSED_EXIT)
    os.close(fd)
