"""Hand the ``pytest`` command to its daemon before pytest is imported.

``pytest-fastcollect.pth`` in site-packages holds one line that Python runs
at start-up in every process of the environment. It looks at ``sys.argv``
(already set when ``.pth`` files run) and, unless this is the ``pytest``
command (``pytest``, ``py.test`` or ``python -m pytest``), does nothing at
all: no import, nothing left behind. In the ``pytest`` command it calls
``install()``, which puts a finder first on ``sys.meta_path``.

The finder acts once, when the first of ``pytest`` and ``_pytest`` is about
to be imported. By then every ``.pth`` file and ``sitecustomize`` has run
and the script's directory (or, for ``-m``, the working directory) is
``sys.path[0]``: ``sys.path`` is the one the plugin's hand-off would send,
which the supervisor compares with its warm process's. It checks that the
import comes from the console script itself (its text must be a console
script's and nothing more) or from runpy for ``python -m pytest``, asks
client/route.py where the run goes, and hands it off with the payload the
plugin path sends (arguments, working directory, environment with
``PYTEST_VERSION``, umask, ``sys.executable``, ``sys.path`` as the
interpreter set it up (pytest has inserted nothing yet), ``argv[0]``). The run's exit code ends the
process. Anything else (an unexpected error included) returns, and Python
imports pytest as usual: the plugin's own hand-off still runs. If the
daemon was asked and declined, ``State.declined`` tells the plugin not to ask
again, and pytest runs in this process after the notice.

``pytest --daemon-status`` and ``--daemon-health`` (alone, or with
``--daemon-json``) are answered here too, by client/fastverbs.py, when a
daemon serves the rootdir: they are asked for often and pytest's import
would be most of their cost.

``PYTEST_FASTCOLLECT_EARLY=0`` turns this off (the plugin path remains).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import FrameType

ENV_SWITCH = "PYTEST_FASTCOLLECT_EARLY"


class State:
    # The daemon was asked during start-up and declined (or failed before the
    # run started): the plugin must not ask it a second time.
    declined = False


# The lines a console script for pytest may hold (pip, distlib, uv, installer).
_SCRIPT_LINES = frozenset(
    {
        "# -*- coding: utf-8 -*-",
        "import re",
        "import sys",
        "from pytest import console_main",
        "from _pytest.config import _console_main",
        "if __name__ == '__main__':",
        'if __name__ == "__main__":',
        "sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])",
        "sys.argv[0] = sys.argv[0].removesuffix('.exe')",
        'if sys.argv[0].endswith("-script.pyw"):',
        "sys.argv[0] = sys.argv[0][:-11]",
        'elif sys.argv[0].endswith(".exe"):',
        "sys.argv[0] = sys.argv[0][:-4]",
        "sys.exit(console_main())",
        "sys.exit(_console_main())",
    }
)
_RUNPY = os.path.join(os.path.dirname(os.__file__), "runpy.py")
_SCRIPT_CALLS = {
    "from pytest import console_main": "sys.exit(console_main())",
    "from _pytest.config import _console_main": "sys.exit(_console_main())",
}


def install() -> None:
    """Called by the ``.pth`` line in a process that looks like the ``pytest`` command."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "false", "no", "off"):
        return
    # site may process the same .pth twice (a venv's lib64 -> lib symlink).
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


class _Finder:
    """Waits for the first import of pytest, acts once, then leaves ``sys.meta_path``."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name not in ("pytest", "_pytest"):
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            return None
        try:
            command = _command(sys._getframe(1))
        except Exception:
            command = None  # not one we recognise: pytest starts as usual
        if command is not None:
            _hand_off(*command)
        return None


def _command(frame: FrameType | None) -> tuple[list[str], str] | None:
    """(arguments, argv[0] as the plugin would send it) if this import is the
    ``pytest`` command starting, else None."""
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    if frame is None or not isinstance(getattr(sys, "argv", None), list) or not sys.argv:
        return None
    args = list(sys.argv[1:])
    if sys.argv[0] == "-m":
        return _as_module(frame, args)
    main = sys.modules.get("__main__")
    if (
        main is None
        or frame.f_code.co_name != "<module>"
        or frame.f_globals is not vars(main)
        or os.path.basename(sys.argv[0]) not in ("pytest", "py.test")
    ):
        return None
    fixes = _console_script_fixes(frame.f_globals.get("__file__"))
    if fixes is None:
        return None
    return args, _fix_argv0(sys.argv[0], fixes)


def _as_module(frame: FrameType, args: list[str]) -> tuple[list[str], str] | None:
    """``python -m pytest``: runpy is looking pytest up; argv[0] will be its __main__.py."""
    # importlib.util and runpy are frozen modules from Python 3.11 on.
    util = os.path.join("importlib", "util.py")
    while frame is not None and frame.f_code.co_filename.endswith(util):
        frame = frame.f_back  # type: ignore[assignment]
    if (
        frame is None
        or frame.f_code.co_filename not in ("<frozen runpy>", _RUNPY)
        or frame.f_locals.get("mod_name") != "pytest"
    ):
        return None
    orig = list(getattr(sys, "orig_argv", ()))
    cut = len(orig) - len(args)
    if cut < 3 or orig[cut - 2 : cut] != ["-m", "pytest"] or orig[cut:] != args:
        return None
    spec = _spec_of("pytest")
    if spec is None or not spec.origin or not spec.submodule_search_locations:
        return None
    return args, os.path.join(os.path.dirname(spec.origin), "__main__.py")


def _spec_of(name: str) -> ModuleSpec | None:
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is not None:
            spec: ModuleSpec | None = find_spec(name, None)
            if spec is not None:
                return spec
    return None


def _console_script_fixes(path: object) -> set[str] | None:
    """The lines of the console script at ``path``, if it is one for pytest and nothing more."""
    if not isinstance(path, str):
        return None
    try:
        with open(path, "rb") as fh:
            text = fh.read(8192).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = {line.strip() for line in text.splitlines()[1 if text.startswith("#!") else 0 :]}
    lines.discard("")
    if not lines <= _SCRIPT_LINES:
        return None
    if not any(imp in lines and call in lines for imp, call in _SCRIPT_CALLS.items()):
        return None
    return lines


def _fix_argv0(argv0: str, lines: set[str]) -> str:
    """``sys.argv[0]`` after the script's own fix-up (it runs after the import)."""
    if "sys.argv[0] = sys.argv[0].removesuffix('.exe')" in lines:
        return argv0.removesuffix(".exe")
    if lines & {"sys.argv[0] = sys.argv[0][:-11]", "sys.argv[0] = sys.argv[0][:-4]"} or any(
        line.startswith("sys.argv[0] = re.sub(") for line in lines
    ):
        for suffix in ("-script.pyw", ".exe"):
            if argv0.endswith(suffix):
                return argv0[: -len(suffix)]
    return argv0


def _hand_off(args: list[str], argv0: str) -> None:
    """Run ``pytest ARGS`` in the daemon and exit with its code, or return to run it here."""
    try:
        from pytest_fastcollect import fingerprint
        from pytest_fastcollect.client import route as routing

        cwd = os.getcwd()
        verb = routing.quick_verb(args)
        if verb is not None:
            # Before the interpreter check: a verb runs no code in the daemon.
            _quick_verb(*verb, cwd)
            return
        if fingerprint.interpreter_options():
            return  # the plugin says why the daemon cannot honour them
        found = routing.route(args, cwd)
        if not isinstance(found, routing.Route):
            return
        from pytest_fastcollect.client.handoff import run_through
        from pytest_fastcollect.client.transport import connect
        from pytest_fastcollect.errors import FastCollectError

        # pytest has not inserted its ini pythonpath copies yet: nothing to leave out.
        sys_path = fingerprint.interpreter_sys_path((), cwd)
        env = routing.run_env(found.setup)
        try:
            sock = connect(found.socket, timeout=None)
        except FastCollectError:
            return  # the plugin reports it and cleans up stale files
    except Exception:
        return  # whatever went wrong, the plugin path still hands off
    try:
        code = run_through(sock, args, cwd, sys_path, argv0, env=env)
    finally:
        sock.close()
    if code is None:
        State.declined = True
        return
    from pytest_fastcollect import process_exit

    process_exit.exit_now(code)


def _quick_verb(name: str, as_json: bool, cwd: str) -> None:
    """``pytest --daemon-status`` or ``--daemon-health``: answered here, or by the plugin.

    The rootdir is found as for a run with no arguments (the flags do not
    change it); no daemon serving it, or anything pytest would decide (an
    ini option that blocks the plugin, ...), returns to the plugin's verb.
    """
    from pytest_fastcollect.client import route as routing

    found = routing.route([], cwd)
    if not isinstance(found, routing.Route):
        return
    from pytest_fastcollect import process_exit
    from pytest_fastcollect.client import fastverbs

    process_exit.exit_now(fastverbs.serve(name, found.setup.rootdir, as_json))
