"""The Quick start's main job: one daemon's life on a copy of examples/basic.

Needs nothing but this package installed in the running interpreter's
environment (it drives the ``pytest`` script next to ``sys.executable``).
Works on a temporary copy of the example, with a private runtime directory,
so neither the repository nor a daemon of yours is touched. Whatever
happens, the daemon it started is stopped before it exits; the exit code is
0 only if every step did what it should.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTEST = Path(sys.executable).parent / "pytest"
# The client prints this (after a reason) whenever it runs a test session
# itself instead of handing it to the daemon.
COLD_FALLBACK = "running without the daemon"


class StepFailed(Exception):
    pass


def heading(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def pytest(
    project: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the pytest script in ``project`` and echo its output; return the result and wall time."""
    print(f"$ pytest {' '.join(args)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(
        [str(PYTEST), *args],
        check=False,
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - started
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    print(f"[exit code {result.returncode}, {elapsed:.2f}s]", flush=True)
    return result, elapsed


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def short_temp_dir() -> Path:
    # AF_UNIX socket paths are limited to about 100 bytes; a long $TMPDIR
    # (macOS) would leave too little room for <runtime>/<hash>.sock.
    base = tempfile.gettempdir()
    if len(base) > 40 and os.path.isdir("/tmp"):
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="fastcollect-demo-", dir=base))


def demo(project: Path, env: dict[str, str]) -> None:
    from pytest_fastcollect.daemon_client import DaemonClient, get_socket_path

    heading("1. Start the daemon: it warms up by importing every test module")
    result, _ = pytest(project, env, "--daemon-start", "tests")
    expect(result.returncode == 0, "pytest --daemon-start failed")
    expect("Pre-import complete:" in result.stdout, "--daemon-start did not report its warm-up")

    client = DaemonClient(get_socket_path(project))
    expect(client.is_daemon_running(), f"no daemon answers on {client.socket_path}")

    heading("2. Collect through the daemon (DaemonClient.collect)")
    everything = client.collect(project)
    seconds = everything["collection_time"]
    print(f"collect({project.name}): {everything['count']} tests in {seconds:.3f}s")
    for node_id in everything["node_ids"][:5]:
        print(f"  {node_id}")
    print(f"  ... and {everything['count'] - 5} more")
    expect(
        everything["count"] > 0 and not everything["errors"],
        f"collect failed: {everything['errors']}",
    )
    expect(everything["exit_code"] == 0, f"collect exit code {everything['exit_code']}")
    filters = {"-k": "TestCart and not quantity"}
    carts = client.collect(project, filters=filters)
    print(f"collect({project.name}, filters={filters}): {carts['count']} tests")
    for node_id in carts["node_ids"]:
        print(f"  {node_id}")
    expect(
        0 < carts["count"] < everything["count"]
        and all("TestCart" in n and "quantity" not in n for n in carts["node_ids"]),
        "the -k filter was not applied",
    )

    heading("3. Run the tests: first cold (--no-daemon), then through the daemon")
    cold, cold_time = pytest(project, env, "--no-daemon", "-q", "tests")
    expect(cold.returncode == 0, "the cold run failed")
    runs_before = client.get_status()["metrics"]["runs"]
    warm, warm_time = pytest(project, env, "-q", "tests")
    expect(warm.returncode == 0, "the run through the daemon failed")
    expect(
        COLD_FALLBACK not in warm.stderr,
        "the daemon did not serve the run (the client ran it itself)",
    )
    runs_after = client.get_status()["metrics"]["runs"]
    expect(
        runs_after == runs_before + 1, f"the daemon's run count went {runs_before} -> {runs_after}"
    )
    print(
        f"served by the daemon: its run count went {runs_before} -> {runs_after}; "
        f"cold {cold_time:.2f}s, through the daemon {warm_time:.2f}s"
    )

    heading("4. Status and health")
    status, _ = pytest(project, env, "--daemon-status")
    expect(status.returncode == 0, "pytest --daemon-status failed")
    health, _ = pytest(project, env, "--daemon-health")
    if health.returncode == 7:
        # Exit code 7 means "not healthy". Degraded (e.g. no inotify here, so
        # changes are found by polling) still serves correctly; unhealthy does not.
        verdict = client.get_health()["status"]
        expect(verdict == "degraded", f"the daemon is {verdict}")
        print("note: the daemon is degraded (see the checks marked above); it still serves runs")
    else:
        expect(health.returncode == 0, "pytest --daemon-health failed")


def running(pid: int) -> bool:
    """True while ``pid`` runs; an exited daemon waiting for its reaper does not count."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop(project: Path, env: dict[str, str], runtime: Path) -> bool:
    """Stop the daemon (if one runs) and check that nothing is left behind."""
    from pytest_fastcollect.daemon_client import DaemonClient, get_socket_path, stop_daemon

    heading("5. Stop the daemon")
    socket_path = get_socket_path(project)
    try:
        pid: int | None = int(DaemonClient(socket_path).get_status()["pid"])
    except Exception:
        pid = None
    result, _ = pytest(project, env, "--daemon-stop")
    # 6 = no daemon was running (start-up failed before there was one).
    ok = result.returncode == 0 or (result.returncode == 6 and pid is None)
    if pid is not None and running(pid):
        print(
            f"demo: the daemon (pid {pid}) is still running; stopping it through the API",
            flush=True,
        )
        stop_daemon(socket_path)
        ok = False
    key = Path(socket_path).stem
    leftovers = [
        name for name in (f"{key}.sock", f"{key}.lock", f"{key}.json") if (runtime / name).exists()
    ]
    if leftovers:
        print(f"demo: files left in the runtime directory: {', '.join(leftovers)}", flush=True)
        ok = False
    return ok


def main() -> int:
    if not PYTEST.exists():
        print(
            f"demo: no pytest script next to {sys.executable}; run this with the Python of the "
            "environment where pytest-fastcollect is installed",
            file=sys.stderr,
        )
        return 1
    work = short_temp_dir()
    project = work / "basic"
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700)
    shutil.copytree(
        HERE / "basic", project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
    )
    # Set here as well as for the children: get_socket_path() in this process
    # must find the same private runtime directory as the daemon.
    os.environ["PYTEST_FASTCOLLECT_RUNTIME_DIR"] = str(runtime)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_FASTCOLLECT_DISABLE"}
    print(f"demo: working on a copy of examples/basic in {project}")
    print(f"demo: private runtime directory {runtime}")
    failure: str | None = None
    try:
        demo(project, env)
    except StepFailed as exc:
        failure = str(exc)
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        stopped = stop(project, env, runtime)
        shutil.rmtree(work, ignore_errors=True)
    if failure is None and not stopped:
        failure = "the daemon did not stop cleanly"
    if failure is not None:
        print(f"\ndemo: FAILED: {failure}", file=sys.stderr)
        return 1
    print("\ndemo: all steps passed; the daemon is stopped and its files are gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
