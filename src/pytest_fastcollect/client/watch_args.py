"""Watch mode's arguments: the user's options and paths apart, and each run's arguments.

Runs in the client (the thin client too: standard library only, no pytest).
pytest's own parser is not at hand in the thin client, so options are told
from paths by a table of the options that take a separate value, and a word
counts as a path only if it names one (``file.py::test`` too): the value of
an option this table does not know (a plugin's) is then passed along as an
option's value, never taken for a path to narrow.
"""

from __future__ import annotations

import os
import shlex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# Options of pytest and of common plugins whose value may be the next argument.
VALUE_OPTIONS = frozenset(
    {
        "-k",
        "-m",
        "-p",
        "-o",
        "-c",
        "-W",
        "-r",
        "-n",
        "--tb",
        "--maxfail",
        "--rootdir",
        "--confcutdir",
        "--basetemp",
        "--junitxml",
        "--junit-xml",
        "--junit-prefix",
        "--deselect",
        "--ignore",
        "--ignore-glob",
        "--durations",
        "--durations-min",
        "--log-level",
        "--log-format",
        "--log-date-format",
        "--log-file",
        "--log-file-level",
        "--log-file-format",
        "--log-file-date-format",
        "--log-cli-level",
        "--log-cli-format",
        "--log-cli-date-format",
        "--import-mode",
        "--capture",
        "--color",
        "--code-highlight",
        "--pastebin",
        "--override-ini",
        "--config-file",
        "--assert",
        "--show-capture",
        "--doctest-glob",
        "--doctest-report",
        "--pdbcls",
        "--report-log",
        "--cov",
        "--cov-report",
        "--cov-config",
        "--cov-fail-under",
        "--cov-context",
        "--numprocesses",
        "--maxprocesses",
        "--dist",
        "--max-worker-restart",
        "--tx",
        "--timeout",
        "--timeout-method",
        "--randomly-seed",
        "--asyncio-mode",
        "--last-failed-no-failures",
        "--lfnf",
    }
)


def _is_path(word: str, cwd: str) -> bool:
    return os.path.exists(os.path.join(cwd, word.split("::", 1)[0]))


def split_args(args: Sequence[str], cwd: str) -> tuple[list[str], list[str]]:
    """(options with their values, paths and node ids) of a pytest command line."""
    options: list[str] = []
    paths: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            paths.extend(args[i + 1 :])
            break
        if word.startswith("-") and word != "-":
            options.append(word)
            if word in VALUE_OPTIONS and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        elif _is_path(word, cwd):
            paths.append(word)
        else:
            options.append(word)  # the value of an option we do not know
        i += 1
    return options, paths


def with_keyword(options: Sequence[str], expression: str | None) -> list[str]:
    """``options`` whose ``-k`` also requires ``expression`` (watch mode's name filter)."""
    if not expression:
        return list(options)
    out: list[str] = []
    given: list[str] = []
    i = 0
    while i < len(options):
        word = options[i]
        if word == "-k" and i + 1 < len(options):
            given.append(options[i + 1])
            i += 2
            continue
        if word.startswith("-k") and len(word) > 2:
            given.append(word[2:])
        else:
            out.append(word)
        i += 1
    parts = [f"({g})" for g in given] + [f"({expression})" if given else expression]
    return [*out, "-k", " and ".join(parts)]


class Roots:
    """What the user's paths select: ``files`` under them, with node ids kept."""

    def __init__(self, paths: Sequence[str], cwd: str) -> None:
        self.cwd = cwd
        self.given = list(paths)
        self.entries = [
            (os.path.realpath(os.path.join(cwd, p.split("::", 1)[0])), p) for p in paths
        ]

    def set_default(self, absolute: Iterable[str]) -> None:
        """No paths given: what pytest chose (testpaths, or the current directory)."""
        if not self.given:
            self.entries = [(os.path.realpath(a), "") for a in absolute]

    def narrow(self, files: Iterable[str]) -> list[str]:
        """Arguments that run these files (absolute), as far as the user's paths select them."""
        out: dict[str, None] = {}
        for f in sorted(files):
            for path, given in self.entries:
                if f == path:
                    out[given if "::" in given else self.rel(f)] = None
                elif f.startswith(path + os.sep):
                    out[self.rel(f)] = None
        return list(out)

    def contains(self, f: str) -> bool:
        return any(f == path or f.startswith(path + os.sep) for path, _ in self.entries)

    def rel(self, path: str) -> str:
        rel = os.path.relpath(path, self.cwd)
        return path if rel.startswith("..") else rel


def node_arg(nodeid: str, rootdir: str, cwd: str) -> str:
    """A node id (relative to the rootdir) as an argument from ``cwd``."""
    file, sep, rest = nodeid.partition("::")
    rel = os.path.relpath(os.path.join(rootdir, file), cwd)
    return rel + sep + rest


def show(args: Sequence[str]) -> str:
    return shlex.join(args)
