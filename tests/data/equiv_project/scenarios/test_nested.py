"""pytest runs started by a test: in-process (pytester) and in a subprocess."""

pytest_plugins = ["pytester"]


def test_inprocess_run(pytester):
    pytester.makepyfile("def test_a(): pass\ndef test_b(): assert 0")
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)


def test_subprocess_run(pytester):
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)
