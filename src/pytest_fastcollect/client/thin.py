"""``pytest-fastcollect run ARGS...``: run through the daemon without importing pytest.

For editors, scripts and the fastest path. Finds the daemon that serves the
rootdir pytest would choose for ARGS (client/route.py); when it cannot tell,
or the command asks to run in-process, or no daemon serves that rootdir, it
executes the ordinary ``pytest`` with the same arguments (whose plugin then
decides for itself); when the daemon refuses the run, it executes ``pytest``
with the daemon turned off. So the outcome is always that of pytest.

``pytest-fastcollect watch ARGS...`` is watch mode (``client/watch_cli.py``).
"""

from __future__ import annotations

import os
import sys

USAGE = (
    "usage: pytest-fastcollect run [PYTEST ARGS...]\n"
    "       pytest-fastcollect watch [--clear] [PYTEST ARGS...]"
)


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
    from pytest_fastcollect.client import route as routing

    cwd = os.getcwd()
    found = routing.route(args, cwd)
    if not isinstance(found, routing.Route):
        return _exec_pytest(args, skip_daemon=False)
    from pytest_fastcollect import fingerprint
    from pytest_fastcollect.client.handoff import notice, run_through
    from pytest_fastcollect.client.transport import connect
    from pytest_fastcollect.errors import DaemonConnectionError, RuntimeDirError

    try:
        sock = connect(found.socket, timeout=None)
    except RuntimeDirError as exc:
        notice(f"{exc.message}; running pytest without the daemon")
        return _exec_pytest(args)
    except DaemonConnectionError:
        notice("the daemon is not answering; running pytest without it")
        return _exec_pytest(args)
    # sys.argv[0] of the pytest this stands in for (the one _exec_pytest runs).
    script = os.path.join(os.path.dirname(sys.executable), "pytest")
    argv0 = script if os.path.exists(script) else "pytest"
    # No pytest here: sys.path holds none of its ini pythonpath copies.
    sys_path = fingerprint.interpreter_sys_path((), cwd)
    try:
        code = run_through(sock, args, cwd, sys_path, argv0, env=routing.run_env(found.setup))
    finally:
        sock.close()
    if code is None:
        return _exec_pytest(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
