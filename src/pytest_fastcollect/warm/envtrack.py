"""Record which environment variables project code reads while it is imported.

Runs in the warm process only. A value read at import time is baked into the
warm modules; a run whose environment differs there cannot be served warm.
Reads made by pytest's configuration are not recorded: every run builds a
fresh configuration from its own environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

_BOOTSTRAP_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")

recorded: dict[str, str | None] = {}  # None: it was not set
written: set[str] = set()  # set or deleted while a module was imported
_originals: dict[str, Callable[..., Any]] = {}


def _importing() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_call_with_frames_removed" and code.co_filename in _BOOTSTRAP_FILES:
            return True
        if code.co_name == "exec_module" and code.co_filename.endswith(
            os.path.join("assertion", "rewrite.py")
        ):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class _State:
    enabled = False


def _record(key: object) -> None:
    if _State.enabled and isinstance(key, str) and key not in recorded and _importing():
        recorded[key] = _peek(key)


def _record_write(key: object) -> None:
    if _State.enabled and isinstance(key, str) and _importing():
        written.add(key)


def _peek(key: str) -> str | None:
    try:
        value: str = _originals["__getitem__"](os.environ, key)
    except KeyError:
        return None
    return value


def install() -> None:
    if _originals:
        _State.enabled = True
        return
    cls = type(os.environ)
    orig_getitem = cls.__getitem__
    orig_contains = cls.__contains__
    orig_setitem = cls.__setitem__
    orig_delitem = cls.__delitem__
    _originals["__getitem__"] = orig_getitem
    _originals["__contains__"] = orig_contains
    _originals["__setitem__"] = orig_setitem
    _originals["__delitem__"] = orig_delitem

    def __setitem__(self: Any, key: Any, value: Any) -> None:
        _record_write(key)
        orig_setitem(self, key, value)

    def __delitem__(self: Any, key: Any) -> None:
        _record_write(key)
        orig_delitem(self, key)

    def __getitem__(self: Any, key: Any) -> Any:
        _record(key)
        return orig_getitem(self, key)

    def __contains__(self: Any, key: Any) -> bool:
        _record(key)
        return bool(orig_contains(self, key))

    cls.__getitem__ = __getitem__  # type: ignore[method-assign]
    cls.__contains__ = __contains__  # type: ignore[method-assign]
    cls.__setitem__ = __setitem__  # type: ignore[method-assign]
    cls.__delitem__ = __delitem__  # type: ignore[method-assign]
    _State.enabled = True


def uninstall() -> None:
    """Restore os.environ (a run worker must not pay for the recorder)."""
    _State.enabled = False
    if _originals:
        cls = type(os.environ)
        for name in ("__getitem__", "__contains__", "__setitem__", "__delitem__"):
            setattr(cls, name, _originals.pop(name))
