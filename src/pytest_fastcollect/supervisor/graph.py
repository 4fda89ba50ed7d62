"""Import edges between the warm process's project modules, from their source.

Runs in the supervisor, which never imports user code: edges come from an AST
scan of each loaded module's file (``import``, ``from ... import``, and
``importlib.import_module``/``__import__`` with a literal name), cached by
(mtime, size, inode, ctime): a same-size rewrite that kept its mtime (coarse
file systems, ``touch -r``, tools restoring times) still changes the ctime.
Over-approximation is safe (more is re-imported); a missed dynamic edge is
caught by the warm process's weakref check. The same scan tells watch mode
(``affected.py``) which imports it cannot follow and which conftests define
hooks.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections import deque
from collections.abc import Iterable


def _prefixes(name: str) -> Iterable[str]:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _resolve(module: str | None, level: int, importer: str, is_package: bool) -> str | None:
    if level == 0:
        return module
    package = importer if is_package else importer.rpartition(".")[0]
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base) or None


@dataclasses.dataclass(frozen=True)
class Scan:
    """What one module's source says about its dependencies (see ``scan``)."""

    imports: frozenset[str]  # literal import edges, with every parent package
    dynamic: bool  # an import whose target the source does not spell out
    hooks: bool  # defines or imports a ``pytest_*`` hook (a conftest's reach is global then)
    plugins: frozenset[str]  # names in a ``pytest_plugins`` literal: imported by pytest


EMPTY_SCAN = Scan(frozenset(), False, False, frozenset())
# Calls that import a module named by their first argument.
_IMPORT_CALLS = frozenset({"import_module", "__import__", "run_module"})
# Calls that load code from a path: what they load cannot be named.
_PATH_LOADS = frozenset({"spec_from_file_location", "run_path", "load_source", "SourceFileLoader"})


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _literal_names(node: ast.expr | None) -> list[str] | None:
    """A string, or a list/tuple of strings; None for anything computed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.List, ast.Tuple)):
        names = [_literal_names(e) for e in node.elts]
        if all(n is not None and len(n) == 1 for n in names):
            return [n[0] for n in names if n]
    return None


class _Scanner:
    def __init__(self, importer: str, is_package: bool) -> None:
        self.importer = importer
        self.is_package = is_package
        self.found: set[str] = set()
        self.plugins: set[str] = set()
        self.dynamic = False
        self.hooks = False

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.found.update(_prefixes(alias.name))
        elif isinstance(node, ast.ImportFrom):
            self._import_from(node)
        elif isinstance(node, ast.Call):
            self._call(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.hooks = self.hooks or node.name.startswith("pytest_")
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            self._assign(node)

    def _import_from(self, node: ast.ImportFrom) -> None:
        base = _resolve(node.module, node.level, self.importer, self.is_package)
        if base is None:
            self.dynamic = True  # a relative import this module's name cannot place
            return
        self.found.update(_prefixes(base))
        for alias in node.names:
            if alias.name != "*":
                self.found.add(f"{base}.{alias.name}")
            self.hooks = self.hooks or (alias.asname or alias.name).startswith("pytest_")

    def _call(self, node: ast.Call) -> None:
        name = _call_name(node)
        if name in _PATH_LOADS:
            self.dynamic = True
        elif name in _IMPORT_CALLS:
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.found.update(_prefixes(arg.value))
            else:
                self.dynamic = True

    def _assign(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if not any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in targets):
            return
        names = _literal_names(node.value)
        if names is None:
            self.dynamic = True
        else:
            self.plugins.update(names)


def scan(source: bytes, importer: str, is_package: bool) -> Scan:
    """Import edges and the facts watch mode needs, from one module's source.

    Literal ``import_module``/``__import__`` calls are edges; a computed
    name, a path-based load, or a relative import above the top package
    makes ``dynamic`` true (nothing here can say what gets imported). A
    module that does not parse has no edges.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return EMPTY_SCAN
    scanner = _Scanner(importer, is_package)
    for node in ast.walk(tree):
        scanner.visit(node)
    scanner.found.discard(importer)
    return Scan(
        frozenset(scanner.found),
        scanner.dynamic,
        scanner.hooks,
        frozenset(scanner.plugins),
    )


def scan_imports(source: bytes, importer: str, is_package: bool) -> set[str]:
    return set(scan(source, importer, is_package).imports)


class ImportGraph:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int, int], str, Scan]] = {}

    def imports_of(self, name: str, path: str) -> frozenset[str]:
        return self.scan_of(name, path).imports

    def scan_of(self, name: str, path: str) -> Scan:
        """``path``'s scan as module ``name``; a missing or unreadable file has none."""
        try:
            st = os.stat(path)
        except OSError:
            return EMPTY_SCAN
        sig = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == sig and cached[1] == name:
            return cached[2]
        try:
            with open(path, "rb") as fh:
                source = fh.read()
        except OSError:
            return EMPTY_SCAN
        result = scan(source, name, os.path.basename(path) == "__init__.py")
        self._cache[path] = (sig, name, result)
        return result

    def reverse_closure(self, changed: Iterable[str], modules: dict[str, str]) -> list[str]:
        """``changed`` plus every module that imports one of them, transitively.

        ``modules`` maps module name -> file for the project modules loaded in
        the warm process. Submodules of a purged package are purged too.
        """
        dependents: dict[str, set[str]] = {}
        for name, path in modules.items():
            for target in self.imports_of(name, path):
                if target in modules:
                    dependents.setdefault(target, set()).add(name)
        seen: set[str] = set()
        todo = deque(n for n in changed if n in modules)
        while todo:
            name = todo.popleft()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(dependents.get(name, ()))
            prefix = name + "."
            todo.extend(m for m in modules if m.startswith(prefix))
        return sorted(seen)

    def forward_closure(self, start: Iterable[str], modules: dict[str, str]) -> set[str]:
        """``start`` plus every loaded module they import, transitively (parents of a
        dotted module included: importing ``a.b`` imports ``a``)."""
        seen: set[str] = set()
        todo = deque(n for n in start if n in modules)
        while todo:
            name = todo.popleft()
            if name in seen:
                continue
            seen.add(name)
            for target in self.imports_of(name, modules[name]):
                if target in modules and target not in seen:
                    todo.append(target)
            for parent in _prefixes(name):
                if parent in modules and parent not in seen:
                    todo.append(parent)
        return seen


class FileGraph:
    """Files and the names they import, both ways (watch mode's selection, ``affected.py``)."""

    def __init__(self) -> None:
        self.importers: dict[str, set[str]] = {}  # name -> files importing it
        self.names: dict[str, set[str]] = {}  # file -> its module names
        self.files: dict[str, set[str]] = {}  # name -> files with that name
        self.imports: dict[str, frozenset[str]] = {}  # file -> names it imports
        self.dynamic: set[str] = set()  # files with an import the scan cannot follow

    def add(self, path: str, name: str, scan: Scan) -> None:
        self.names.setdefault(path, set()).add(name)
        self.files.setdefault(name, set()).add(path)
        self.imports[path] = scan.imports | scan.plugins
        for target in self.imports[path]:
            self.importers.setdefault(target, set()).add(path)
        if scan.dynamic:
            self.dynamic.add(path)

    def imported_by(self, paths: Iterable[str]) -> set[str]:
        """Every name in the import closure of these files (the forward closure)."""
        seen: set[str] = set()
        todo = deque(paths)
        done: set[str] = set()
        while todo:
            path = todo.popleft()
            if path in done:
                continue
            done.add(path)
            for name in self.imports.get(path, ()):
                if name not in seen:
                    seen.add(name)
                    todo.extend(self.files.get(name, ()))
        return seen

    def reached_from_names(self, names: Iterable[str]) -> set[str]:
        """Every file whose closure contains one of ``names`` (the reverse closure)."""
        reached: set[str] = set()
        seen: set[str] = set()
        todo = deque(names)
        while todo:
            name = todo.popleft()
            if name in seen:
                continue
            seen.add(name)
            for path in self.importers.get(name, ()):
                if path not in reached:
                    reached.add(path)
                    todo.extend(self.names.get(path, ()))
        return reached

    def reached_from_files(self, paths: Iterable[str]) -> set[str]:
        names = [n for p in paths for n in self.names.get(p, ())]
        return set(paths) | self.reached_from_names(names)
