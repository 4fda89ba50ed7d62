"""Calculus and algebra helpers over sympy expressions given as text."""

from __future__ import annotations

import sympy
from sympy.parsing.sympy_parser import (
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

TRANSFORMS = (*standard_transformations, implicit_multiplication_application)
x = sympy.Symbol("x")


def parse(text: str) -> sympy.Expr:
    return sympy.sympify(parse_expr(text, transformations=TRANSFORMS))


def derivative(text: str, order: int = 1) -> sympy.Expr:
    return sympy.diff(parse(text), x, order)


def integral(text: str, lower: object = None, upper: object = None) -> sympy.Expr:
    expr = parse(text)
    if lower is None:
        return sympy.integrate(expr, x)
    return sympy.integrate(expr, (x, lower, upper))


def roots(text: str) -> list[sympy.Expr]:
    return sorted(sympy.solve(parse(text), x), key=sympy.default_sort_key)


def simplified(text: str) -> sympy.Expr:
    return sympy.simplify(parse(text))
