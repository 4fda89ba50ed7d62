"""``pytest-fastcollect run ARGS...``: run through the daemon without importing pytest.

``pytest-fastcollect watch ARGS...`` is watch mode (``client/watch_cli.py``), the
same way.

For editors, scripts and the fastest path. Finds the daemon by walking up
from the current directory; if none serves it, or the daemon refuses the run,
it executes the ordinary ``pytest`` with the same arguments, so the outcome
is always that of pytest.
"""

from __future__ import annotations

import os
import sys

USAGE = (
    "usage: pytest-fastcollect run [PYTEST ARGS...]\n"
    "       pytest-fastcollect watch [--clear] [PYTEST ARGS...]"
)
COLD_ARGS = frozenset({"--no-daemon", "--help", "-h", "--version", "-V", "--cov"})


def find_daemon(start: str) -> str | None:
    """The socket of the daemon serving ``start`` or a directory above it."""
    from pytest_fastcollect.errors import FastCollectError
    from pytest_fastcollect.paths import socket_path

    here = os.path.realpath(start)
    while True:
        try:
            sock: str | None = socket_path(here)
        except FastCollectError:
            sock = None
        if sock is not None and os.path.exists(sock):
            return sock
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _exec_pytest(args: list[str], skip_daemon: bool = True) -> int:
    """Become the ordinary pytest (``skip_daemon``: it must not ask the daemon again)."""
    script = os.path.join(os.path.dirname(sys.executable), "pytest")
    env = dict(os.environ, PYTEST_FASTCOLLECT_DISABLE="1") if skip_daemon else dict(os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.path.exists(script):
        os.execve(script, [script, *args], env)
    os.execve(sys.executable, [sys.executable, "-m", "pytest", *args], env)
    return 127  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    code = _main(sys.argv[1:] if argv is None else argv)
    if argv is None:
        # The command line: nothing is left to do but exit.
        from pytest_fastcollect import process_exit

        process_exit.exit_now(code)
    return code


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE + "\n")
        return 0 if argv else 4
    if argv[0] == "watch":
        from pytest_fastcollect.client.watch_cli import thin_main

        return thin_main(argv[1:])
    if argv[0] != "run":
        sys.stderr.write(f"pytest-fastcollect: error: unknown command {argv[0]!r}\n{USAGE}\n")
        return 4
    args = argv[1:]
    from pytest_fastcollect.client.handoff import notice, run_through
    from pytest_fastcollect.client.transport import connect
    from pytest_fastcollect.settings import disabled_by_env, plugin_disabled

    # Verbs, --no-daemon, --help and --version are pytest's own business.
    if any(a in COLD_ARGS or a.startswith("--daemon-") for a in args) or plugin_disabled(
        args, os.environ.get("PYTEST_ADDOPTS", "")
    ):
        return _exec_pytest(args, skip_daemon=False)
    sock_path = find_daemon(os.getcwd())
    if sock_path is None or disabled_by_env():
        return _exec_pytest(args)
    from pytest_fastcollect.errors import DaemonConnectionError, RuntimeDirError

    try:
        sock = connect(sock_path, timeout=None)
    except RuntimeDirError as exc:
        notice(f"{exc.message}; running pytest without the daemon")
        return _exec_pytest(args)
    except DaemonConnectionError:
        notice("the daemon is not answering; running pytest without it")
        return _exec_pytest(args)
    # sys.argv[0] of the pytest this stands in for (the one _exec_pytest runs).
    script = os.path.join(os.path.dirname(sys.executable), "pytest")
    argv0 = script if os.path.exists(script) else "pytest"
    with sock:
        code = run_through(sock, args, os.getcwd(), list(sys.path), argv0)
    if code is None:
        return _exec_pytest(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
