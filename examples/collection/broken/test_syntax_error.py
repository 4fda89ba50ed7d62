# This file is broken on purpose: collecting it must report a SyntaxError,
# through the daemon exactly as in a cold pytest run.


def test_never_runs():
    assert (1 +
