from __future__ import annotations

import mpmath
import pytest
import sympy
from calc.series import taylor, taylor_error


def test_exp_taylor(x: sympy.Symbol) -> None:
    assert taylor("exp(x)", 4) == 1 + x + x**2 / 2 + x**3 / 6


@pytest.mark.parametrize("order", [4, 6, 8])
def test_error_shrinks_with_order(order: int) -> None:
    assert taylor_error("sin(x)", order + 2, 0.5) < taylor_error("sin(x)", order, 0.5)


def test_mpmath_agrees_with_sympy() -> None:
    with mpmath.workdps(25):
        assert mpmath.nstr(mpmath.pi, 20) == str(sympy.N(sympy.pi, 20))
