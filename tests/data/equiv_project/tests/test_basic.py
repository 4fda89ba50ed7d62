import warnings

import pytest

from equivpkg import core


def test_passes():
    assert core.add(1, 2) == 3


def test_fails():
    assert core.add(2, 2) == 5


def test_skipped():
    pytest.skip("not today")


@pytest.mark.skip(reason="marked skip")
def test_marked_skip():
    raise AssertionError("never runs")


@pytest.mark.xfail(reason="known bug")
def test_xfails():
    assert core.add(1, 1) == 3


@pytest.mark.xfail(reason="fixed already")
def test_xpasses():
    assert core.add(1, 1) == 2


def test_fixture_error(broken_fixture):
    assert broken_fixture


def test_teardown_error(broken_teardown):
    assert broken_teardown == 1


@pytest.mark.parametrize("a,b,total", [(1, 1, 2), (2, 3, 5), (3, 3, 7)])
def test_param(a, b, total):
    assert core.add(a, b) == total


@pytest.mark.slow
def test_marked_slow():
    assert core.add(10, 10) == 20


@pytest.mark.smoke
def test_marked_smoke_fails():
    assert core.add(0, 0) == 1


def test_warns():
    warnings.warn("something is deprecated-ish", UserWarning)
    assert True


def check_custom_prefix():
    assert core.add(5, 5) == 10


def check_custom_prefix_fails():
    assert core.add(5, 5) == 11
