"""pytest's own command-line options, as data: which take a value, which plugin owns them.

Read by rootdir.py to split a command line the way pytest's first argument
parse does, before any plugin is loaded: at that point only the options of
pytest's default plugins exist, minus those of plugins blocked with
``-p no:NAME`` on the command line. Standard library only, no imports at all.

The table covers pytest 8.0 to 9.2. It was derived from pytest's git history
(each tag's ``pytest_addoption`` hooks, see tools/pytest_cli_table.py) and
tests/test_rootdir.py checks it against the installed pytest's real parser,
plugin by plugin. Any other pytest version makes rootdir.py undecided.
"""

from __future__ import annotations

FLAG = 0  # takes no value
VALUE = 1  # takes exactly one value (argparse nargs=None)
OPTIONAL = 2  # takes the next argument if it is not an option (argparse nargs="?")

OLDEST = (8, 0)
NEWEST = (9, 2)

# pytest 9.2: option string -> (plugin that registers it, arity).
OPTIONS: dict[str, tuple[str, int]] = {
    "--assert": ("assertion", VALUE),
    "--cache-clear": ("cacheprovider", FLAG),
    "--cache-show": ("cacheprovider", OPTIONAL),
    "--failed-first": ("cacheprovider", FLAG),
    "--ff": ("cacheprovider", FLAG),
    "--last-failed": ("cacheprovider", FLAG),
    "--last-failed-no-failures": ("cacheprovider", VALUE),
    "--lf": ("cacheprovider", FLAG),
    "--lfnf": ("cacheprovider", VALUE),
    "--new-first": ("cacheprovider", FLAG),
    "--nf": ("cacheprovider", FLAG),
    "--capture": ("capture", VALUE),
    "-s": ("capture", FLAG),
    "--pdb": ("debugging", FLAG),
    "--pdbcls": ("debugging", VALUE),
    "--trace": ("debugging", FLAG),
    "--doctest-continue-on-failure": ("doctest", FLAG),
    "--doctest-glob": ("doctest", VALUE),
    "--doctest-ignore-import-errors": ("doctest", FLAG),
    "--doctest-modules": ("doctest", FLAG),
    "--doctest-report": ("doctest", VALUE),
    "--fixtures": ("fixtures", FLAG),
    "--fixtures-per-test": ("fixtures", FLAG),
    "--funcargs": ("fixtures", FLAG),
    "--debug": ("helpconfig", OPTIONAL),
    "--disable-plugin-autoload": ("helpconfig", FLAG),
    "-h": ("helpconfig", FLAG),
    "--help": ("helpconfig", FLAG),
    "-o": ("helpconfig", VALUE),
    "--override-ini": ("helpconfig", VALUE),
    "-p": ("helpconfig", VALUE),
    "--trace-config": ("helpconfig", FLAG),
    "--traceconfig": ("helpconfig", FLAG),
    "-V": ("helpconfig", FLAG),
    "--version": ("helpconfig", FLAG),
    "--junit-prefix": ("junitxml", VALUE),
    "--junit-xml": ("junitxml", VALUE),
    "--junitprefix": ("junitxml", VALUE),
    "--junitxml": ("junitxml", VALUE),
    "--log-auto-indent": ("logging", VALUE),
    "--log-cli-date-format": ("logging", VALUE),
    "--log-cli-format": ("logging", VALUE),
    "--log-cli-level": ("logging", VALUE),
    "--log-date-format": ("logging", VALUE),
    "--log-disable": ("logging", VALUE),
    "--log-file": ("logging", VALUE),
    "--log-file-date-format": ("logging", VALUE),
    "--log-file-format": ("logging", VALUE),
    "--log-file-level": ("logging", VALUE),
    "--log-file-mode": ("logging", VALUE),
    "--log-format": ("logging", VALUE),
    "--log-level": ("logging", VALUE),
    "--basetemp": ("main", VALUE),
    "-c": ("main", VALUE),
    "--co": ("main", FLAG),
    "--collect-in-virtualenv": ("main", FLAG),
    "--collect-only": ("main", FLAG),
    "--collectonly": ("main", FLAG),
    "--confcutdir": ("main", VALUE),
    "--config-file": ("main", VALUE),
    "--continue-on-collection-errors": ("main", FLAG),
    "--deselect": ("main", VALUE),
    "--exitfirst": ("main", FLAG),
    "--ignore": ("main", VALUE),
    "--ignore-glob": ("main", VALUE),
    "--import-mode": ("main", VALUE),
    "--keep-duplicates": ("main", FLAG),
    "--keepduplicates": ("main", FLAG),
    "--max-warnings": ("main", VALUE),
    "--maxfail": ("main", VALUE),
    "--noconftest": ("main", FLAG),
    "--pyargs": ("main", FLAG),
    "--pythonwarnings": ("main", VALUE),
    "--rootdir": ("main", VALUE),
    "--strict": ("main", FLAG),
    "--strict-config": ("main", FLAG),
    "--strict-markers": ("main", FLAG),
    "-W": ("main", VALUE),
    "-x": ("main", FLAG),
    "-k": ("mark", VALUE),
    "-m": ("mark", VALUE),
    "--markers": ("mark", FLAG),
    "--pastebin": ("pastebin", VALUE),
    "--durations": ("runner", VALUE),
    "--durations-min": ("runner", VALUE),
    "--setup-only": ("setuponly", FLAG),
    "--setup-show": ("setuponly", FLAG),
    "--setuponly": ("setuponly", FLAG),
    "--setupshow": ("setuponly", FLAG),
    "--setup-plan": ("setupplan", FLAG),
    "--setupplan": ("setupplan", FLAG),
    "--runxfail": ("skipping", FLAG),
    "--stepwise": ("stepwise", FLAG),
    "--stepwise-reset": ("stepwise", FLAG),
    "--stepwise-skip": ("stepwise", FLAG),
    "--sw": ("stepwise", FLAG),
    "--sw-reset": ("stepwise", FLAG),
    "--sw-skip": ("stepwise", FLAG),
    "--code-highlight": ("terminal", VALUE),
    "--color": ("terminal", VALUE),
    "--disable-pytest-warnings": ("terminal", FLAG),
    "--disable-warnings": ("terminal", FLAG),
    "--force-short-summary": ("terminal", FLAG),
    "--full-trace": ("terminal", FLAG),
    "--fulltrace": ("terminal", FLAG),
    "-l": ("terminal", FLAG),
    "--no-fold-skipped": ("terminal", FLAG),
    "--no-header": ("terminal", FLAG),
    "--no-showlocals": ("terminal", FLAG),
    "--no-summary": ("terminal", FLAG),
    "-q": ("terminal", FLAG),
    "--quiet": ("terminal", FLAG),
    "-r": ("terminal", VALUE),
    "--report-chars": ("terminal", VALUE),
    "--show-capture": ("terminal", VALUE),
    "--showlocals": ("terminal", FLAG),
    "--tb": ("terminal", VALUE),
    "-v": ("terminal", FLAG),
    "--verbose": ("terminal", FLAG),
    "--verbosity": ("terminal", VALUE),
    "--xfail-tb": ("terminal", FLAG),
}

# Options older versions lack: option -> the first (major, minor) that has it.
SINCE: dict[str, tuple[int, int]] = {
    "--log-file-mode": (8, 1),
    "--no-fold-skipped": (8, 3),
    "--xfail-tb": (8, 3),
    "--disable-plugin-autoload": (8, 4),
    "--force-short-summary": (8, 4),
    "--stepwise-reset": (8, 4),
    "--sw-reset": (8, 4),
    "--max-warnings": (9, 1),
    "--report-chars": (9, 1),
}

# Options another plugin registered before some version: option -> (version, plugin before it).
MOVED: dict[str, tuple[tuple[int, int], str]] = {
    "--fixtures": ((8, 2), "python"),
    "--fixtures-per-test": ((8, 2), "python"),
    "--funcargs": ((8, 2), "python"),
}

# ``-p no:NAME`` of one of these is a usage error.
ESSENTIAL = frozenset({"mark", "main", "runner", "fixtures", "helpconfig"})


def supported(version: tuple[int, int]) -> bool:
    return OLDEST <= version <= NEWEST


def known_options(
    version: tuple[int, int], blocked: frozenset[str] = frozenset()
) -> dict[str, int]:
    """Option string -> arity, for the options pytest ``version`` knows at its first parse.

    ``blocked``: plugin names disabled with ``-p no:NAME`` on the command line.
    """
    known = {}
    for option, (owner, arity) in OPTIONS.items():
        if SINCE.get(option, OLDEST) > version:
            continue
        moved = MOVED.get(option)
        plugin = moved[1] if moved is not None and version < moved[0] else owner
        if plugin not in blocked:
            known[option] = arity
    return known


def blocked_plugins(names: list[str]) -> frozenset[str]:
    """The plugins ``-p no:NAME`` arguments block (``no:cacheprovider`` takes stepwise along)."""
    blocked = set(names)
    if "cacheprovider" in blocked:
        blocked.add("stepwise")
    return frozenset(blocked)
