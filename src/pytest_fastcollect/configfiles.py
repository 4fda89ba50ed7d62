"""pytest's configuration files, read the way pytest's loaders read them.

Part of rootdir.py's mirror of ``_pytest/config/findpaths.py``: which files
hold pytest configuration for a given pytest version (8.0 to 9.2), and the
values in them, as ``{name: (mode, value)}`` where mode is "ini" (strings
and lists of strings) or "toml" (native TOML values, pytest 9). Ini files
are parsed exactly as ``iniconfig`` parses them, TOML with ``tomllib``
(``tomli`` on Python 3.10, as pytest). ``Unsupported`` means pytest would
fail on the file, or this module cannot tell what it would do.

Standard library only; ``tomllib`` is imported only when a TOML file that
mentions pytest has to be parsed.
"""

from __future__ import annotations

import os
import sys

CONFIG_NAMES_8 = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
CONFIG_NAMES_9 = ("pytest.toml", ".pytest.toml", *CONFIG_NAMES_8)


class Unsupported(Exception):
    pass


Config = dict[str, tuple[str, object]]  # name -> (mode "ini" or "toml", value)


def load_named(path: str, version: tuple[int, int], explicit: bool = False) -> Config | None:
    """The configuration pytest reads from ``path`` (a discovered file, or in 9.2
    any ``-c`` file: loaders by name, then by suffix), None if it holds none."""
    if version < (9, 2):
        return load_by_suffix(path, version)
    name = os.path.basename(path)
    if name in ("pytest.toml", ".pytest.toml"):
        table = _pytest_table(path, _read_toml(path))
        return {} if table is None else table
    if name in ("pytest.ini", ".pytest.ini"):
        return _ini_section(path, "pytest") or {}
    if name == "pyproject.toml":
        return _tool_pytest(path, _read_toml(path, prescan=True))
    if name == "setup.cfg" or path_suffix(name) == ".cfg":
        return _cfg_section(path)
    if name == "tox.ini" or path_suffix(name) == ".ini":
        return _ini_section(path, "pytest")
    # 9.2: a custom TOML file given with -c reads [pytest], or [tool.pytest*].
    assert explicit and path_suffix(name) == ".toml"
    document = _read_toml(path)
    found = _tool_pytest(path, document)
    if found is None:
        return _pytest_table(path, document)
    if "pytest" in document:
        raise Unsupported(f"{path}: both [pytest] and [tool.pytest]")
    return found


def load_by_suffix(path: str, version: tuple[int, int]) -> Config | None:
    """``load_config_dict_from_file`` of pytest 8.0 to 9.1."""
    name = os.path.basename(path)
    suffix = path_suffix(name)
    if suffix == ".ini":
        found = _ini_section(path, "pytest")
        if found is None and (
            name == "pytest.ini" or (version >= (9, 0) and name == ".pytest.ini")
        ):
            return {}
        return found
    if suffix == ".cfg":
        return _cfg_section(path)
    if suffix == ".toml":
        if version >= (9, 0) and name in ("pytest.toml", ".pytest.toml"):
            table = _read_toml(path).get("pytest", {})
            if not isinstance(table, dict):
                raise Unsupported(f"{path}: [pytest] is not a table")
            return {k: ("toml", v) for k, v in table.items()}
        document = _read_toml(path, prescan=True)
        if version >= (9, 0):
            return _tool_pytest(path, document)
        ini_options = _table(_table(_table(document, "tool", path), "pytest", path), "", path)
        return _ini_mode(ini_options) if ini_options is not None else None
    return None


def _table(document: dict[str, object] | None, key: str, path: str) -> dict[str, object] | None:
    """``document.get(key, {})`` (key "": the ``ini_options`` table, or None if absent)."""
    if document is None:
        return None
    if key == "":
        value = document.get("ini_options")
        if value is None:
            return None
    else:
        value = document.get(key, {})
    if not isinstance(value, dict):
        raise Unsupported(f"{path}: {key or 'ini_options'} is not a table")
    return value


def _ini_mode(table: dict[str, object]) -> Config:
    return {k: ("ini", v if isinstance(v, list) else str(v)) for k, v in table.items()}


def _tool_pytest(path: str, document: dict[str, object]) -> Config | None:
    """``[tool.pytest]`` (TOML mode) or ``[tool.pytest.ini_options]`` (ini mode), pytest 9."""
    tool_pytest = _table(_table(document, "tool", path), "pytest", path) or {}
    toml_config = {k: v for k, v in tool_pytest.items() if k != "ini_options"}
    ini_config = tool_pytest.get("ini_options")
    if toml_config and ini_config:
        raise Unsupported(f"{path}: both [tool.pytest] and [tool.pytest.ini_options]")
    if toml_config:
        return {k: ("toml", v) for k, v in toml_config.items()}
    if ini_config is not None:
        if not isinstance(ini_config, dict):
            raise Unsupported(f"{path}: ini_options is not a table")
        return _ini_mode(ini_config)
    return None


def _pytest_table(path: str, document: dict[str, object]) -> Config | None:
    """The ``[pytest]`` table of a pytest 9.2 TOML file."""
    if "pytest" in document:
        table = document["pytest"]
        if not isinstance(table, dict):
            raise Unsupported(f"{path}: [pytest] is not a table")
        return {k: ("toml", v) for k, v in table.items()}
    if any(not isinstance(v, dict) for v in document.values()):
        raise Unsupported(f"{path}: options outside of the [pytest] table")
    return None


def _ini_section(path: str, section: str) -> Config | None:
    sections = _read_ini(path)
    if section not in sections:
        return None
    return {k: ("ini", v) for k, v in sections[section].items()}


def _cfg_section(path: str) -> Config | None:
    sections = _read_ini(path)
    if "tool:pytest" in sections:
        return {k: ("ini", v) for k, v in sections["tool:pytest"].items()}
    if "pytest" in sections:
        raise Unsupported(f"{path}: a [pytest] section in a .cfg file (pytest fails on it)")
    return None


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise Unsupported(f"cannot read {path}: {exc}") from exc


def _read_toml(path: str, prescan: bool = False) -> dict[str, object]:
    """What pytest's loaders read of a TOML file (see ``_view``), from the cache when
    the file is the one that was parsed."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise Unsupported(f"cannot read {path}: {exc}") from exc
    # Taken before reading: a file rewritten meanwhile is parsed new and cached
    # under the old identity, which the next stat no longer matches.
    identity = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    text = _read_text(path)
    # A document that never spells "pytest" (even as a \\u escape) has no
    # pytest table: skip importing and running the TOML parser (~10 ms).
    if prescan and "pytest" not in text and "\\u" not in text and "\\U" not in text:
        return {}
    cached = _cached_view(path, identity)
    if cached is not None:
        return cached
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        try:
            import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError as exc:
            raise Unsupported("tomli is not installed (pytest reads TOML with it)") from exc
    try:
        document: dict[str, object] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Unsupported(f"{path}: {exc}") from exc
    view = _view(document)
    _store_view(path, identity, view)
    return view


def _view(document: dict[str, object]) -> dict[str, object]:
    """The part of a TOML document pytest's loaders look at: ``tool.pytest``, the
    ``pytest`` table, and whether any other top-level value is not a table."""
    view: dict[str, object] = {}
    if "tool" in document:
        tool = document["tool"]
        if isinstance(tool, dict):
            tool = {"pytest": tool["pytest"]} if "pytest" in tool else {}
        view["tool"] = tool
    if "pytest" in document:
        view["pytest"] = document["pytest"]
    if any(not isinstance(v, dict) for k, v in document.items() if k not in ("tool", "pytest")):
        view[" a value outside any table"] = True
    return view


# A private directory (the runtime directory) where parsed TOML views are kept
# between runs: parsing means importing tomllib, ~10 ms of a thin client's ~30.
cache_dir: str | None = None


def _cache_file(path: str) -> str | None:
    if cache_dir is None:
        return None
    from pytest_fastcollect.paths import sha256_hex

    return os.path.join(cache_dir, f"toml-{sha256_hex(path.encode())[:24]}.cache")


def _cached_view(path: str, identity: list[int]) -> dict[str, object] | None:
    cache = _cache_file(path)
    if cache is None:
        return None
    from pytest_fastcollect.wire import cjson  # not json: the client's start-up reads this

    try:
        with open(cache, encoding="utf-8") as fh:
            entry = cjson.loads(fh.read())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(entry, dict)
        or entry.get("path") != path
        or entry.get("identity") != identity
    ):
        return None
    view = entry.get("view")
    return view if isinstance(view, dict) else None


def _store_view(path: str, identity: list[int], view: dict[str, object]) -> None:
    cache = _cache_file(path)
    if cache is None:
        return
    import json

    try:
        text = json.dumps({"path": path, "identity": identity, "view": view})
        if json.loads(text)["view"] != view:
            return  # NaN and the like: not cached
    except (TypeError, ValueError):
        return  # dates and times: not cached
    temporary = f"{cache}.{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(temporary, cache)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _read_ini(path: str) -> dict[str, dict[str, str]]:
    """Sections of an ini file, parsed exactly as ``iniconfig.IniConfig`` does."""
    data = _read_text(path).removeprefix("\ufeff")
    sections: dict[str, dict[str, list[str]]] = {}
    section: str | None = None
    last: list[str] | None = None
    for line in data.splitlines(True):
        name, value = _ini_line(path, line)
        if name is not None and value is not None:
            if section is None:
                raise Unsupported(f"{path}: no section header defined")
            if name in sections[section]:
                raise Unsupported(f"{path}: duplicate name {name!r}")
            last = [value] if value else []
            sections[section][name] = last
        elif name is not None:
            if not name:
                raise Unsupported(f"{path}: empty section name")
            if name in sections:
                raise Unsupported(f"{path}: duplicate section {name!r}")
            section, last = name, None
            sections[name] = {}
        elif value is not None:
            if last is None:
                raise Unsupported(f"{path}: unexpected value continuation")
            last.append(value)
    return {s: {k: "\n".join(v) for k, v in d.items()} for s, d in sections.items()}


def _ini_line(path: str, line: str) -> tuple[str | None, str | None]:
    """iniconfig's ``_parseline``: (name, value), (section, None) or (None, continuation)."""
    if line.lstrip()[:1] in ("#", ";"):
        return None, None
    line = line.rstrip()
    if not line:
        return None, None
    if line[0] == "[":
        real = line
        for c in "#;":
            line = line.split(c)[0].rstrip()
        if line[-1] == "]":
            return line[1:-1], None
        return None, real.strip()
    if not line[0].isspace():
        name, sep, value = line.partition("=")
        if not sep or ":" in name:
            name, sep, value = line.partition(":")
            if not sep:
                raise Unsupported(f"{path}: unexpected line {line!r}")
        return name.strip(), value.strip()
    return None, line.strip()


def path_suffix(name: str) -> str:
    """``PurePath(name).suffix``."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""
