from __future__ import annotations

import pytest

from . import test_names


def test_relative_import() -> None:
    assert test_names.__name__ == "pkg.test_names"


@pytest.mark.slow
@pytest.mark.parametrize("n", range(3))
def test_range(n: int) -> None:
    assert n < 3
