from __future__ import annotations

import pytest
import sympy
from sympy.printing.latex import latex


@pytest.mark.parametrize(
    ("text", "shown"),
    [("x**2", "x^{2}"), ("sqrt(x)", "\\sqrt{x}"), ("1/x", "\\frac{1}{x}")],
)
def test_latex(text: str, shown: str) -> None:
    assert latex(sympy.sympify(text)) == shown


def test_pretty_is_multiline() -> None:
    assert "\n" in sympy.pretty(sympy.sympify("x**2/3"), use_unicode=False)
