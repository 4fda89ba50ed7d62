"""Not a test module: imported by tests, never collected."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    return a + b


def test_looking_helper() -> None:
    """Named like a test, but helpers.py does not match python_files."""
