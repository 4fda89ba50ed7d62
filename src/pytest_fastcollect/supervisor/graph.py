"""Import edges between the warm process's project modules, from their source.

Runs in the supervisor, which never imports user code: edges come from an AST
scan of each loaded module's file (``import``, ``from ... import``, and
``importlib.import_module``/``__import__`` with a literal name), cached by
(mtime, size, inode, ctime): a same-size rewrite that kept its mtime (coarse
file systems, ``touch -r``, tools restoring times) still changes the ctime. Over-approximation is safe (more is re-imported); a missed
dynamic edge is caught by the warm process's weakref check.
"""

from __future__ import annotations

import ast
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


def scan_imports(source: bytes, importer: str, is_package: bool) -> set[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.update(_prefixes(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, importer, is_package)
            if base is None:
                continue
            found.update(_prefixes(base))
            for alias in node.names:
                if alias.name != "*":
                    found.add(f"{base}.{alias.name}")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if (
                fname in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                found.update(_prefixes(arg.value))
    found.discard(importer)
    return found


class ImportGraph:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int, int], str, set[str]]] = {}

    def imports_of(self, name: str, path: str) -> set[str]:
        try:
            st = os.stat(path)
        except OSError:
            return set()
        sig = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == sig and cached[1] == name:
            return cached[2]
        try:
            with open(path, "rb") as fh:
                source = fh.read()
        except OSError:
            return set()
        edges = scan_imports(source, name, os.path.basename(path) == "__init__.py")
        self._cache[path] = (sig, name, edges)
        return edges

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
