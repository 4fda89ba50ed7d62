"""May this run come from the project layer, or would it see another file's imports?

Runs in the supervisor, on every run when the layer holds registrant modules
(``warm/registrants.py``: imported, they put something of theirs into
another module, say a plugin registry). A cold run of ``tests/test_a.py``
imports what that file, its conftests and their imports import; a layer
warmed with all of ``tests/`` also holds what ``tests/test_b.py`` imported.
If a registrant is among the latter, the run must not come from the layer:
it would see the registration, which a cold run never makes.

What the run imports for certain is under-estimated on purpose (explicit
files and directories, their conftest chain, and what the import graph
shows of their imports): a registrant the estimate misses sends the run to
the base process, which is exact, only slower.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
import time

from pytest_fastcollect.supervisor.graph import ImportGraph
from pytest_fastcollect.supervisor.lifecycle import WarmHandle

log = logging.getLogger("pytest_fastcollect.daemon")

# A run that comes while a scan is under way, and would go to the base
# unless the scan clears a module, waits this long for it (a pass over the
# heap in a child) rather than go to the base, which imports the project again.
SCAN_WAIT = 3.0

# pytest's own options that take a value as the next argument.
VALUE_OPTIONS = frozenset(
    [
        "-k",
        "-m",
        "-p",
        "-c",
        "-o",
        "-r",
        "-W",
        "--deselect",
        "--ignore",
        "--ignore-glob",
        "--rootdir",
        "--basetemp",
        "--confcutdir",
        "--junitxml",
        "--junit-xml",
        "--junitprefix",
        "--junit-prefix",
        "--tb",
        "--show-capture",
        "--durations",
        "--durations-min",
        "--maxfail",
        "--import-mode",
        "--capture",
        "--color",
        "--code-highlight",
        "--pastebin",
        "--log-level",
        "--log-format",
        "--log-date-format",
        "--log-cli-level",
        "--log-cli-format",
        "--log-cli-date-format",
        "--log-file",
        "--log-file-mode",
        "--log-file-level",
        "--log-file-format",
        "--log-file-date-format",
        "--log-auto-indent",
        "--log-disable",
        "--pdbcls",
        "--pythonwarnings",
        "--config-file",
        "--inifile",
        "--assert",
        "--verbosity",
        "--override-ini",
        "--report-log",
        "--timeout",
        "--timeout-method",
        "-n",
        "--numprocesses",
        "--dist",
        "--maxprocesses",
        "--max-worker-restart",
        "--tx",
        "--rsyncdir",
        "--cov",
        "--cov-report",
        "--cov-config",
        "--cov-fail-under",
        "--cov-context",
        "--asyncio-mode",
    ]
)
# Flags (no value) common enough to know; after an unknown option, a path may be its value.
FLAGS = frozenset(
    [
        "--lf",
        "--last-failed",
        "--ff",
        "--failed-first",
        "--nf",
        "--new-first",
        "--sw",
        "--stepwise",
        "--sw-skip",
        "--pdb",
        "--trace",
        "--co",
        "--collect-only",
        "--setup-only",
        "--setup-show",
        "--setup-plan",
        "--runxfail",
        "--strict-markers",
        "--strict-config",
        "--strict",
        "--no-header",
        "--no-summary",
        "--showlocals",
        "--full-trace",
        "--cache-clear",
        "--cache-show",
        "--exitfirst",
        "--verbose",
        "--quiet",
        "--fixtures",
        "--fixtures-per-test",
        "--markers",
        "--doctest-modules",
        "--no-cov",
        "--cov-append",
        "--cov-branch",
        "--no-daemon",
        "--disable-warnings",
        "--disable-pytest-warnings",
    ]
)
SHORT_VALUE = "kmpcorWn"  # pytest's short options that take a value
SHORT_FLAGS = "vqsxlh"
LAST_FAILED = frozenset({"--lf", "--last-failed"})
# Options after which no estimate can be trusted (positionals are not paths, or files vanish).
OPAQUE = frozenset({"--pyargs", "--ignore", "--ignore-glob", "--noconftest", "--confcutdir"})


class Isolation:
    def __init__(self, root: str, graph: ImportGraph) -> None:
        self.root = root
        self.graph = graph
        self.registrants: dict[str, str] | None = None  # file -> why; None: not scanned
        self._unverified: dict[str, int] = {}  # file re-imported -> reload number
        self._reloads = 0
        self._scan_from = 0
        # Test file -> module name, as the layer imported it: a reload purges
        # test modules until the next run or re-warm imports them again, and
        # what they import is still known from their source.
        self._test_names: dict[str, str] = {}
        self._scans = 0  # scans under way
        self._ended = 0  # scans ended so far
        self._scan_ended = threading.Condition()

    # -- what the layer holds ---------------------------------------------------------------

    def adopted(self, wp: WarmHandle) -> None:
        """A new layer: nothing is known of it until it is scanned."""
        self.registrants = None
        self._unverified.clear()
        self._test_names = {f: n for f, n in wp.modules.items() if f in wp.test_files}

    def reloaded(self, files: list[str]) -> None:
        """Re-imported modules may register differently now, until the next scan."""
        self._reloads += 1
        for path in files:
            self._unverified[path] = self._reloads

    def scan_started(self) -> int:
        with self._scan_ended:
            self._scans += 1
        return self._reloads

    def scan_ended(self) -> None:
        """A scan answered (after ``scanned``) or was abandoned."""
        with self._scan_ended:
            self._scans -= 1
            self._ended += 1
            self._scan_ended.notify_all()

    def scanning(self) -> int | None:
        """None when no scan is under way; else a mark for ``wait_for_scan``."""
        with self._scan_ended:
            return self._ended if self._scans > 0 else None

    def wait_for_scan(self, mark: int, deadline: float) -> bool:
        """Wait until a scan under way at ``mark`` ends; False when ``deadline`` comes first."""
        with self._scan_ended:
            while self._ended == mark and self._scans > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.info(
                        "The registrant scan takes over %.1f s; the run does not wait", SCAN_WAIT
                    )
                    return False
                self._scan_ended.wait(left)
        return True

    def has_unverified(self) -> bool:
        return bool(self._unverified)

    def scanned(self, found: dict[str, str] | None, started_at: int) -> None:
        """``found`` None: the scan failed (every module counts as a registrant)."""
        with self._scan_ended:
            self.registrants = found
            self._unverified = {p: n for p, n in self._unverified.items() if n > started_at}
        if found is None:
            log.warning("Registrant scan failed: every run that imports less comes from the base")
        elif found:
            names = ", ".join(sorted(os.path.relpath(p, self.root) for p in found))
            log.info(
                "Registrant modules (runs that do not import them come from the base): %s", names
            )

    def suspects(self, wp: WarmHandle) -> set[str]:
        held = set(wp.modules)
        if self.registrants is None:
            return held  # not scanned yet: any module may register
        return (set(self.registrants) | set(self._unverified)) & held

    # -- the run ------------------------------------------------------------------------------

    def verdict(self, wp: WarmHandle, args: list[str], cwd: str, addopts: str = "") -> str | None:
        """None: the layer serves the run exactly; else why it must come from the base.

        ``addopts``: the run's PYTEST_ADDOPTS, which pytest reads before ``args``.
        A run that would go to the base while a scan is under way (a new
        layer's first, or the one after a reload re-imported modules) waits
        for it and is judged again: the scan takes a fraction of what the
        base takes to import the project.
        """
        deadline = time.monotonic() + SCAN_WAIT
        while True:
            mark = self.scanning()
            apart = self._verdict_now(wp, args, cwd, addopts)
            if apart is None or mark is None or not self.wait_for_scan(mark, deadline):
                return apart

    def _verdict_now(self, wp: WarmHandle, args: list[str], cwd: str, addopts: str) -> str | None:
        suspects = self.suspects(wp)
        if not suspects:
            return None
        try:
            extra: list[str] | None = shlex.split(addopts)
        except ValueError:
            extra = None  # PYTEST_ADDOPTS unreadable (an unclosed quote): nothing is certain
        certain = set() if extra is None else self.certain_imports(wp, [*extra, *args], cwd)
        missing = sorted(suspects - certain)
        if not missing:
            return None
        rel = os.path.relpath(missing[0], self.root)
        why = (self.registrants or {}).get(missing[0], "it may register something at import")
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return f"this run does not import {rel}{more}, which the warm process holds ({why})"

    def certain_imports(self, wp: WarmHandle, args: list[str], cwd: str) -> set[str]:
        """Files a cold run of ``args`` imports for certain (an under-estimate)."""
        paths = selected_paths(args, cwd)
        if paths is None:
            return set()
        if not paths:
            paths = [cwd]
        by_name = {name: path for path, name in wp.modules.items()}
        by_path = dict(wp.modules)
        seeds: set[str] = set()
        purged: list[str] = []  # test modules a reload purged: known by their source
        # Directories whose conftest the run imports: those of the paths given
        # and of the test files it collects, and every directory above them.
        chain: set[str] = set()
        # --lf skips collecting (importing) every file without a last failure.
        skips_files = not LAST_FAILED.isdisjoint(args)
        for path in paths:
            selected = [] if skips_files else _collected(path, wp.test_files)
            for f in selected:
                if f in by_path:
                    seeds.add(by_path[f])
                elif f in self._test_names:
                    purged.append(f)
            for start in (path, *(os.path.dirname(f) for f in selected)):
                _add_ancestors(chain, start)
        in_chain = [c for c in wp.conftests if os.path.dirname(c) in chain]
        seeds.update(by_path[c] for c in in_chain if c in by_path)
        for f in purged:
            seeds.update(n for n in self.graph.imports_of(self._test_names[f], f) if n in by_name)
        closure = self.graph.forward_closure(seeds, by_name)
        certain = {by_name[n] for n in closure if n in by_name}
        # Conftests outside packages are not in sys.modules; what they import is.
        for conftest in in_chain:
            if conftest not in by_path:
                certain |= self._imports_of_file(conftest, by_name)
        return certain

    def _imports_of_file(self, path: str, by_name: dict[str, str]) -> set[str]:
        edges = self.graph.imports_of("conftest", path)
        closure = self.graph.forward_closure({n for n in edges if n in by_name}, by_name)
        return {by_name[n] for n in closure if n in by_name}


def selected_paths(args: list[str], cwd: str) -> list[str] | None:
    """Existing paths among the positional arguments (real paths); None when the
    arguments cannot be read for sure."""
    paths: list[str] = []
    skip = unsure = dropped = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.split("=", 1)[0] in OPAQUE:
            return None
        if arg.startswith("-") and arg != "-":
            kind = _option_kind(arg)
            skip, unsure = kind == "value", kind == "unknown"
            continue
        candidate = os.path.realpath(os.path.join(cwd, arg.split("::", 1)[0]))
        if unsure:
            # A plugin's option might take this as its value, or not.
            dropped = True
        elif os.path.exists(candidate):
            paths.append(candidate)
        unsure = False
    if dropped and not paths:
        return None  # "no paths" would mean the whole test suite
    return paths


def _option_kind(arg: str) -> str:
    """ "value" (the next argument is its value), "flag" or "unknown"."""
    if arg.startswith("--"):
        if "=" in arg:
            return "flag"  # its value is attached
        if arg in VALUE_OPTIONS:
            return "value"
        return "flag" if arg in FLAGS else "unknown"
    letter = arg[1:2]
    if letter in SHORT_VALUE:
        return "flag" if len(arg) > 2 else "value"  # -k expr, or -kexpr / -rA
    return "flag" if set(arg[1:]) <= set(SHORT_FLAGS) else "unknown"


def _collected(path: str, test_files: set[str]) -> list[str]:
    """The test files a run collects for ``path`` (a file, or a directory's the layer knows)."""
    if os.path.isdir(path):
        return [f for f in test_files if _under(f, path)]
    return [path]


def _add_ancestors(chain: set[str], directory: str) -> None:
    """``directory`` and every directory above it, into ``chain``."""
    while directory not in chain:
        chain.add(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            return
        directory = parent


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)
