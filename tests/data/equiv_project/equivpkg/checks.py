"""Helpers whose behaviour depends on how the interpreter was started."""


def checked_positive(x):
    # Stripped under -O / PYTHONOPTIMIZE: asserts outside test modules are not rewritten.
    assert x > 0, "x must be positive"
    return x


def digits(n):
    # Limited by -X int_max_str_digits / PYTHONINTMAXSTRDIGITS (default 4300).
    return len(str(n))
