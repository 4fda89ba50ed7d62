from __future__ import annotations

import sympy
from calc.linalg import eigenvalues, solve_system


def test_solve_system() -> None:
    assert solve_system([[2, 1], [1, 3]], [3, 5]) == [sympy.Rational(4, 5), sympy.Rational(7, 5)]


def test_eigenvalues_of_a_symmetric_matrix() -> None:
    assert eigenvalues([[2, 0], [0, 3]]) == {2: 1, 3: 1}


def test_determinant() -> None:
    assert sympy.Matrix([[1, 2], [3, 4]]).det() == -2
