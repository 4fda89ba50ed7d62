"""A thin layer over sympy, as a project that builds on it would have."""

from __future__ import annotations

from calc.symbolic import derivative, integral, roots, simplified

__all__ = ["derivative", "integral", "roots", "simplified"]
