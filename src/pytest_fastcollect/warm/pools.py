"""Thread pools of the loaded libraries, and how many threads each runs now.

Runs in the warm process (``threads.fork_safety`` asks it before every fork).
Standard library and ctypes only: it never starts a thread and never loads a
library (every dlopen here passes RTLD_NOLOAD). Libraries are listed with
dl_iterate_phdr on Linux (cached on glibc's load and unload counters) and
through dyld on macOS (untested here). Which pools are fork-safe, and why,
is explained in ``threads.py``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pool:
    """A thread pool found in a loaded library, and how to read its size now.

    ``workers`` returns the pool's live threads (never the caller's), or None
    when the library cannot tell. ``key`` identifies the pool instance: two
    loaded names can reach one library (Debian's openblas ``libblas.so.3``
    resolves symbols in ``libopenblas.so.0``), and dlsym answers through
    dependencies, so a symbol's address is what tells instances apart.
    """

    library: str
    fork_safe: bool
    workers: Callable[[], int | None]
    key: int
    note: str
    # Holding the handle keeps the library mapped while workers() reads its
    # globals (ctypes never dlcloses; this makes it explicit).
    handle: ctypes.CDLL | None = field(default=None, repr=False, compare=False)


# --- loaded libraries ----------------------------------------------------------


class _PhdrInfo(ctypes.Structure):
    # glibc's struct dl_phdr_info up to dlpi_subs; the callback's size
    # argument says whether the counters are present.
    _fields_ = [
        ("addr", ctypes.c_void_p),
        ("name", ctypes.c_char_p),
        ("phdr", ctypes.c_void_p),
        ("phnum", ctypes.c_uint16),
        ("adds", ctypes.c_ulonglong),
        ("subs", ctypes.c_ulonglong),
    ]


_PHDR_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(_PhdrInfo), ctypes.c_size_t, ctypes.c_void_p
)
_COUNTERS_END = _PhdrInfo.subs.offset + ctypes.sizeof(ctypes.c_ulonglong)


@functools.cache
def _dl_iterate_phdr() -> ctypes._NamedFuncPointer:
    iterate = ctypes.CDLL(None).dl_iterate_phdr
    iterate.argtypes = [_PHDR_CALLBACK, ctypes.c_void_p]
    iterate.restype = ctypes.c_int
    return iterate


def _linux_libraries(known: object) -> tuple[object, list[str] | None]:
    """(a key for the set of loaded libraries, their paths or None if the key is ``known``).

    glibc's load and unload counters change whenever a library comes or goes,
    so the first callback tells whether a cached list is still right.
    """
    found: list[str] = []
    keys: list[object] = []

    def visit(info: ctypes._Pointer[_PhdrInfo], size: int, _data: int | None) -> int:
        entry = info.contents
        if not keys:
            keys.append((entry.adds, entry.subs) if size >= _COUNTERS_END else None)
            if keys[0] is not None and keys[0] == known:
                return 1  # stops the walk: nothing changed
        if entry.name:
            found.append(os.fsdecode(entry.name))
        return 0

    _dl_iterate_phdr()(_PHDR_CALLBACK(visit), None)
    key = keys[0] if keys else None
    return key, (None if key is not None and key == known else found)


# --- macOS: untested here (no macOS machine); kept small on purpose -------------


def _darwin_libraries(known: object) -> tuple[object, list[str] | None]:
    # dyld's image list. Images are practically never unloaded on macOS, so
    # their count is the key.
    libc = ctypes.CDLL(None)
    count = int(libc._dyld_image_count())
    if count == known:
        return count, None
    libc._dyld_get_image_name.restype = ctypes.c_char_p
    libc._dyld_get_image_name.argtypes = [ctypes.c_uint32]
    paths: list[str] = []
    for index in range(count):
        raw = libc._dyld_get_image_name(index)
        if raw:
            paths.append(os.fsdecode(raw))
    return count, paths


class _ProcTaskInfo(ctypes.Structure):
    # <sys/proc_info.h> struct proc_taskinfo, the PROC_PIDTASKINFO flavour.
    _fields_ = [
        ("virtual_size", ctypes.c_uint64),
        ("resident_size", ctypes.c_uint64),
        ("total_user", ctypes.c_uint64),
        ("total_system", ctypes.c_uint64),
        ("threads_user", ctypes.c_uint64),
        ("threads_system", ctypes.c_uint64),
        ("policy", ctypes.c_int32),
        ("faults", ctypes.c_int32),
        ("pageins", ctypes.c_int32),
        ("cow_faults", ctypes.c_int32),
        ("messages_sent", ctypes.c_int32),
        ("messages_received", ctypes.c_int32),
        ("syscalls_mach", ctypes.c_int32),
        ("syscalls_unix", ctypes.c_int32),
        ("csw", ctypes.c_int32),
        ("threadnum", ctypes.c_int32),
        ("numrunning", ctypes.c_int32),
        ("priority", ctypes.c_int32),
    ]


_PROC_PIDTASKINFO = 4


def darwin_thread_count() -> int | None:
    # The call psutil makes for num_threads: one syscall, no Mach ports to free.
    info = _ProcTaskInfo()
    try:
        got = ctypes.CDLL(None).proc_pidinfo(
            os.getpid(),
            _PROC_PIDTASKINFO,
            ctypes.c_uint64(0),
            ctypes.byref(info),
            ctypes.sizeof(info),
        )
    except (AttributeError, OSError):
        return None
    return int(info.threadnum) if got == ctypes.sizeof(info) else None


# --- what each thread-pool library says ----------------------------------------


_Probe = Callable[[ctypes.CDLL], "Pool | None"]


def _symbol(lib: ctypes.CDLL, name: str) -> ctypes._CFunctionType | None:
    try:
        return getattr(lib, name)  # type: ignore[no-any-return]
    except AttributeError:
        return None


def _address(lib: ctypes.CDLL, name: str) -> int | None:
    try:
        return ctypes.addressof(ctypes.c_char.in_dll(lib, name))
    except ValueError:
        return None


def _openblas_affixes(lib: ctypes.CDLL) -> tuple[str, str] | None:
    # numpy's and scipy's copies prefix and suffix the public names
    # (scipy_openblas_get_num_threads64_); the internal globals stay plain.
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            if _symbol(lib, f"{prefix}openblas_get_num_threads{suffix}") is not None:
                return prefix, suffix
    return None


def _openblas(lib: ctypes.CDLL) -> Pool | None:
    affixes = _openblas_affixes(lib)
    if affixes is None:
        return None
    prefix, suffix = affixes
    get_num = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
    get_parallel = _symbol(lib, f"{prefix}openblas_get_parallel{suffix}")
    # 0: built single-threaded; 2: runs on OpenMP, whose runtime owns the threads.
    parallel = get_parallel() if get_parallel is not None else 1
    avail_at = _address(lib, "blas_server_avail")
    size_at = _address(lib, "blas_num_threads")
    key = ctypes.cast(get_num, ctypes.c_void_p).value or 0

    def workers() -> int | None:
        if parallel != 1:
            return 0
        if avail_at is None or size_at is None:
            return _openblas_without_internals(int(get_num()))
        if not ctypes.c_int.from_address(avail_at).value:
            return 0  # shut down, by its own fork handler at the last fork
        # The pool is blas_num_threads - 1 workers; the caller is the last one.
        return max(ctypes.c_int.from_address(size_at).value - 1, 0)

    note = "OpenBLAS (its fork handler stops the pool)"
    if parallel == 2:
        note = "OpenBLAS on OpenMP (threads accounted to the OpenMP runtime)"
    return Pool("openblas", True, workers, key, note)


def _openblas_without_internals(configured: int) -> int | None:
    """Builds that hide OpenBLAS's globals (scipy-openblas in numpy >= 2.5): its pool is
    either running, ``configured`` - 1 workers, or stopped by its fork handler; the
    thread count says which. Any other count is left unexplained (unsafe)."""
    size = max(configured - 1, 0)
    if sys.platform.startswith("linux"):
        try:
            extra = len(os.listdir("/proc/self/task")) - 1
        except OSError:
            return None
    else:
        total = darwin_thread_count()
        if total is None:
            return None
        extra = total - 1
    return size if extra >= size else 0


def _kmp(lib: ctypes.CDLL) -> Pool | None:
    registered = _symbol(lib, "__kmpc_global_num_threads")
    if registered is None:
        return None
    registered.argtypes = [ctypes.c_void_p]
    registered.restype = ctypes.c_int32

    def workers() -> int | None:
        # The main thread counts once it used OpenMP (0 before any region).
        return max(int(registered(None)) - 1, 0)

    key = ctypes.cast(registered, ctypes.c_void_p).value or 0
    return Pool("libomp", True, workers, key, "LLVM/Intel OpenMP (its fork handler resets it)")


def _gomp(lib: ctypes.CDLL) -> Pool | None:
    marker = _symbol(lib, "GOMP_parallel") or _symbol(lib, "GOMP_parallel_start")
    if marker is None:
        return None
    key = ctypes.cast(marker, ctypes.c_void_p).value or 0
    note = (
        "libgomp (GNU OpenMP) is loaded: once a parallel region ran, a forked child "
        "entering one hangs"
    )
    return Pool("libgomp", False, lambda: None, key, note)


def _owns_none(library: str, markers: tuple[str, ...], note: str) -> _Probe:
    def probe(lib: ctypes.CDLL) -> Pool | None:
        for marker in markers:
            found = _symbol(lib, marker)
            if found is not None:
                key = ctypes.cast(found, ctypes.c_void_p).value or 0
                return Pool(library, True, lambda: 0, key, note)
        return None

    return probe


def _torch(lib: ctypes.CDLL) -> Pool | None:
    # No C symbol to ask; the handle's identity is the key.
    key = int(lib._handle)
    note = "torch is loaded (its pools run on OpenMP or cannot be counted)"
    return Pool("torch", False, lambda: 0, key, note)


# (how the file is named, how to ask it); matched on the lower-cased path.
_PROBES: tuple[tuple[Callable[[str, str], bool], _Probe], ...] = (
    (lambda base, path: "openblas" in path, _openblas),
    (lambda base, path: base.startswith(("libomp", "libiomp")), _kmp),
    (lambda base, path: base.startswith("libgomp"), _gomp),
    (
        lambda base, path: base.startswith(("libmkl_rt", "libmkl_core")),
        _owns_none(
            "mkl",
            ("MKL_Get_Max_Threads", "mkl_serv_get_version"),
            "MKL (runs on its OpenMP or TBB runtime)",
        ),
    ),
    (
        lambda base, path: base.startswith("libblis"),
        _owns_none("blis", ("bli_thread_get_num_threads",), "BLIS (starts threads per call)"),
    ),
    (lambda base, path: base.startswith("libtorch_cpu"), _torch),
)


def _probe(path: str) -> list[Pool]:
    lowered = path.lower()
    base = os.path.basename(lowered)
    pools: list[Pool] = []
    lib: ctypes.CDLL | None = None
    for matches, probe in _PROBES:
        if not matches(base, lowered):
            continue
        if lib is None:
            try:
                # NOLOAD: only a library that is already loaded. The handle
                # pins it, so its globals stay mapped while a Pool reads them.
                lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
            except OSError:
                return pools
        found = probe(lib)
        if found is not None:
            pools.append(dataclasses.replace(found, handle=lib))
    return pools


class _Libraries:
    """The thread-pool libraries loaded now, rebuilt only when libraries change."""

    def __init__(self) -> None:
        self._key: object = None
        self._pools: tuple[Pool, ...] = ()
        self._probed: dict[str, list[Pool]] = {}

    def pools(self) -> tuple[Pool, ...]:
        if sys.platform.startswith("linux"):
            key, paths = _linux_libraries(self._key)
        elif sys.platform == "darwin":
            key, paths = _darwin_libraries(self._key)
        else:
            return ()
        if paths is None:
            return self._pools
        unique: dict[int, Pool] = {}
        for path in paths:
            if path not in self._probed:
                self._probed[path] = _probe(path)
            for pool in self._probed[path]:
                unique.setdefault(pool.key, pool)
        self._key, self._pools = key, tuple(unique.values())
        return self._pools


_LIBRARIES = _Libraries()


def thread_pools() -> tuple[Pool, ...]:
    """The thread-pool libraries loaded in this process, one entry per instance.

    Empty where libraries cannot be listed; then no native thread is
    explained, which keeps the verdict on the unsafe side.
    """
    try:
        return _LIBRARIES.pools()
    except (AttributeError, OSError, ValueError):
        return ()


# --- the verdict -----------------------------------------------------------------
