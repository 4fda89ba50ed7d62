"""The house rules of src/, read from the source with ``ast``.

Import directions (each process's code imports only downward):

    plugin, daemon_client -> client -> wire
    supervisor -> wire
    warm -> wire
    leaf modules (errors, settings, role, paths, fingerprint, ...) -> wire only

and sizes: no module over 500 lines, no function over 80. Imports inside
functions and under ``TYPE_CHECKING`` count too: a lazy import is still an
arrow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "pytest_fastcollect"
PACKAGE = "pytest_fastcollect"
LEAVES = frozenset(
    {
        "__init__",
        "errors",
        "settings",
        "role",
        "paths",
        "fingerprint",
        "process_exit",
        "processes",
        # pytest's rootdir choice, mirrored without importing pytest
        "rootdir",
        "cmdline",
        "configfiles",
        "pytest_cli",
    }
)
# What each part may import of ours.
ALLOWED = {
    "wire": {"wire"},
    "leaf": {"leaf", "wire"},
    "client": {"client", "leaf", "wire"},
    "supervisor": {"supervisor", "leaf", "wire"},
    "warm": {"warm", "leaf", "wire"},
    "plugin": {"client", "leaf", "wire"},
    "daemon_client": {"client", "leaf", "wire"},
}
# The run hand-off path: what every `pytest` and thin-client run imports.
HANDOFF_PATH = (
    "client/handoff.py",
    "client/thin.py",
    "client/transport.py",
    "client/early.py",
    "client/route.py",
    "rootdir.py",
    "cmdline.py",
    "configfiles.py",
    "wire/lite.py",
)
HEAVY = ("pydantic", "psutil", "watchdog")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def part_of(module: str) -> str:
    """``pytest_fastcollect.client.ui`` -> ``client``; leaves -> ``leaf``."""
    parts = module.split(".")[1:]
    if not parts:
        return "leaf"
    if parts[0] in ("client", "supervisor", "warm", "wire"):
        return parts[0]
    if parts[0] in LEAVES:
        return "leaf"
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(rel.parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of ours, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def ours(target: str) -> str | None:
    """The module of ours that ``target`` names (a submodule import counts as its module)."""
    if not target.startswith(PACKAGE):
        return None
    parts = target.split(".")
    while parts:
        candidate = SRC.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return None


SOURCES = sorted(SRC.rglob("*.py"))


def test_sources_are_found() -> None:
    assert len(SOURCES) > 30


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_import_directions(path: Path) -> None:
    me = part_of(module_name(path))
    allowed = ALLOWED[me]
    wrong = []
    for line, target in imports_of(path):
        module = ours(target)
        if module is None:
            continue
        part = part_of(module)
        if part not in allowed:
            wrong.append(f"line {line}: {me} imports {module} ({part})")
    assert not wrong, "\n".join(wrong)


def test_the_rules_catch_an_arrow_back_up(tmp_path: Path) -> None:
    """The checker itself can fail: a warm module importing the plugin is caught."""
    bad = SRC / "warm" / "zygote.py"
    source = "from pytest_fastcollect import plugin\nimport pytest_fastcollect.client.thin\n"
    tree_targets = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            tree_targets += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            tree_targets += [a.name for a in node.names]
    parts = {part_of(m) for m in filter(None, map(ours, tree_targets))}
    assert parts - ALLOWED[part_of(module_name(bad))] == {"plugin", "client"}


def test_client_never_imports_supervisor_or_warm() -> None:
    for path in (SRC / "client").rglob("*.py"):
        for line, target in imports_of(path):
            module = ours(target) or ""
            assert part_of(module) not in ("supervisor", "warm") if module else True, (
                f"{path.name}:{line} imports {module}"
            )


@pytest.mark.parametrize("rel", HANDOFF_PATH)
def test_handoff_path_imports_nothing_heavy(rel: str) -> None:
    for line, target in imports_of(SRC / rel):
        assert target.split(".")[0] not in HEAVY, f"{rel}:{line} imports {target}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_sizes(path: Path) -> None:
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{lines} lines; split it by responsibility"
    long = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{node.name} (line {node.lineno}): {length} lines")
    assert not long, "\n".join(long)
