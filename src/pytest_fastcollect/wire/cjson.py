"""JSON for the client's start-up path, from the C codec ``json`` itself uses.

``import json`` imports ``re`` and ``enum`` (its decoder compiles a regular
expression at import): on the slow 2-core machines we measure on, that is
~10 ms of a client that has ~20 ms of its own to spend before it connects.
The C encoder and scanner behind ``json.dumps`` and ``json.loads``
(``_json.make_encoder``, ``_json.make_scanner``) need neither, so the thin
client, the start-up hook and the fast verbs call them here directly: the same
functions, the same output (``json.dumps`` with its defaults, less the spaces
after ``,`` and ``:``), the same errors. tests/test_cjson.py compares both on
the protocol's payloads and on edge cases.

An interpreter without ``_json`` (or one whose ``make_encoder`` signature
differs) gets the ``json`` module instead: slower to import, never different.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _ScanContext:
    """What ``_json.make_scanner`` reads from ``json.JSONDecoder`` (its defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def _not_serializable(obj: object) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _c_codec() -> tuple[Callable[[Any], str], Callable[[str], Any]] | None:
    try:
        import _json

        encoder = _json.make_encoder(
            {},  # markers: circular references raise ValueError, as in json.dumps
            _not_serializable,
            _json.encode_basestring_ascii,
            None,  # indent
            ":",
            ",",
            False,  # sort_keys
            False,  # skipkeys
            True,  # allow_nan
        )
        # typeshed types the context as a JSONDecoder; the scanner reads only these attributes.
        scanner = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]
    except (ImportError, TypeError, AttributeError):
        return None

    def dumps(obj: Any) -> str:
        return "".join(encoder(obj, 0))

    def loads(text: str) -> Any:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            obj, end = scanner(text, start)
        except StopIteration as exc:
            raise ValueError(f"Expecting value: char {exc.value}") from None
        if text[end:].strip(_WHITESPACE):
            raise ValueError(f"Extra data: char {end}")
        return obj

    return dumps, loads


def _py_codec() -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    import json

    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"))

    return dumps, json.loads


_dumps, _loads = _c_codec() or _py_codec()


def dumps(obj: Any) -> bytes:
    """``obj`` as compact, ASCII-only JSON bytes (what ``json.dumps`` writes)."""
    return _dumps(obj).encode()


def loads(raw: bytes | str) -> Any:
    """A JSON document; ``ValueError`` (a ``json.JSONDecodeError`` where the C
    scanner raises one) when it is not one. Bytes must be UTF-8."""
    return _loads(raw.decode() if isinstance(raw, bytes) else raw)
