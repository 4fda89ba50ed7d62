from __future__ import annotations

import pytest
import sympy
from calc import roots, simplified


def test_quadratic_roots() -> None:
    assert roots("x**2 - 5x + 6") == [2, 3]


def test_complex_roots() -> None:
    assert roots("x**2 + 1") == [-sympy.I, sympy.I]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("sin(x)**2 + cos(x)**2", "1"), ("(x**2 - 1)/(x - 1)", "x + 1"), ("2*log(E)", "2")],
)
def test_simplify(text: str, expected: str) -> None:
    assert simplified(text) == sympy.sympify(expected)
