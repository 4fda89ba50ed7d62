from __future__ import annotations

import pytest
import sympy


@pytest.fixture
def x() -> sympy.Symbol:
    return sympy.Symbol("x")
