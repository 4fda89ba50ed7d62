"""Which test files a set of changed files can affect: watch mode's selection.

Runs in the supervisor (never imports user code). A test file is affected
when its import closure, or the closure of a conftest on its directory
chain, contains a changed module. Closures come from the AST scans of
``graph.py`` over every module the warm process has loaded (and every test
file the caller names), so they follow the files as they are on disk now.

Never too few: whenever the graph cannot tell, the answer is *everything*
(with the reason), never a guess. That is: a configuration file, a ``.pth``,
an extension module or installed packages changed; a file that is not
Python changed (tests may read it); a module changed that nothing the graph
knows imports (an entry-point plugin, ``-p``, a path-based load); a
conftest, or a module a conftest imports, changed and that conftest defines
(or defined) pytest hooks, names ``pytest_plugins`` or runs code at import
(``supervisor/effects.py``): hooks, plugins and import effects reach every
test, not only those below it. A test file whose closure holds
an import the scan cannot follow (a computed ``import_module`` name) is
affected by every change to a Python file.

``Affected`` remembers every module name it was shown and the facts of every
conftest as of its last answer: a deleted module is still found by the name
it had, and a conftest edit is judged by what it defined before and after.
Thread-safe: one lock around each answer.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import threading
from collections.abc import Iterable

from pytest_fastcollect.supervisor import effects
from pytest_fastcollect.supervisor.changes import (
    CONFIG_FILES,
    EXTENSION_SUFFIXES,
    IGNORED_DIRS,
)
from pytest_fastcollect.supervisor.freshness import PACKAGES_CHANGED, Signature, stat_signature
from pytest_fastcollect.supervisor.graph import FileGraph, ImportGraph, Scan

DEFAULT_TEST_PATTERNS = ("test_*.py", "*_test.py")  # pytest's default python_files
CONFTEST = "conftest.py"
# Files editors and tools write next to the one being saved, and remove again.
_TRANSIENT_SUFFIXES = ("~", ".swp", ".swx", ".swo", ".tmp", "___jb_tmp___", "___jb_old___")


def is_transient(path: str) -> bool:
    """An editor's or tool's temporary file (hidden, backup, swap), once it is gone."""
    base = os.path.basename(path)
    looks_temporary = (
        base.startswith((".", "#"))
        or base.endswith(_TRANSIENT_SUFFIXES)
        or base == "4913"  # vim's probe for a writable directory
        or (base.startswith("sed") and len(base) == 9)  # sed -i's sedXXXXXX
        or ".tmp" in base
    )
    return looks_temporary and not os.path.lexists(path)


def in_project(path: str, root: str) -> bool:
    """Under ``root`` and outside caches, VCS data and virtualenvs (also as the path itself:
    pytest creates ``.pytest_cache`` through a ``pytest-cache-files-*`` directory)."""
    rel = os.path.relpath(path, root)
    if rel in {".", ".."} or rel.startswith(".." + os.sep):
        return False
    return not any(
        part in IGNORED_DIRS
        or part.endswith((".egg-info", ".dist-info"))
        or part.startswith("pytest-cache-files-")
        for part in rel.split(os.sep)
    )


def is_test_name(path: str, patterns: Iterable[str]) -> bool:
    base = os.path.basename(path)
    for pattern in patterns:
        target = path if os.sep in pattern else base
        if fnmatch.fnmatch(target, pattern if os.sep not in pattern else "*" + pattern):
            return True
    return False


@dataclasses.dataclass
class Selection:
    everything: bool
    reasons: list[str]  # why everything (empty otherwise)
    test_files: list[str]  # absolute; every known test file when ``everything``
    # Test files to run along with any part of the tests: they import modules
    # that register into others (``Registrants``), which a full run imports.
    companions: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Registrants:
    """Modules whose import puts something of theirs into another module (a plugin
    registry), from the warm process's heap scan (``supervisor/isolation.py``).

    A test's outcome may then depend on test files it does not import: a
    full run imports every registrant some test file imports.
    """

    known: dict[str, str] | None = dataclasses.field(default_factory=dict)  # None: not scanned
    suspects: frozenset[str] = frozenset()  # known ones, and modules re-imported since the scan


NO_REGISTRANTS = Registrants()


@dataclasses.dataclass(frozen=True)
class Conftest:
    """One version of a conftest, as far as its reach goes."""

    # Why it reaches tests outside its directory (hooks, pytest_plugins, code
    # run at import); None: it only serves fixtures to the tests below it.
    beyond: str | None


ABSENT = Conftest(None)  # a conftest position seen empty: a new conftest is no surprise


def conftest_facts(path: str, scan: Scan) -> Conftest:
    """What a conftest reaches: hooks and plugins from the scan, import effects from its source."""
    if scan.hooks:
        return Conftest("defines pytest hooks")
    if scan.plugins:
        return Conftest("names pytest_plugins")
    try:
        with open(path, "rb") as fh:
            effect = effects.profile(fh.read()).effect
    except OSError:
        return ABSENT
    # Code run at import (os.environ, sys.path, a registry) stays for the
    # test modules collected after it, in any directory.
    return Conftest(f"runs code at import ({effect})" if effect else None)


class Affected:
    def __init__(self, root: str, graph: ImportGraph | None = None) -> None:
        self.root = root
        self.graph = graph or ImportGraph()
        self._lock = threading.Lock()
        self._names: dict[str, str] = {}  # file -> module name, from every table shown
        self._tests: set[str] = set()  # every test file shown
        self._by_dir: dict[str, tuple[str, str]] = {}  # directory -> (a module there, its name)
        self._conftests: dict[str, Conftest] = {}  # as of the last answer
        self._conftest_cache: dict[str, tuple[Signature | None, Conftest]] = {}

    # -- names --------------------------------------------------------------------------

    def learn(self, table: dict[str, str], test_files: Iterable[str]) -> None:
        """Remember a warm process's module table (file -> name) and its test files."""
        with self._lock:
            self._learn(table, test_files)

    def _learn(self, table: dict[str, str], test_files: Iterable[str]) -> None:
        for path, name in table.items():
            if self._names.get(path) != name:
                self._names[path] = name
                self._by_dir[os.path.dirname(path)] = (path, name)
        self._tests.update(test_files)

    def name_of(self, path: str) -> str | None:
        """The module name ``path`` has, had, or would have, judged by its neighbours."""
        known = self._names.get(path)
        if known is not None:
            return known
        directory, base = os.path.split(path)
        stem = base[:-3] if base.endswith(".py") else base
        package = self._package_of(directory, depth=0)
        if package is None:
            return None
        if stem == "__init__":
            return package or None
        return f"{package}.{stem}" if package else stem

    def _package_of(self, directory: str, depth: int) -> str | None:
        """The dotted package a directory's modules belong to ('' for a sys.path entry)."""
        sibling = self._by_dir.get(directory)
        if sibling is not None:
            path, name = sibling
            return name if os.path.basename(path) == "__init__.py" else name.rpartition(".")[0]
        parent = os.path.dirname(directory)
        if depth > 32 or parent == directory or not in_project(directory, self.root):
            return None
        above = self._package_of(parent, depth + 1)
        if above is None:
            return None
        here = os.path.basename(directory)
        return f"{above}.{here}" if above else here

    # -- the answer ---------------------------------------------------------------------

    def select(
        self,
        changed: Iterable[str],
        table: dict[str, str],
        test_files: Iterable[str],
        candidates: Iterable[str] | None = None,
        patterns: Iterable[str] = DEFAULT_TEST_PATTERNS,
        registrants: Registrants = NO_REGISTRANTS,
    ) -> Selection:
        """The test files ``changed`` can affect.

        ``table``: the warm process's project modules (file -> name);
        ``test_files``: the test files it collected (and failed to);
        ``candidates``: the test files the caller's arguments select (its last
        run collected them), else every test file known here.
        """
        with self._lock:
            self._learn(table, test_files)
            pool = set(candidates) if candidates is not None else set(self._tests)
            pool = {p for p in pool if os.path.exists(p)}
            return _Answer(self, list(changed), pool, tuple(patterns), registrants).run()

    def conftest_before(self, path: str) -> Conftest | None:
        return self._conftests.get(path)

    def remember_conftests(self, facts: dict[str, Conftest]) -> None:
        self._conftests.update(facts)

    def conftest_now(self, path: str, scan: Scan) -> Conftest:
        """``conftest_facts``, cached by the file's stat signature."""
        sig = stat_signature(path)
        cached = self._conftest_cache.get(path)
        if cached is not None and cached[0] == sig:
            return cached[1]
        found = conftest_facts(path, scan)
        self._conftest_cache[path] = (sig, found)
        return found


class _Answer:
    """One ``select`` call: classify the changes, walk the graph, collect reasons."""

    def __init__(
        self,
        owner: Affected,
        changed: list[str],
        pool: set[str],
        patterns: tuple[str, ...],
        registrants: Registrants,
    ) -> None:
        self.o = owner
        self.registrants = registrants
        self.root = owner.root
        self.changed = changed
        self.pool = pool
        self.patterns = patterns
        self.everything: list[str] = []
        self.names: set[str] = set()  # changed module names
        self.tests: set[str] = set()  # changed test files
        self.conftests: set[str] = set()  # changed conftest files
        self.python_changed = False

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def run(self) -> Selection:
        for path in sorted(set(self.changed)):
            self.classify(path)
        graph, facts = self.build()
        affected = self.walk(graph, facts)
        self.o.remember_conftests(facts)
        known = self.pool | {t for t in self.tests if os.path.exists(t)}
        if self.everything:
            return Selection(True, self.everything, sorted(known))
        companions = self.companions(graph) - affected
        return Selection(False, [], sorted(affected & known), sorted(companions & known))

    def companions(self, graph: FileGraph) -> set[str]:
        """Test files whose imports (or whose conftests' imports) reach a registrant."""
        suspects = self.registrants.suspects
        if not suspects:
            return set()
        names = {n for f in suspects for n in graph.names.get(f, ())}
        reached = graph.reached_from_names(names) | set(suspects)
        dirs = {os.path.dirname(p) for p in reached if os.path.basename(p) == CONFTEST}
        return {t for t in self.pool if t in reached or any(_under(t, d) for d in dirs)}

    # -- classify each changed path -----------------------------------------------------

    def classify(self, path: str) -> None:
        base = os.path.basename(path)
        rel = self.rel(path)
        if base == PACKAGES_CHANGED:
            self.everything.append("installed packages changed")
            return
        if is_transient(path):
            return
        if not in_project(path, self.root):
            # Loaded project code outside the rootdir (a symlink target, an
            # editable sibling): the graph knows it by other paths; select more.
            if base.endswith(".py"):
                self.everything.append(f"{path} changed (project code outside the rootdir)")
            return
        if base in CONFIG_FILES:
            self.everything.append(f"{rel} changed (configuration)")
        elif base.endswith(".pth") or base.endswith(EXTENSION_SUFFIXES):
            self.everything.append(f"{rel} changed (installed code)")
        elif not base.endswith(".py"):
            if os.path.isdir(path):
                return  # its files are reported one by one
            self.everything.append(f"{rel} changed (a file tests may read)")
        elif base == CONFTEST:
            self.python_changed = True
            self.conftests.add(path)
        else:
            self.python_changed = True
            self.classify_module(path, rel)

    def classify_module(self, path: str, rel: str) -> None:
        name = self.o.name_of(path)
        if path in self.pool or path in self.o._tests or is_test_name(path, self.patterns):
            self.tests.add(path)
            if name is not None:
                self.names.add(name)
            return
        if name is None:
            self.everything.append(f"{rel} changed, and nothing tells what imports it")
            return
        self.names.add(name)
        self.registers(path, rel)

    def registers(self, path: str, rel: str) -> None:
        """A registrant's registrations reach tests that do not import it."""
        known = self.registrants.known
        if known is None:
            self.everything.append(
                f"{rel} changed, and which modules register into others is not known yet"
            )
        elif path in known:
            self.everything.append(
                f"{rel} changed, and it registers into another module ({known[path]})"
            )

    # -- the graph ----------------------------------------------------------------------

    def build(self) -> tuple[FileGraph, dict[str, Conftest]]:
        """Scan every known module, test file and conftest position on their chains."""
        graph = FileGraph()
        files = dict(self.o._names)
        for path in self.pool | self.tests | self.o._tests:
            if path not in files:
                files[path] = self.o.name_of(path) or os.path.basename(path)[:-3]
        facts: dict[str, Conftest] = {}
        for path in self.chain(set(files) | self.conftests):
            if not os.path.exists(path):
                facts[path] = ABSENT
            elif path not in files:
                files[path] = self.o.name_of(path) or "conftest"
        for path, name in files.items():
            scan = self.o.graph.scan_of(name, path)
            graph.add(path, name, scan)
            if os.path.basename(path) == CONFTEST and path not in facts:
                facts[path] = self.o.conftest_now(path, scan)
        return graph, facts

    def chain(self, paths: Iterable[str]) -> set[str]:
        """Every conftest position from these files' directories up to the root."""
        out: set[str] = set()
        for start in {os.path.dirname(p) for p in paths}:
            d = start
            while d not in out and (d == self.root or in_project(d, self.root)):
                out.add(d)
                parent = os.path.dirname(d)
                if parent == d:
                    break
                d = parent
        return {os.path.join(d, CONFTEST) for d in out}

    def walk(self, graph: FileGraph, facts: dict[str, Conftest]) -> set[str]:
        roots = self.pool | self.tests | self.o._tests
        roots |= {p for p in graph.imports if os.path.basename(p) == CONFTEST}
        explained = graph.imported_by(roots)
        for name in sorted(self.names - explained):
            if not self.is_test_module(name):
                self.everything.append(
                    f"{self.rel_of_name(name)} changed, and no test or conftest imports it"
                )
        reached = graph.reached_from_names(self.names) | self.tests
        conftests = self.conftests | {p for p in reached if os.path.basename(p) == CONFTEST}
        dirs = set()
        for conftest in sorted(conftests):
            before = self.o.conftest_before(conftest)
            if before is None and conftest in self.conftests:
                self.everything.append(f"{self.rel(conftest)} changed (not seen before)")
            elif beyond := next(
                (f.beyond for f in (before, facts.get(conftest)) if f and f.beyond), None
            ):
                what = "it" if conftest in self.conftests else "a module it imports"
                self.everything.append(f"{self.rel(conftest)} {beyond}, and {what} changed")
            else:
                dirs.add(os.path.dirname(conftest))
                reached |= graph.reached_from_files([conftest])
        affected = {p for p in reached if p in self.pool or p in self.tests}
        affected |= {t for t in self.pool if any(_under(t, d) for d in dirs)}
        if self.python_changed and graph.dynamic:
            dynamic = graph.reached_from_files(graph.dynamic)
            affected |= {t for t in self.pool if t in dynamic or self.chain([t]) & dynamic}
        return affected

    def is_test_module(self, name: str) -> bool:
        return any(self.o.name_of(t) == name for t in self.tests)

    def rel_of_name(self, name: str) -> str:
        for path in self.changed:
            if self.o.name_of(path) == name:
                return self.rel(path)
        return name


def _under(path: str, directory: str) -> bool:
    return path.startswith(directory + os.sep)
