"""Which daemon a ``pytest ARGS`` command goes to, decided without importing pytest.

Shared by the thin client (``pytest-fastcollect run``) and the start-up hook
(client/early.py). The answer is a ``Route`` (this daemon serves the
rootdir pytest would choose, and nothing in the command asks to run
in-process) or ``Defer``: let pytest itself decide, through the plugin's
own hand-off, which honours every option and prints every notice. So a
``Defer`` is never a silent cold run; it only gives up the shortcut.

Standard library only and cheap: the start-up hook runs this in every
``pytest`` command of the environment, with or without a daemon.
"""

from __future__ import annotations

import os

from pytest_fastcollect.settings import ENV_DISABLE, disabled_by_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from pytest_fastcollect import rootdir


class Route:
    __slots__ = ("setup", "socket")

    def __init__(self, socket: str, setup: rootdir.Setup) -> None:
        self.socket = socket
        self.setup = setup

    def __repr__(self) -> str:
        return f"Route(socket={self.socket!r}, rootdir={self.setup.rootdir!r})"


class Defer:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Defer({self.reason!r})"


def route(args: Sequence[str], cwd: str) -> Route | Defer:
    """Where ``pytest ARGS`` run in ``cwd`` (with this environment) should go."""
    if disabled_by_env():
        return Defer(f"{ENV_DISABLE} is set")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return Defer("an xdist worker")
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        # Then the plugin is loaded only if -p or PYTEST_PLUGINS names it.
        return Defer("PYTEST_DISABLE_PLUGIN_AUTOLOAD is set")
    from pytest_fastcollect.errors import FastCollectError
    from pytest_fastcollect.paths import check_runtime_dir, runtime_dir_name, socket_path

    # The common case when no daemon runs: one directory listing, no parsing.
    runtime = runtime_dir_name()
    try:
        names = os.listdir(runtime)
    except OSError:
        return Defer("no daemon runs")
    if not any(name.endswith(".sock") for name in names):
        return Defer("no daemon runs")
    try:
        check_runtime_dir(runtime)
    except (FastCollectError, OSError):
        return Defer(f"{runtime} is not a private directory")  # the plugin says more
    from pytest_fastcollect import rootdir

    setup = rootdir.determine(args, cwd, cache_dir=runtime)
    if isinstance(setup, rootdir.Undecided):
        return Defer(setup.reason)
    reason = run_here(setup)
    if reason is not None:
        return Defer(reason)
    try:
        path = socket_path(setup.rootdir)
    except FastCollectError as exc:
        return Defer(exc.message)
    if not os.path.exists(path):
        return Defer(f"no daemon serves {setup.rootdir}")
    return Route(path, setup)


# The verbs the start-up hook answers itself (client/fastverbs.py), by flag.
QUICK_VERBS = {"--daemon-status": "status", "--daemon-health": "health"}
JSON_FLAG = "--daemon-json"


def quick_verb(args: Sequence[str]) -> tuple[str, bool] | None:
    """(verb, as JSON) when ``args`` are one quick verb and maybe ``--daemon-json``.

    Nothing else may be on the command line: another option or a path could
    change the rootdir or be an error pytest reports, so those go to pytest.
    """
    verbs = [QUICK_VERBS[arg] for arg in args if arg in QUICK_VERBS]
    rest = [arg for arg in args if arg not in QUICK_VERBS]
    if len(verbs) != 1 or rest not in ([], [JSON_FLAG]):
        return None
    return verbs[0], bool(rest)


def run_here(setup: rootdir.Setup) -> str | None:
    """Why the plugin would not hand this command off (or might not), else None.

    ``setup.args`` holds ini ``addopts``, ``PYTEST_ADDOPTS`` and the command
    line, as pytest has them when it loads this plugin.
    """
    options = setup.options
    for dest in ("help", "version", "disable_plugin_autoload"):
        if dest in options:
            return f"--{dest.replace('_', '-')}"
    if any("fastcollect" in value for value in setup.plugin_args):
        return "-p names this plugin"
    for arg in setup.args:
        if arg == "--no-daemon" or arg.startswith(("--no-daemon=", "--daemon-")):
            return arg
        if arg == "--cov" or arg.startswith("--cov="):
            return "--cov"  # the plugin says why it runs without the daemon
    if _overrides_a_setting(setup.args):
        # The plugin checks daemon_* values before it hands off (a bad one
        # stops the run with one line); the daemon's own were checked at start.
        return "-o daemon_*: the plugin checks the value"
    for arg in setup.unknown:
        # -nh: -n and -h, or -n with the value "h"? It depends on the plugins.
        if not arg.startswith("--") and ("h" in arg or "V" in arg):
            return f"{arg}: cannot tell whether it asks for help or the version"
    return None


def _overrides_a_setting(args: Sequence[str]) -> bool:
    """Whether ``args`` hold ``-o daemon_*=...`` (or ``--override-ini``), in any spelling."""
    values = []
    for i, arg in enumerate(args):
        if arg in ("-o", "--override-ini") and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith("--override-ini="):
            values.append(arg.removeprefix("--override-ini="))
        elif arg.startswith("-o") and not arg.startswith("--"):
            values.append(arg[2:])
    return any(value.strip().startswith("daemon_") for value in values)


def run_env(setup: rootdir.Setup) -> dict[str, str]:
    """The environment the plugin would send: pytest 8.2+ sets PYTEST_VERSION first."""
    from pytest_fastcollect import rootdir

    env = dict(os.environ)
    if setup.version >= (8, 2):
        version = rootdir.installed_pytest_version_string()
        if version is not None:
            env["PYTEST_VERSION"] = version
    return env
