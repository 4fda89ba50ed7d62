from __future__ import annotations


def test_top_level_names() -> None:
    assert __name__ == "test_names"
