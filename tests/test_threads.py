"""warm/threads.py: fork-safety verdicts, each scenario in a fresh interpreter.

Every scenario runs in its own ``python -c`` process, because threads and
loaded libraries are per process and never go away. The native-library
cases build tiny C libraries with gcc in tmp_path and skip without it. A safe
verdict is checked in fact: the scenario forks and the child computes.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PRELUDE = """
import json, os, sys, time
from pytest_fastcollect.warm import threads

def report(**extra):
    info = threads.fork_safety().info()
    info.update(extra)
    print(json.dumps(info), flush=True)

def fork_and_wait(child, timeout=20.0):
    # The child's exit code, or "hung" after timeout (then it is killed).
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if child() else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""

# Knobs that change pool sizes; the scenarios set what they need.
POOL_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS")

PARALLEL_C = r"""
#include <omp.h>
/* Sums 0..n-1 in a parallel region; returns the team size. */
int region(long n, double *out) {
    double s = 0; int team = 0;
    #pragma omp parallel reduction(+:s)
    {
        #pragma omp single
        team = omp_get_num_threads();
        #pragma omp for
        for (long i = 0; i < n; i++) s += (double)i;
    }
    *out = s;
    return team;
}
"""

SLEEPER_C = r"""
#include <pthread.h>
#include <unistd.h>
static void *sleeper(void *arg) { (void)arg; for (;;) pause(); return 0; }
/* Starts one native thread that never calls into Python. */
int start(void) { pthread_t t; return pthread_create(&t, 0, sleeper, 0); }
"""

# Loads the library at LIB; region() runs one parallel region and checks its sum.
REGION_PY = """
lib = ctypes.CDLL(LIB)
def region():
    out = ctypes.c_double()
    team = lib.region(ctypes.c_long(100000), ctypes.byref(out))
    return team, out.value == 100000 * 99999 / 2
"""


def scenario(
    body: str, env: dict[str, str] | None = None, setup: str = "", timeout: float = 120
) -> dict[str, Any]:
    """Run PRELUDE + setup + body in a fresh interpreter; its last stdout line as JSON."""
    full_env = {k: v for k, v in os.environ.items() if k not in POOL_ENV}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + setup + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _gcc(*args: str) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    proc = subprocess.run([gcc, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"gcc {' '.join(args)} failed: {proc.stderr.strip()[:300]}")


def compile_c(tmp_path: Path, name: str, source: str, *flags: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / f"lib{name}.so"
    _gcc("-O2", "-shared", "-fPIC", *flags, str(src), "-o", str(out))
    return out


def region_setup(lib: Path, runtime: str | None = None) -> str:
    """Scenario setup: load ``lib`` (after ``runtime``, globally) and define region()."""
    first = f"ctypes.CDLL({runtime!r}, mode=ctypes.RTLD_GLOBAL)\n" if runtime else ""
    return f"import ctypes\n{first}LIB = {str(lib)!r}\n{REGION_PY}"


@pytest.fixture
def gomp_lib(tmp_path: Path) -> Path:
    return compile_c(tmp_path, "par", PARALLEL_C, "-fopenmp")


def test_plain_interpreter_is_safe_with_one_thread() -> None:
    result = scenario("report()")
    assert result["safe"] is True
    assert result["os_threads"] == 1
    assert result["native"] == {}
    assert result["reason"] == "the main thread only"


def test_running_threading_thread_is_unsafe() -> None:
    result = scenario(
        """
        import threading
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait, name="poller", daemon=True)
        worker.start()
        report()
        stop.set()
        worker.join()
        """
    )
    assert result["safe"] is False
    assert result["os_threads"] == 2
    assert "'poller'" in result["reason"]


def test_start_new_thread_thread_is_unsafe() -> None:
    result = scenario(
        """
        import _thread, threading
        started, stop = _thread.allocate_lock(), _thread.allocate_lock()
        started.acquire(); stop.acquire()
        def hidden_worker():
            started.release()
            stop.acquire()
        _thread.start_new_thread(hidden_worker, ())
        started.acquire()
        report(enumerated=len(threading.enumerate()))
        stop.release()
        """
    )
    assert result["enumerated"] == 1  # invisible to threading: frames must catch it
    assert result["safe"] is False
    assert "outside threading" in result["reason"]
    assert "hidden_worker" in result["reason"]


def test_unknown_native_thread_is_unsafe(tmp_path: Path) -> None:
    lib = compile_c(tmp_path, "sleeper", SLEEPER_C, "-pthread")
    result = scenario(
        f"""
        import ctypes
        assert ctypes.CDLL({str(lib)!r}).start() == 0
        while len(os.listdir("/proc/self/task")) < 2:
            time.sleep(0.001)
        report()
        """
    )
    assert result["safe"] is False
    assert result["os_threads"] == 2
    assert result["native"] == {"unexplained": 1}
    assert result["reason"].startswith("1 native thread not explained by a fork-safe pool")


def test_numpy_import_is_safe_with_openblas_accounted() -> None:
    pytest.importorskip("numpy")
    result = scenario(
        """
        import numpy
        report()
        """
    )
    assert result["safe"] is True, result["reason"]
    assert "openblas" in result["libraries"]
    # One worker fewer than cores on import (none on a single core).
    assert result["native"].get("openblas", 0) == result["os_threads"] - 1


def test_openblas_pool_size_is_read_not_its_thread_limit() -> None:
    # openblas_set_num_threads(n) below the pool size keeps the workers: the
    # verdict must count the pool (blas_num_threads), not the limit.
    pytest.importorskip("numpy")
    result = scenario(
        """
        import numpy
        pool = next(p for p in threads.thread_pools() if p.library == "openblas")
        setter = next(
            getattr(pool.handle, name)
            for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                         "openblas_set_num_threads")
            if hasattr(pool.handle, name)
        )
        setter(4)
        numpy.ones((300, 300)) @ numpy.ones((300, 300))
        setter(2)
        report()
        """
    )
    assert result["safe"] is True, result["reason"]
    assert result["os_threads"] == 4
    assert result["native"] == {"openblas": 3}


def test_numpy_after_matmul_is_safe_in_fact() -> None:
    pytest.importorskip("numpy")
    result = scenario(
        """
        import numpy as np
        rng = np.random.default_rng(0)
        big = rng.random((1200, 1200))
        big @ big
        a = rng.random((500, 500))
        expected = a @ a
        before = threads.fork_safety()
        assert before.safe, before.reason
        code = fork_and_wait(lambda: np.allclose(a @ a, expected))
        after = threads.fork_safety()  # OpenBLAS stopped its pool for the fork
        report(before=before.info(), child=code)
        """
    )
    before = result["before"]
    assert before["safe"] is True
    assert before["native"].get("openblas", 0) == before["os_threads"] - 1
    assert result["child"] == 0
    assert result["os_threads"] == 1


def test_stopped_openblas_pool_explains_no_thread(tmp_path: Path) -> None:
    # After a fork OpenBLAS's pool is down (blas_server_avail == 0) while its
    # size is unchanged: counting it then would hide an unknown thread.
    pytest.importorskip("numpy")
    lib = compile_c(tmp_path, "sleeper", SLEEPER_C, "-pthread")
    result = scenario(
        f"""
        import ctypes, numpy
        assert any(pool.library == "openblas" for pool in threads.thread_pools())
        assert fork_and_wait(lambda: True) == 0
        assert ctypes.CDLL({str(lib)!r}).start() == 0
        while len(os.listdir("/proc/self/task")) < 2:
            time.sleep(0.001)
        report()
        """,
        env={"OPENBLAS_NUM_THREADS": "2"},
    )
    assert "openblas" in result["libraries"]
    assert result["os_threads"] == 2
    assert result["native"] == {"unexplained": 1}
    assert result["safe"] is False


def test_libgomp_after_parallel_region_is_unsafe(gomp_lib: Path) -> None:
    result = scenario(
        "team, ok = region()\nreport(team=team, ok=ok)",
        env={"OMP_NUM_THREADS": "2"},
        setup=region_setup(gomp_lib),
    )
    assert (result["team"], result["ok"]) == (2, True)
    assert result["safe"] is False
    assert "libgomp" in result["libraries"]
    assert result["native"] == {"unexplained": 1}
    assert "libgomp (GNU OpenMP)" in result["reason"]


def test_libgomp_child_hangs_after_parent_region(gomp_lib: Path) -> None:
    # Why libgomp is never explained: the unsafe verdict is true in fact.
    result = scenario(
        "region()\nreport(child=fork_and_wait(lambda: region()[1], timeout=3.0))",
        env={"OMP_NUM_THREADS": "2"},
        setup=region_setup(gomp_lib),
    )
    assert result["child"] == "hung"


def test_libgomp_without_region_is_safe_in_fact(gomp_lib: Path) -> None:
    result = scenario(
        """
        before = threads.fork_safety()
        report(before=before.info(), child=fork_and_wait(lambda: region() == (2, True)))
        """,
        env={"OMP_NUM_THREADS": "2"},
        setup=region_setup(gomp_lib),
    )
    assert result["before"]["safe"] is True
    assert result["before"]["os_threads"] == 1
    assert "libgomp" in result["before"]["libraries"]
    assert result["child"] == 0


def _kmp_runtime() -> str | None:
    for name in ("omp", "iomp5"):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def test_llvm_or_intel_openmp_pool_is_safe_in_fact(tmp_path: Path) -> None:
    runtime = _kmp_runtime()
    if runtime is None:
        pytest.skip("neither LLVM libomp nor Intel libiomp5 is installed")
    # Compiled for OpenMP but linked without a runtime: the GOMP_* entry
    # points resolve to the LLVM/Intel runtime, loaded globally first.
    src, obj, lib = tmp_path / "par.c", tmp_path / "par.o", tmp_path / "libpar_kmp.so"
    src.write_text(PARALLEL_C)
    _gcc("-O2", "-fPIC", "-fopenmp", "-c", str(src), "-o", str(obj))
    _gcc("-shared", str(obj), "-o", str(lib))
    result = scenario(
        """
        team, ok = region()
        before = threads.fork_safety()
        report(team=team, ok=ok, before=before.info(), child=fork_and_wait(lambda: region()[1]))
        """,
        env={"OMP_NUM_THREADS": "3"},
        setup=region_setup(lib, runtime),
    )
    assert (result["team"], result["ok"]) == (3, True)
    assert result["before"]["safe"] is True, result["before"]["reason"]
    assert result["before"]["native"] == {"libomp": 2}
    assert result["child"] == 0


def test_verdict_is_cheap() -> None:
    pytest.importorskip("numpy")
    result = scenario(
        """
        import statistics
        def median_ms():
            threads.fork_safety()  # the first call probes the libraries
            samples = []
            for _ in range(200):
                start = time.perf_counter()
                threads.fork_safety()
                samples.append((time.perf_counter() - start) * 1000)
            return statistics.median(samples)
        plain = median_ms()
        import numpy
        report(plain=plain, numpy=median_ms())
        """
    )
    # Measured about 0.01 ms and 0.02 ms; the bounds leave room for a busy machine.
    assert result["plain"] < 0.5
    assert result["numpy"] < 2.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/task")
def test_openblas_without_its_globals_is_judged_by_the_thread_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # numpy 2.5's OpenBLAS hides blas_server_avail and blas_num_threads.
    from pytest_fastcollect.warm import pools

    def tasks(n: int) -> None:
        monkeypatch.setattr(pools.os, "listdir", lambda _path: [str(i) for i in range(n)])

    tasks(4)  # the main thread and a running pool of 4 (the caller is the 4th)
    assert pools._openblas_without_internals(4) == 3
    tasks(1)  # stopped by its fork handler
    assert pools._openblas_without_internals(4) == 0
    tasks(2)  # one thread the pool cannot be: left unexplained
    assert pools._openblas_without_internals(4) == 0
