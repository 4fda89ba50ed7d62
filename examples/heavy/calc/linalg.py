"""Exact linear algebra on small rational matrices."""

from __future__ import annotations

import sympy


def solve_system(rows: list[list[int]], rhs: list[int]) -> list[sympy.Rational]:
    solution = sympy.Matrix(rows).LUsolve(sympy.Matrix(rhs))
    return [sympy.nsimplify(v) for v in solution]


def eigenvalues(rows: list[list[int]]) -> dict[sympy.Expr, int]:
    return dict(sympy.Matrix(rows).eigenvals())
