"""A module the scenarios move."""


def helper():
    return 42
