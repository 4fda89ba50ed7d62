"""The two ways into watch mode: ``pytest --daemon-watch`` and ``pytest-fastcollect watch``.

Runs in the client. ``from_config`` is the verb (called with pytest's config,
before any conftest is imported: it may start the daemon in-process as
``--daemon-start`` does); ``thin_main`` is the thin client's, which never
imports pytest (it starts a daemon with ``pytest --daemon-start``). Both
hand over to ``watch.Watch``. The thin client finds the daemon as
``pytest-fastcollect run`` does (``client/route.py``: the rootdir pytest
would choose for the arguments).
"""

from __future__ import annotations

import os
import subprocess
import sys

from pytest_fastcollect.client.transport import connect
from pytest_fastcollect.client.watch import Daemon, Watch
from pytest_fastcollect.errors import DaemonError, Exit, FastCollectError
from pytest_fastcollect.settings import ENV_DISABLE, disabled_by_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pytest


def cold_command() -> list[str]:
    """The ordinary pytest next to this interpreter (what a cold run executes)."""
    script = os.path.join(os.path.dirname(sys.executable), "pytest")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "pytest"]


def from_config(config: pytest.Config, clear: bool) -> int:
    """``pytest --daemon-watch [ARGS]``: the verb, before any conftest is imported."""
    from pytest_fastcollect import fingerprint
    from pytest_fastcollect.client import commands, starting, ui
    from pytest_fastcollect.client.transport import lock_is_free
    from pytest_fastcollect.paths import ensure_runtime_dir, project_files

    files = project_files(config.rootpath, ensure_runtime_dir())

    # Before conftests and test modules change it, as for a run handed off.
    sys_path = fingerprint.interpreter_sys_path(fingerprint.ini_pythonpath(config))

    def start() -> Daemon:
        if lock_is_free(files):
            commands.check_footprint(config)
            try:
                ready = starting.spawn_supervisor(
                    config, starting.warm_args_from(config), wait=True, sys_path=sys_path
                )
            except DaemonError:
                if lock_is_free(files):
                    raise
            else:
                assert ready is not None
                sys.stdout.write(ui.render_started(ready, str(files.root)))
        return Daemon(str(files.socket), sys_path)

    args = [a for a in config.invocation_params.args if not a.startswith("--daemon-")]
    return Watch(
        args,
        str(config.invocation_params.dir),
        sys.argv[0] if sys.argv else "pytest",
        start,
        cold_command(),
        clear=clear,
    ).main()


THIN_USAGE = "usage: pytest-fastcollect watch [--clear] [PYTEST ARGS...]"


def thin_main(argv: list[str]) -> int:
    """``pytest-fastcollect watch [--clear] ARGS``: the same loop, without importing pytest."""
    clear = "--clear" in argv
    args = [a for a in argv if a != "--clear"]
    if any(a.startswith("--daemon-") or a in ("-h", "--help") for a in args):
        sys.stdout.write(THIN_USAGE + "\n")
        return int(Exit.USAGE)
    cwd = os.getcwd()
    command = cold_command()

    def start() -> Daemon:
        found = _route(args, cwd)
        if found is None:
            env = dict(os.environ)
            env.pop(ENV_DISABLE, None)
            code = subprocess.call([*command, "--daemon-start", *args], cwd=cwd, env=env)
            found = _route(args, cwd)
            if code != 0 or found is None:
                raise DaemonError(f"could not start a daemon here (exit code {code})")
        return found

    if disabled_by_env():
        sys.stderr.write(
            f"pytest-fastcollect: error: watch mode needs the daemon; unset {ENV_DISABLE}\n"
        )
        return int(Exit.USAGE)
    return Watch(args, cwd, command[-1], start, command, clear=clear).main()


def _route(args: list[str], cwd: str) -> Daemon | None:
    """The daemon that serves the rootdir pytest would choose for ``args``, if it answers."""
    from pytest_fastcollect import fingerprint
    from pytest_fastcollect.client import route as routing

    found = routing.route(args, cwd)
    if not isinstance(found, routing.Route) or not _answers(found.socket):
        return None
    return Daemon(
        found.socket,
        # No pytest here: sys.path holds none of its ini pythonpath copies.
        fingerprint.interpreter_sys_path((), cwd),
        routing.run_env(found.setup),
    )


def _answers(socket_path: str) -> bool:
    try:
        connect(socket_path, timeout=5).close()
    except FastCollectError:
        return False
    return True
