"""The ``--daemon-*`` verbs: one entry each, from which options, help and dispatch follow.

Runs in every pytest process (the plugin registers the options from here),
so it imports nothing but the standard library; a verb's function lives in
``client/commands.py`` and is imported only when the verb is used. Adding a
verb: one entry here, its function in ``commands``, and, if it talks to the
daemon, one ``handle_<command>`` in the supervisor.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pytest


class Verb:
    __slots__ = ("function", "help", "name")

    def __init__(self, name: str, help: str, function: str) -> None:
        self.name = name  # "start" -> --daemon-start
        self.help = help
        self.function = function  # in client/commands.py

    @property
    def flag(self) -> str:
        return f"--daemon-{self.name}"

    @property
    def dest(self) -> str:
        return f"daemon_{self.name}"


VERBS = (
    Verb(
        "start",
        "Start this project's daemon, warmed with the given paths and options, and exit.",
        "start",
    ),
    Verb(
        "stop",
        "Stop this project's daemon and remove its files (also stale ones), and exit.",
        "stop",
    ),
    Verb(
        "status",
        "Show this project's daemon: pid, files, warm-up, requests, reloads, resources.",
        "status",
    ),
    Verb("health", "Show health checks and the verdict (exit 7 unless healthy).", "health"),
    Verb(
        "restart",
        "Stop the daemon and start it again (with the given paths, else the previous ones).",
        "restart",
    ),
    Verb("reload", "Replace the daemon's warm process with a freshly warmed one.", "reload"),
    Verb(
        "watch",
        "Run the tests, then after each save rerun those it can affect, warm "
        "(keys: Enter rerun, a all, f failed, p file, t name, q quit).",
        "watch",
    ),
)
BY_DEST = {v.dest: v for v in VERBS}


class Modifier:
    """An option that changes how some verbs answer; alone it is a usage error."""

    __slots__ = ("goes_with", "help", "name")

    def __init__(self, name: str, help: str, goes_with: tuple[str, ...]) -> None:
        self.name = name  # "json" -> --daemon-json
        self.help = help
        self.goes_with = goes_with  # verb names

    @property
    def flag(self) -> str:
        return f"--daemon-{self.name}"

    @property
    def dest(self) -> str:
        return f"daemon_{self.name}"

    def usage(self) -> str:
        verbs = " or ".join(f"--daemon-{name}" for name in self.goes_with)
        return f"{self.flag} goes with {verbs}"


MODIFIERS = (
    Modifier("json", "With --daemon-status or --daemon-health: print JSON.", ("status", "health")),
    Modifier(
        "confirm",
        "With --daemon-start or --daemon-restart: start even though the rootdir has no "
        "ini file and holds far more files than the paths to warm up.",
        ("start", "restart"),
    ),
    Modifier("clear", "With --daemon-watch: clear the screen before each run.", ("watch",)),
)
JSON_FLAG = "--daemon-json"
CONFIRM_FLAG = "--daemon-confirm"
NO_DAEMON_FLAG = "--no-daemon"


def given(namespace: object) -> list[Verb]:
    """The verbs set in a parsed argument namespace."""
    return [v for v in VERBS if getattr(namespace, v.dest, False)]


def modifiers_given(namespace: object) -> list[Modifier]:
    return [m for m in MODIFIERS if getattr(namespace, m.dest, False)]


# Verbs served without pydantic (client/fastverbs.py): asked for often, answered quickly.
QUICK = frozenset({"status", "health"})


def run(verb: Verb, config: pytest.Config) -> int:
    """Run a verb; its function returns the exit code (errors print one line)."""
    if verb.name in QUICK:
        from pytest_fastcollect.client import fastverbs

        return fastverbs.run(verb.name, config)
    from pytest_fastcollect.client import commands

    return commands.run_verb(getattr(commands, verb.function), config)
