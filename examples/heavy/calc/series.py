"""Taylor polynomials and their error against the exact value."""

from __future__ import annotations

import mpmath
import sympy

from calc.symbolic import parse, x


def taylor(text: str, order: int, at: int = 0) -> sympy.Expr:
    return sympy.series(parse(text), x, at, order).removeO()


def taylor_error(text: str, order: int, point: float) -> float:
    approx = sympy.lambdify(x, taylor(text, order), "mpmath")
    exact = sympy.lambdify(x, parse(text), "mpmath")
    with mpmath.workdps(30):
        return float(abs(exact(mpmath.mpf(point)) - approx(mpmath.mpf(point))))
