"""Classes registered into app.registry at import time."""

from app.registry import register


@register
class Alpha:
    value = 1


@register
class Beta:
    value = 2
