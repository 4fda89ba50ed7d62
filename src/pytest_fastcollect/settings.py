"""Every setting of the plugin and the daemon, with its default and unit, in one place.

A leaf module (standard library only at import; the thin client imports it,
so no pathlib, dataclasses or typing at run time). Precedence: command line
> ini file > environment > default, resolved once per process:

- the client resolves the ``daemon_*`` ini settings with ``from_config``
  (every value checked up front, one line naming the setting and what it
  accepts) and hands the result to the supervisor as JSON;
- the supervisor reads them back with ``DaemonSettings.from_json``;
- durations are seconds everywhere inside (the ini spells the debounce in
  milliseconds, as its name says; it is converted here and nowhere else).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    import pytest

# --- environment variables --------------------------------------------------------

ENV_RUNTIME_DIR = "PYTEST_FASTCOLLECT_RUNTIME_DIR"  # where sockets, records and logs live
ENV_DISABLE = "PYTEST_FASTCOLLECT_DISABLE"  # any true value: never use a daemon
ENV_POLLING = "PYTEST_FASTCOLLECT_POLLING"  # any true value: poll instead of inotify
# Set by watch mode for its runs: where client/watch_report.py writes what ran.
ENV_WATCH_REPORT = "PYTEST_FASTCOLLECT_WATCH_REPORT"
# The standby worker (warm/standby.py), read by the daemon when it starts:
# "auto" (default), "off", or "always" (every run through a standby: for tests).
ENV_STANDBY = "PYTEST_FASTCOLLECT_STANDBY"
# A file that each run handed to the daemon appends its timeline to (warm/timeline.py).
ENV_TIMELINE = "PYTEST_FASTCOLLECT_TIMELINE"
STANDBY_MODES = ("auto", "off", "always")

_FALSE_WORDS = ("", "0", "false", "no", "off")
_TRUE_WORDS = ("1", "true", "yes", "on", "y", "t")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() not in _FALSE_WORDS


def standby_mode(environ: Mapping[str, str] | None = None) -> str:
    """``ENV_STANDBY`` as one of ``STANDBY_MODES``; false words mean off, anything unknown auto."""
    value = (os.environ if environ is None else environ).get(ENV_STANDBY, "auto").strip().lower()
    if value in STANDBY_MODES:
        return value
    return "off" if value in _FALSE_WORDS and value else "auto"


def disabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return env_flag(ENV_DISABLE, environ)


def plugin_disabled(args: Sequence[str], addopts: str) -> bool:
    """``-p no:fastcollect`` (or the module name): this plugin must not take part."""
    words = [*args, *addopts.split()]
    return any(
        w.endswith(("no:fastcollect", "no:pytest_fastcollect.plugin", "no:pytest_fastcollect"))
        for w in words
    )


# --- ini settings ---------------------------------------------------------------------


class IniSetting:
    """One ``daemon_*`` ini setting: its kind, default, lower bound and help."""

    __slots__ = ("attr", "default", "help", "kind", "minimum", "name", "scale")

    def __init__(
        self,
        name: str,
        kind: str,
        default: str,
        help: str,
        attr: str = "",
        minimum: float = 0,
        scale: float = 1,
    ) -> None:
        self.name = name
        self.kind = kind  # "bool", "int", "float" or "level"
        self.default = default  # as written in an ini file
        self.help = help
        self.attr = attr  # the DaemonSettings attribute; "" for client-only settings
        self.minimum = minimum
        self.scale = scale  # ini unit -> internal unit (ms -> s)

    def accepts(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "level":
            return ", ".join(LOG_LEVELS)
        noun = "a whole number" if self.kind == "int" else "a number"
        return f"{noun} of at least {self.minimum:g}"

    def parse(self, raw: object) -> Any:
        """The value in its internal unit; ValueError names the setting and what it accepts."""
        value = self.convert(raw)
        return value * self.scale if self.scale != 1 else value

    def convert(self, raw: object) -> Any:
        """The value in the ini file's unit."""
        text = str(raw).strip()
        value: Any
        try:
            if self.kind == "bool":
                if isinstance(raw, bool):
                    return raw
                if text.lower() not in (*_TRUE_WORDS, *_FALSE_WORDS[1:]):
                    raise ValueError(text)
                return text.lower() in _TRUE_WORDS
            if self.kind == "level":
                if text.upper() not in LOG_LEVELS:
                    raise ValueError(text)
                return text.upper()
            value = int(text) if self.kind == "int" else float(text)
            if value < self.minimum:
                raise ValueError(text)
        except ValueError:
            raise ValueError(
                f"ini option {self.name} = {text!r} is not valid; it takes {self.accepts()}"
            ) from None
        return value


INI_SETTINGS = (
    IniSetting(
        "daemon_autostart",
        "bool",
        "false",
        "Start the daemon in the background after a cold run (pytest-fastcollect).",
    ),
    IniSetting(
        "daemon_max_connections",
        "int",
        "10",
        "Daemon: connections served at once (default 10).",
        attr="max_connections",
        minimum=1,
    ),
    IniSetting(
        "daemon_max_request_bytes",
        "int",
        str(10 * 1024 * 1024),
        "Daemon: largest request in bytes (default 10 MiB).",
        attr="max_request_bytes",
        minimum=1024,
    ),
    IniSetting(
        "daemon_request_timeout",
        "float",
        "30",
        "Daemon: seconds a client has to send its whole request (default 30).",
        attr="request_timeout",
        minimum=0.1,
    ),
    IniSetting(
        "daemon_debounce_ms",
        "float",
        "20",
        "Daemon: milliseconds of quiet after file events before a reload (default 20).",
        attr="debounce",
        minimum=0,
        scale=0.001,
    ),
    IniSetting(
        "daemon_learn_imports",
        "bool",
        "true",
        "Daemon: import in the warm process the library modules runs import lazily (default true).",
        attr="learn_imports",
    ),
    IniSetting(
        "daemon_log_level",
        "level",
        "INFO",
        "Daemon: level of its log: DEBUG, INFO, WARNING or ERROR (default INFO).",
        attr="log_level",
    ),
)
INI_BY_NAME = {s.name: s for s in INI_SETTINGS}


class DaemonSettings:
    """The daemon's settings, resolved: seconds for durations, bytes for sizes."""

    __slots__ = (
        "debounce",
        "learn_imports",
        "log_level",
        "max_connections",
        "max_request_bytes",
        "polling",
        "request_timeout",
    )

    def __init__(self, **values: Any) -> None:
        for setting in INI_SETTINGS:
            if setting.attr:
                setattr(self, setting.attr, setting.parse(setting.default))
        self.polling = False
        for name, value in values.items():
            if name not in self.__slots__:
                raise TypeError(f"unknown daemon setting {name!r}")
            setattr(self, name, value)

    max_connections: int
    max_request_bytes: int
    request_timeout: float
    debounce: float
    learn_imports: bool
    log_level: str
    polling: bool

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def to_json(self) -> str:
        import json  # here: the client's start-up imports this module, and json costs it

        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DaemonSettings:
        import json

        return cls(**json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DaemonSettings) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"DaemonSettings({self.to_json()})"


def ini_value(config: pytest.Config, name: str) -> Any:
    """One ``daemon_*`` ini setting, checked; ValueError names it and what it takes."""
    import pytest

    setting = INI_BY_NAME[name]
    try:
        return setting.parse(config.getini(name))
    except (ValueError, TypeError, pytest.UsageError):
        # pytest's own typed parsing failed (pytest 9 says so without the
        # setting's name), or it accepted a value we do not (-1 as -1.0):
        # name the setting and quote the value as the user wrote it.
        return setting.parse(_raw_ini(config, name))


def _raw_ini(config: pytest.Config, name: str) -> object:
    """The value as written: the last ``-o name=...``, else the ini file's."""
    ns = getattr(config, "known_args_namespace", None)
    for override in reversed(getattr(ns, "override_ini", None) or []):
        key, sep, value = str(override).partition("=")
        if sep and key.strip() == name:
            return value
    # pytest 9 keeps ConfigValue objects in _inicfg (its ``inicfg`` is a
    # deprecated proxy); older versions a plain dict in ``inicfg``.
    inicfg: Any = getattr(config, "_inicfg", None)
    if inicfg is None:
        inicfg = getattr(config, "inicfg", {})
    found = inicfg.get(name, "") if hasattr(inicfg, "get") else ""
    return getattr(found, "value", found)


def check_all(config: pytest.Config) -> None:
    """Parse every ``daemon_*`` setting once, so a bad value fails before any test runs.

    Raises ``pytest.UsageError`` with one line naming the setting and what it
    accepts: pytest prints it as ``ERROR: ...`` and exits 4, before the
    session starts (called from the hand-off and from ``pytest_configure``).
    """
    import pytest

    for setting in INI_SETTINGS:
        try:
            ini_value(config, setting.name)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None


def from_config(config: pytest.Config, environ: Mapping[str, str] | None = None) -> DaemonSettings:
    values = {s.attr: ini_value(config, s.name) for s in INI_SETTINGS if s.attr}
    return DaemonSettings(polling=env_flag(ENV_POLLING, environ), **values)


def add_ini_options(parser: pytest.Parser) -> None:
    """Register every ``daemon_*`` ini setting, typed where this pytest knows the type."""
    typed = _pytest_has_numeric_ini()
    for setting in INI_SETTINGS:
        kind: str | None = None
        default: object = setting.default
        if setting.kind == "bool" or (setting.kind in ("int", "float") and typed):
            kind, default = setting.kind, setting.convert(setting.default)
        parser.addini(setting.name, help=setting.help, type=kind, default=default)  # type: ignore[arg-type]


def _pytest_has_numeric_ini() -> bool:
    """The ``int`` and ``float`` ini types arrived in pytest 8.4."""
    import pytest

    major, minor = (int(x) for x in pytest.__version__.split(".")[:2])
    return (major, minor) >= (8, 4)
