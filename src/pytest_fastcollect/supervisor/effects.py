"""Can a conftest be purged and imported again, or must the warm process be replaced?

Runs in the supervisor, on source text (never imports user code). A conftest
that only imports, defines and assigns module-level names leaves nothing
behind outside itself when it is purged, so an edit to it, or to a module it
imports, is a reload like any other. Three kinds of conftest edit cannot be
reloaded exactly, and replace the warm process:

- the version the warm process imported, or the new one, runs code at
  import that acts outside the module (``os.environ[...] = ...``,
  ``sys.path.insert(...)``, ``matplotlib.use(...)``, a registering
  decorator): a purge cannot undo the old effects, and test modules were
  imported before the new ones;
- a hook that runs before test modules are imported (``pytest_configure``,
  ``pytest_sessionstart``, ...) changed: the warm test modules were
  imported after the old hook ran;
- ``pytest_plugins`` changed.

``profile(source)`` summarises one version; ``reloadable(old, new)`` decides.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable
from typing import Any

# Hooks that run before a session imports its test modules (or import them).
EARLY_HOOKS = frozenset(
    {
        "pytest_configure",
        "pytest_sessionstart",
        "pytest_load_initial_conftests",
        "pytest_cmdline_main",
        "pytest_cmdline_parse",
        "pytest_cmdline_preparse",
        "pytest_plugin_registered",
        "pytest_collection",
        "pytest_pycollect_makemodule",
        "pytest_collect_file",
        "pytest_make_collect_report",
    }
)
# Decorators that only wrap (pytest's fixture and hook markers): not effects.
WRAPPING_ROOTS = frozenset({"pytest", "_pytest", "pytest_asyncio", "fixture", "hookimpl"})


class Profile:
    """One version of a conftest: its first import effect, and its early-hook fingerprint."""

    __slots__ = ("early", "effect")

    @property
    def has_early_hooks(self) -> bool:
        return self.early != EMPTY_EARLY

    def __init__(self, effect: str | None, early: str) -> None:
        self.effect = effect  # "line N: ..." or None
        self.early = early  # digest of early hooks + pytest_plugins

    def __repr__(self) -> str:
        return f"Profile(effect={self.effect!r}, early={self.early[:8]!r})"


def profile(source: bytes) -> Profile:
    """What one version of a conftest does at import, and its early hooks."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        # It will not import; the run shows the error. Nothing of it ran.
        return Profile(None, "broken")
    effect = _first_effect(tree.body)
    early = hashlib.blake2b(digest_size=16)
    for node in tree.body:
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in EARLY_HOOKS
        ) or _assigns(node, "pytest_plugins"):
            early.update(ast.dump(node).encode())
    return Profile(effect, early.hexdigest())


EMPTY_EARLY = hashlib.blake2b(digest_size=16).hexdigest()
# A conftest that is not there: no effects, no hooks.
EMPTY = Profile(None, EMPTY_EARLY)


def reloadable(old: Profile | None, new: Profile) -> str | None:
    """None if a purge and re-import is exact; else why the process must be replaced."""
    if old is None:
        return "its imported version is unknown"
    if old.effect is not None:
        return f"the imported version runs code at import ({old.effect})"
    if new.effect is not None:
        return f"it now runs code at import ({new.effect})"
    if old.early != new.early:
        return "a hook that runs before test modules are imported, or pytest_plugins, changed"
    return None


def _assigns(node: ast.stmt, name: str) -> bool:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


def _first_effect(body: list[ast.stmt]) -> str | None:
    for node in body:
        found = _effect(node)
        if found is not None:
            # Nested statements (if, try, class bodies) name their own line.
            return found if found.startswith("line ") else f"line {node.lineno}: {found}"
    return None


def _effect(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass, ast.Global, ast.Nonlocal)):
        return None
    check = _CHECKS.get(type(node))
    if check is None:
        return f"a {type(node).__name__.lower()} statement"
    return check(node)


def _expression(node: ast.Expr) -> str | None:
    if isinstance(node.value, ast.Constant):
        return None  # a docstring
    return f"the expression {_short(node.value)}"


def _definition(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str | None:
    for decorator in node.decorator_list:
        if _root(decorator) not in WRAPPING_ROOTS:
            return f"line {decorator.lineno}: the decorator @{_short(decorator)}"
    # A class body runs at import; a function body does not.
    return _first_effect(node.body) if isinstance(node, ast.ClassDef) else None


def _assignment(node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> str | None:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    for target in targets:
        if not _plain_target(target):
            return f"an assignment to {_short(target)}"
    return None


def _delete(node: ast.Delete) -> str | None:
    bad = [t for t in node.targets if not isinstance(t, ast.Name)]
    return f"del {_short(bad[0])}" if bad else None


def _if(node: ast.If) -> str | None:
    return _first_effect(node.body) or _first_effect(node.orelse)


def _try(node: ast.Try) -> str | None:
    for part in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
        found = _first_effect(part)
        if found is not None:
            return found
    return None


_CHECKS: dict[type, Callable[[Any], str | None]] = {
    ast.Expr: _expression,
    ast.FunctionDef: _definition,
    ast.AsyncFunctionDef: _definition,
    ast.ClassDef: _definition,
    ast.Assign: _assignment,
    ast.AnnAssign: _assignment,
    ast.AugAssign: _assignment,
    ast.Delete: _delete,
    ast.If: _if,
    ast.Try: _try,
}


def _plain_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Name):
        return True
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_plain_target(t) for t in target.elts)
    if isinstance(target, ast.Starred):
        return _plain_target(target.value)
    return False


def _root(node: ast.expr) -> str:
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id
        else:
            return ""


def _short(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."
