"""Print the data of src/pytest_fastcollect/pytest_cli.py from a pytest git checkout.

    python tools/pytest_cli_table.py /path/to/pytest 8.0.0 8.1.0 ... 9.1.1 9.2.0

Reads each tag's default plugins (``_pytest/config/__init__.py``) and the
options their ``pytest_addoption`` hooks register (by AST: no pytest is
imported), then prints the options of the last tag with their owner and
arity, the first version of each option the older tags lack, and the
options that changed owner. tests/test_rootdir.py checks the result against
the installed pytest's real parser; this script is how the table was made.
"""

from __future__ import annotations

import ast
import subprocess
import sys

# argparse actions (and pytest's own) that take no value.
NO_VALUE = {
    "store_true",
    "store_false",
    "store_const",
    "count",
    "append_const",
    "help",
    "version",
    "HelpAction",
    "MoreQuietAction",
    "OverrideIniAction",
}
ARITY = {0: "FLAG", 1: "VALUE", "?": "OPTIONAL"}


def show(repo: str, tag: str, path: str) -> str | None:
    proc = subprocess.run(
        ["git", "-C", repo, "show", f"{tag}:{path}"], capture_output=True, text=True
    )
    return proc.stdout if proc.returncode == 0 else None


def default_plugins(repo: str, tag: str) -> list[str]:
    source = show(repo, tag, "src/_pytest/config/__init__.py")
    assert source is not None
    names: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        if target.id not in ("essential_plugins", "default_plugins"):
            continue
        value = node.value
        if isinstance(value, ast.BinOp) and isinstance(value.right, ast.Tuple):
            extra = [e.value for e in value.right.elts if isinstance(e, ast.Constant)]
            names[target.id] = names["essential_plugins"] + extra
        elif isinstance(value, ast.Tuple):
            names[target.id] = [e.value for e in value.elts if isinstance(e, ast.Constant)]
    return names["default_plugins"]


def options(repo: str, tag: str, plugin: str) -> dict[str, object]:
    source = show(repo, tag, f"src/_pytest/{plugin}.py") or show(
        repo, tag, f"src/_pytest/{plugin}/__init__.py"
    )
    found: dict[str, object] = {}
    if source is None:
        return found
    for function in ast.walk(ast.parse(source)):
        if not (isinstance(function, ast.FunctionDef) and function.name == "pytest_addoption"):
            continue
        for call in ast.walk(function):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            adds = isinstance(func, ast.Attribute) and func.attr in ("addoption", "_addoption")
            adds = adds or (isinstance(func, ast.Name) and func.id == "add_option_ini")
            if not adds:
                continue
            keywords = {k.arg: k.value for k in call.keywords}
            action = keywords.get("action")
            action_name = (
                action.value
                if isinstance(action, ast.Constant)
                else (ast.unparse(action) if action is not None else "store")
            )
            nargs = keywords.get("nargs")
            arity: object = 0 if action_name in NO_VALUE else 1
            if isinstance(nargs, ast.Constant) and arity:
                arity = nargs.value
            for arg in call.args:
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("-"):
                    found[str(arg.value)] = (plugin, arity)
    return found


def main(repo: str, tags: list[str]) -> None:
    per_tag = {}
    for tag in tags:
        table: dict[str, object] = {}
        for plugin in default_plugins(repo, tag):
            table.update(options(repo, tag, plugin))
        per_tag[tag] = table
    last = per_tag[tags[-1]]
    print("OPTIONS = {")
    for option, (plugin, arity) in sorted(last.items(), key=lambda kv: (kv[1][0], kv[0])):  # type: ignore[index]
        print(f'    "{option}": ("{plugin}", {ARITY[arity]}),')
    print("}")
    print("SINCE / MOVED:")
    for option in sorted(last):
        history = [(tag, per_tag[tag].get(option)) for tag in tags]
        if len({h for _, h in history}) > 1:
            print(f"    {option}: {history}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
