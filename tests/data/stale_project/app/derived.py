"""Binds names from app.core at import time (the `from x import CONST` hazard)."""

from app.core import SCALE, compute

DOUBLE_SCALE = SCALE * 2


def scaled(x):
    return compute(x) + SCALE
