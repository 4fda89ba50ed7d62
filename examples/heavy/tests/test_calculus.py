from __future__ import annotations

import pytest
import sympy
from calc import derivative, integral


@pytest.mark.parametrize(
    ("text", "expected"),
    [("x**3", "3*x**2"), ("sin(x)", "cos(x)"), ("exp(2x)", "2*exp(2*x)"), ("log(x)", "1/x")],
)
def test_derivative(text: str, expected: str) -> None:
    assert sympy.simplify(derivative(text) - sympy.sympify(expected)) == 0


def test_second_derivative(x: sympy.Symbol) -> None:
    assert derivative("x**4", order=2) == 12 * x**2


def test_indefinite_integral(x: sympy.Symbol) -> None:
    assert integral("2x") == x**2


def test_definite_integral() -> None:
    assert integral("x**2", 0, 3) == 9
