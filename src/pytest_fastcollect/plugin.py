"""pytest hooks: the ``--daemon-*`` options, the verbs, and the early hand-off.

Loaded in every pytest process of an environment where the plugin is
installed, so it stays small and imports the rest lazily. The hand-off runs
in ``pytest_load_initial_conftests`` as the outermost wrapper: after pytest
found the rootdir and ini file, before any conftest is imported, before
output capturing starts and before the full argument parse.

What it does depends on the process's role (``role.py``): in a user's
pytest process, the verbs and the hand-off; in the warm process warming
up, nothing; in a forked run, the hooks the warm side registered (the
option check that refuses a run the warm process cannot serve exactly).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Generator
from types import FrameType
from typing import NoReturn

import pytest

from pytest_fastcollect import role, settings
from pytest_fastcollect.client import verbs


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    _add_options(parser)
    if role.current() is role.Role.CLIENT:
        _early_handoff(parser, pluginmanager)


def _add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastcollect", "pytest-fastcollect daemon")
    for verb in verbs.VERBS:
        group.addoption(verb.flag, action="store_true", dest=verb.dest, help=verb.help)
    for modifier in verbs.MODIFIERS:
        group.addoption(modifier.flag, action="store_true", dest=modifier.dest, help=modifier.help)
    group.addoption(
        verbs.NO_DAEMON_FLAG,
        action="store_true",
        dest="no_daemon",
        help="Run in this process even if a daemon serves the project "
        f"(also: {settings.ENV_DISABLE}=1).",
    )
    settings.add_ini_options(parser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None]:
    current = role.current()
    if current is role.Role.WORKER:
        role.run_worker_hooks(early_config)
    elif current is role.Role.CLIENT:
        ns = early_config.known_args_namespace
        given = verbs.given(ns)
        if len(given) > 1:
            flags = " and ".join(v.flag for v in given)
            raise pytest.UsageError(f"{flags} do not go together; give one --daemon-* command")
        if given:
            raise SystemExit(verbs.run(given[0], early_config))
        for modifier in verbs.modifiers_given(ns):
            raise pytest.UsageError(modifier.usage())
        # The daemon serves the pytest command. pytest.main() runs in its
        # caller's process: the plugin objects it may pass cannot travel.
        if not role.handoff_claimed() and _called_by_console(sys._getframe(0)):
            from pytest_fastcollect.client import handoff

            code = handoff.try_handoff(early_config)
            if code is not None:
                _leave(code)
    return (yield)


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
    config = pluginmanager.get_plugin("pytestconfig")
    if not isinstance(config, pytest.Config):
        return
    args = _cli_args_being_parsed(config)
    if args is None or not role.claim_handoff():
        return
    from pytest_fastcollect.client import handoff

    try:
        ns = parser.parse_known_args(args, namespace=copy.copy(config.option))
    except (pytest.UsageError, SystemExit):
        # pytest reports the bad arguments itself, with every plugin loaded.
        return
    if verbs.given(ns) or verbs.modifiers_given(ns):
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


def pytest_configure(config: pytest.Config) -> None:
    if role.current() is role.Role.CLIENT:
        # A bad daemon_* value stops a cold run here, before its first test
        # (a run handed off was checked before the hand-off).
        settings.check_all(config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if role.current() is not role.Role.CLIENT:
        return
    if not settings.ini_value(session.config, "daemon_autostart"):
        return
    from pytest_fastcollect.client import handoff

    handoff.autostart(session.config)
