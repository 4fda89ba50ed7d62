"""Is a fork() of this process safe now? Its threads, told apart by who started them.

Runs in the warm process before every fork (and in learn.py's trial child), so
the common path must stay cheap: with one OS thread it costs a listing of
/proc/self/task, two interpreter calls and one dl_iterate_phdr step that
shows no library came or went (about 10 us; with numpy's OpenBLAS pool
running about 20 us; the first call after a library load probes the new
libraries, under 1 ms). Standard library and ctypes only; it never starts a
thread and never loads a library (every dlopen here passes RTLD_NOLOAD).
On macOS threads are counted with proc_pidinfo and libraries listed through
dyld; that path is untested here. Elsewhere native threads are not counted.

The rule it applies:

- A Python thread (in ``threading.enumerate()``, or any frame in
  ``sys._current_frames()``, which also sees ``_thread.start_new_thread``)
  makes a fork unsafe: the child would inherit locks that thread holds.
- Native threads are accounted to the loaded libraries that run thread pools,
  each asked for its live pool size through ctypes. If fork-safe pools
  explain every thread besides the main one, a fork is safe; any thread they
  do not explain makes it unsafe. When in doubt (a library cannot say, the
  account does not add up), unsafe.

Which pools are fork-safe was measured, not assumed (a child forked after the
pool ran, then used it again):

- OpenBLAS, pthread build (numpy's and scipy's bundled ``libscipy_openblas``,
  distribution ``libopenblas``): its pthread_atfork prepare handler shuts the
  pool down before every fork, so the child starts without one and restarts
  it on first use. Its size is read from its exported globals
  ``blas_server_avail`` and ``blas_num_threads``; ``openblas_get_num_threads``
  is only the current limit and drops below the pool size after
  ``openblas_set_num_threads(n)`` with a smaller n.
- LLVM libomp and Intel libiomp5: their fork handler resets the runtime in
  the child. ``__kmpc_global_num_threads`` gives the threads registered with
  the runtime, the main thread among them once it used OpenMP.
- libgomp (GCC's OpenMP, also bundled by torch and scikit-learn wheels): not
  fork-safe. Once a parallel region ran, its idle pool threads stay, and a
  forked child that enters a parallel region hangs (GCC bug 60035). It has no
  call that tells its pool size, so its threads are never explained; with no
  pool yet (no region ran) there is nothing to explain and forking is safe.
- MKL and BLIS own no idle threads: MKL runs on its OpenMP (or TBB) runtime,
  whose threads are accounted there; BLIS starts and joins threads per call.
  torch runs its intra-op work on libgomp; its inter-op pool cannot be
  counted. They are recognised so that a verdict can name them.

Thread names do not tell pools apart (OpenBLAS and libgomp workers inherit
the name "python"); they only go into the reason of an unsafe verdict.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypedDict

from pytest_fastcollect.warm import pools
from pytest_fastcollect.warm.pools import Pool, thread_pools

# Account key for threads that no fork-safe pool explains.
UNEXPLAINED = "unexplained"

# A thread that has just been joined can linger in /proc/self/task while the
# kernel finishes its exit; an unexplained count is re-read a few times before
# it becomes an unsafe verdict. Only unsafe verdicts ever pay for this.
SETTLE_SECONDS = 0.002
SETTLE_STEP = 0.0005


class ForkSafetyInfo(TypedDict):
    """ForkSafety as JSON-friendly data, for status and health replies."""

    safe: bool
    reason: str
    os_threads: int | None
    native: dict[str, int]
    libraries: list[str]


@dataclass(frozen=True)
class ForkSafety:
    """The verdict: may this process fork now, and why.

    ``os_threads`` is None where the platform gives no count. ``native`` is
    the account of threads besides the main one, per library
    (``{"openblas": 1}``), with ``"unexplained"`` for the rest. ``libraries``
    names the thread-pool libraries that are loaded, with or without threads.
    """

    safe: bool
    reason: str
    os_threads: int | None
    native: dict[str, int] = field(default_factory=dict)
    libraries: tuple[str, ...] = ()

    def info(self) -> ForkSafetyInfo:
        return {
            "safe": self.safe,
            "reason": self.reason,
            "os_threads": self.os_threads,
            "native": dict(self.native),
            "libraries": list(self.libraries),
        }


# --- counting OS threads -------------------------------------------------------


def os_thread_count() -> int | None:
    """Threads of this process as the OS sees them; None where it cannot tell."""
    if sys.platform.startswith("linux"):
        try:
            return len(os.listdir("/proc/self/task"))
        except OSError:
            return None
    if sys.platform == "darwin":
        return pools.darwin_thread_count()
    return None


def _thread_names() -> list[str]:
    """Names of the threads besides the main one (Linux only; else empty)."""
    names: list[str] = []
    main = str(os.getpid())
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return names
    for tid in sorted(tids):
        if tid == main:
            continue
        try:
            with open(f"/proc/self/task/{tid}/comm", "rb") as fh:
                names.append(fh.read().strip().decode(errors="replace"))
        except OSError:
            pass  # it exited meanwhile
    return names


# --- Python threads ------------------------------------------------------------


def python_thread() -> str | None:
    """Why a Python thread besides this one makes a fork unsafe, or None."""
    me = threading.get_ident()
    for thread in threading.enumerate():
        if thread.ident != me:
            return f"a Python thread {thread.name!r} is running"
    # Threads started with _thread.start_new_thread are not in enumerate().
    for ident, frame in sys._current_frames().items():
        if ident != me:
            code = frame.f_code
            where = f"{code.co_name} at {os.path.basename(code.co_filename)}:{frame.f_lineno}"
            return f"a Python thread outside threading is running ({where})"
    return None


def _account(pools: tuple[Pool, ...]) -> tuple[dict[str, int], list[str]]:
    """Threads per library (fork-safe pools only), and the libraries that cannot tell."""
    native: dict[str, int] = {}
    unknown: list[str] = []
    for pool in pools:
        if not pool.fork_safe:
            continue
        count = pool.workers()
        if count is None:
            unknown.append(pool.library)
        elif count:
            native[pool.library] = native.get(pool.library, 0) + count
    return native, unknown


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _names(names: list[str]) -> Iterator[str]:
    counted: dict[str, int] = {}
    for name in names:
        counted[name] = counted.get(name, 0) + 1
    for name, count in sorted(counted.items()):
        yield name if count == 1 else f"{name} x{count}"


def _unsafe_reason(extra: int, explained: int, pools: tuple[Pool, ...], unknown: list[str]) -> str:
    if explained > extra:
        return (
            f"thread pools account for {_plural(explained, 'thread')} but only "
            f"{extra} besides the main thread exist; the account is not trusted"
        )
    missing = extra - explained
    text = f"{_plural(missing, 'native thread')} not explained by a fork-safe pool"
    unsafe = [pool.note for pool in pools if not pool.fork_safe]
    if unsafe:
        text += "; " + "; ".join(dict.fromkeys(unsafe))
    if unknown:
        text += f"; {', '.join(sorted(set(unknown)))} could not tell its pool size"
    names = list(_names(_thread_names()))
    if names:
        text += f" (thread names: {', '.join(names)})"
    return text


def fork_safety(settle: float = SETTLE_SECONDS) -> ForkSafety:
    """Whether forking this process now is safe, with a one-line reason.

    Call it right before each fork, from the thread that will fork. ``settle``
    bounds how long an unexplained thread count is re-read before the verdict
    is unsafe (threads that were just joined may still be exiting).
    """
    python = python_thread()
    count = os_thread_count()
    if python is not None:
        return ForkSafety(False, python, count)
    pools = thread_pools()
    libraries = tuple(dict.fromkeys(pool.library for pool in pools))
    if count is None:
        reason = "no Python thread; native threads cannot be counted here"
        return ForkSafety(True, reason, None, {}, libraries)
    if count == 1:
        return ForkSafety(True, "the main thread only", 1, {}, libraries)
    deadline = time.monotonic() + settle
    while True:
        native, unknown = _account(pools)
        explained = sum(native.values())
        extra = count - 1
        if extra == explained:
            accounted = ", ".join(f"{name}: {n}" for name, n in sorted(native.items()))
            reason = f"{_plural(extra, 'thread')} besides the main one, all in fork-safe pools ({accounted})"
            return ForkSafety(True, reason, count, native, libraries)
        if time.monotonic() >= deadline:
            break
        time.sleep(SETTLE_STEP)
        count = os_thread_count() or count
        if count == 1:
            return ForkSafety(True, "the main thread only", 1, {}, libraries)
    reason = _unsafe_reason(extra, explained, pools, unknown)
    if extra > explained:
        native[UNEXPLAINED] = extra - explained
    return ForkSafety(False, reason, count, native, libraries)
