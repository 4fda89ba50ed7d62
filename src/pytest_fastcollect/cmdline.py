"""pytest's first split of a command line, before any plugin is loaded: a mirror.

Used by ``rootdir.py``: pytest parses ``PYTEST_ADDOPTS`` + the command line
with its own options only (``pytest_cli.py``), minus plugins blocked by
``-p no:NAME``, to find the rootdir; an unknown option's value counts as a
positional there. Anything argparse would treat in a way this cannot follow
raises ``configfiles.Unsupported``. A leaf: standard library only, cheap to
import (the thin client and the start-up hook import it).
"""

from __future__ import annotations

from pytest_fastcollect import pytest_cli
from pytest_fastcollect.configfiles import Unsupported as _GiveUp
from pytest_fastcollect.pytest_cli import FLAG, VALUE

# Options whose values matter here, by argparse ``dest``.
_DESTS = {
    "-c": "inifile",
    "--config-file": "inifile",
    "--rootdir": "rootdir",
    "-o": "override_ini",
    "--override-ini": "override_ini",
    "-p": "plugins",
    "-h": "help",
    "--help": "help",
    "-V": "version",
    "--version": "version",
    "--disable-plugin-autoload": "disable_plugin_autoload",
}
# ``-o NAME=...`` of these changes what is read below; not mirrored.
_OVERRIDES_NOT_MIRRORED = ("addopts", "pythonpath")


class Parsed:
    __slots__ = ("options", "positionals", "unknown", "values")

    def __init__(self) -> None:
        self.positionals: list[str] = []
        self.values: dict[str, list[str]] = {}
        self.options: set[str] = set()
        self.unknown: list[str] = []


def blocked_plugins(cmdline: list[str]) -> frozenset[str]:
    """Plugins ``-p no:NAME`` keeps from loading before the first parse.

    pytest applies these from the command line alone (not PYTEST_ADDOPTS),
    with a plain scan that takes any ``-p`` and ``-pVALUE``.
    """
    names = []
    for value in plugin_args(cmdline):
        if value.startswith("no:"):
            name = value[3:]
            if name in pytest_cli.ESSENTIAL:
                raise _GiveUp(f"-p no:{name}: pytest refuses to disable an essential plugin")
            names.append(name)
    return pytest_cli.blocked_plugins(names)


def plugin_args(args: list[str]) -> list[str]:
    """The ``-p`` values pytest's plugin manager sees (``consider_preparse``)."""
    found = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "-p":
            if i >= len(args):
                break
            found.append(args[i].strip())
            i += 1
        elif arg.startswith("-p"):
            found.append(arg[2:].strip())
    return found


def parse(args: list[str], known: dict[str, int], version: tuple[int, int]) -> Parsed:
    """Split ``args`` as pytest's argparse parser with only ``known`` options would."""
    parsed = Parsed()
    if version >= (8, 2) and any(a.startswith("@") for a in args):
        raise _GiveUp("an @file argument (pytest reads arguments from it)")
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":
            raise _GiveUp("'--' on the command line")
        found = _classify(token, known)
        if found is None:
            parsed.positionals.append(token)
            continue
        option, explicit = found
        if option is None:
            parsed.unknown.append(token)
            continue
        i = _take_option(parsed, token, option, explicit, args, i, known)
    return parsed


def _take_option(
    parsed: Parsed,
    token: str,
    option: str,
    explicit: str | None,
    args: list[str],
    i: int,
    known: dict[str, int],
) -> int:
    """Record ``option`` (and the short options clustered with it); the next index."""
    while True:
        parsed.options.add(_DESTS.get(option, option))
        arity = known[option]
        if explicit is not None:
            if arity != FLAG:
                _add(parsed, option, explicit)
                return i
            # -xyz: more short options in the same word (argparse's rules for
            # odd tails differ between Python versions: give up on them).
            if option.startswith("--") or not explicit:
                raise _GiveUp(f"{token!r}: the flag {option} takes no value")
            nxt = "-" + explicit[0]
            if nxt not in known or explicit[1:2] == "=":
                raise _GiveUp(f"{token!r}: cannot split this cluster of short options")
            option, explicit = nxt, explicit[1:] or None
            continue
        if arity == FLAG:
            return i
        if i < len(args) and _classify(args[i], known) is None and args[i] != "--":
            _add(parsed, option, args[i])
            return i + 1
        if arity == VALUE:
            raise _GiveUp(f"{option} expects a value")
        return i


def _classify(token: str, known: dict[str, int]) -> tuple[str | None, str | None] | None:
    """None for an argument argparse takes as positional, else (option or None if
    unknown, the value attached to it)."""
    if not token or token[0] != "-":
        return None
    if token in known:
        return (token, None)
    if len(token) == 1:
        return None
    if token[1] == "-":
        name, sep, value = token.partition("=")
        if sep and name in known:
            return (name, value)
    elif token[:2] in known:
        if token[2:3] == "=":
            raise _GiveUp(f"{token!r}: a short option with '=' (Python versions differ)")
        return (token[:2], token[2:])
    if _negative_number(token):
        return None
    if token[1] in "0123456789.":
        raise _GiveUp(f"{token!r}: number-like (Python versions classify these differently)")
    if " " in token:
        return None
    return (None, None)


def _negative_number(token: str) -> bool:
    """argparse's ``^-\\d+$|^-\\d*\\.\\d+$`` (``$`` also matches before a final newline)."""
    body = token[1:-1] if token.endswith("\n") else token[1:]
    whole, dot, fraction = body.partition(".")
    if not dot:
        return whole.isdecimal()
    return (not whole or whole.isdecimal()) and fraction.isdecimal()


def _add(parsed: Parsed, option: str, value: str) -> None:
    dest = _DESTS.get(option)
    if dest is not None:
        parsed.values.setdefault(dest, []).append(value)


def last(values: dict[str, list[str]], dest: str) -> str | None:
    found = values.get(dest)
    return found[-1] if found else None


def refuse_unmirrored_overrides(values: dict[str, list[str]]) -> None:
    for item in values.get("override_ini", ()):
        if item.split("=", 1)[0].strip() in _OVERRIDES_NOT_MIRRORED:
            raise _GiveUp(f"-o {item}")


def split_words(text: str) -> list[str]:
    """``shlex.split``, without importing shlex (and re) when nothing is quoted."""
    if not any(c in text for c in "'\"\\") and text.isascii() and text.isprintable():
        return text.split()
    import shlex

    try:
        return shlex.split(text)
    except ValueError as exc:
        raise _GiveUp(f"cannot split {text!r}: {exc}") from exc


def args_value(value: object, mode: str, name: str) -> list[str]:
    """An ini value of type ``args`` or ``paths``, as ``Config.getini`` converts it."""
    if mode == "ini" and isinstance(value, str):
        return split_words(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _GiveUp(f"ini option {name} has an unexpected value {value!r}")
