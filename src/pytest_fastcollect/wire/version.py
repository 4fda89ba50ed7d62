"""The protocol version, importable without pydantic."""

from __future__ import annotations

PROTOCOL_VERSION = 1
