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
import copy
import os
import sys
from collections.abc import Generator, Iterator
from types import FrameType
from typing import NoReturn

import pytest

_role = "client"
_warm_options: dict[str, str] | None = None
_refuse_fd: int | None = None
_handoff_tried = False

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


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    _add_options(parser)
    if _role == "client":
        _early_handoff(parser, pluginmanager)


def _add_options(parser: pytest.Parser) -> None:
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
    parser.addini(
        "daemon_learn_imports",
        type="bool",
        default=True,
        help="Daemon: import in the warm process the library modules runs import lazily "
        "(default true).",
    )
    parser.addini("daemon_log_level", default="INFO", help="Daemon: log level (default INFO).")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None]:
    if _role == "worker":
        from pytest_fastcollect.warm import metadata_cache

        metadata_cache.uninstall()
        _check_worker_options(early_config)
        from pytest_fastcollect.warm import xdist_fork

        xdist_fork.start(early_config)  # before any conftest: xdist workers fork from here
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
        # The daemon serves the pytest command. pytest.main() runs in its
        # caller's process: the plugin objects it may pass cannot travel.
        if not _handoff_tried and _called_by_console(sys._getframe(0)):
            from pytest_fastcollect.client import handoff

            code = handoff.try_handoff(early_config)
            if code is not None:
                _leave(code)
    return (yield)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config) -> None:
    if _role == "worker":
        from pytest_fastcollect.warm import xdist_fork

        xdist_fork.route_gateways(config)


def _early_handoff(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Hand the run off while pytest is still loading plugins, if we can tell it is one.

    Registering this plugin calls ``pytest_addoption`` right away. When that
    happens inside the ``pytest`` command's own argument parse, while plugins
    are being loaded (before any conftest), the rootdir and ini file are
    known and the arguments are final; handing off here saves importing the
    plugins that come after this one. Anything else (``pytest.main()`` from
    Python, this plugin registered by a conftest) waits for
    ``pytest_load_initial_conftests``.
    """
    global _handoff_tried
    config = pluginmanager.get_plugin("pytestconfig")
    if not isinstance(config, pytest.Config):
        return
    args = _cli_args_being_parsed(config)
    if args is None:
        return
    _handoff_tried = True
    from pytest_fastcollect.client import handoff

    try:
        ns = parser.parse_known_args(args, namespace=copy.copy(config.option))
    except (pytest.UsageError, SystemExit):
        # pytest reports the bad arguments itself, with every plugin loaded.
        return
    if any(getattr(ns, flag, False) for flag in (*VERBS, "daemon_json")):
        return  # commands and their usage errors come later, with every plugin loaded
    code = handoff.try_handoff(config, ns=ns, args=args)
    if code is not None:
        _leave(code)


def _cli_args_being_parsed(config: pytest.Config) -> list[str] | None:
    """The argument list of ``Config.parse`` (addopts included) when this is
    the ``pytest`` command loading its plugins, else None."""
    parse_code = getattr(type(config).parse, "__code__", None)
    frame: FrameType | None = sys._getframe(1)
    loading_plugins = False
    while frame is not None and frame.f_code is not parse_code:
        name = frame.f_code.co_name
        if name in _CONFTEST_LOADERS:
            return None
        loading_plugins = loading_plugins or name in _PLUGIN_LOADERS
        frame = frame.f_back
    if frame is None or not loading_plugins or not _called_by_console(frame):
        return None
    args = frame.f_locals.get("args")
    return [str(a) for a in args] if isinstance(args, list) else None


_PLUGIN_LOADERS = frozenset({"load_setuptools_entrypoints", "consider_preparse", "consider_env"})
_CONFTEST_LOADERS = frozenset({"_importconftest", "pytest_load_initial_conftests"})


def _called_by_console(frame: FrameType | None) -> bool:
    """Whether the innermost pytest ``main`` around ``frame`` was called by the
    ``pytest`` command (``pytest`` script, ``python -m pytest``), not from Python."""
    config_file = getattr(sys.modules.get("_pytest.config"), "__file__", None)
    while frame is not None:
        code = frame.f_code
        if code.co_filename == config_file and code.co_name in ("_main", "main"):
            caller = frame.f_back
            return (
                caller is not None
                and caller.f_code.co_filename == config_file
                and caller.f_code.co_name in ("_console_main", "console_main")
            )
        frame = frame.f_back
    return False


def _leave(code: int) -> NoReturn:
    """The run is over (it ran in the daemon): the pytest command exits with its code."""
    from pytest_fastcollect import process_exit

    process_exit.exit_now(code)


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
