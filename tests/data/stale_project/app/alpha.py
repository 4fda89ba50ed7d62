"""One of two same-length module names (a same-size import swap)."""

NAME = "alpha"
