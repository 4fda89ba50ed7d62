from __future__ import annotations


def test_package_names() -> None:
    assert __name__ == "pkg.test_names"


def test_levels(level: int) -> None:
    assert 1 <= level <= 3
