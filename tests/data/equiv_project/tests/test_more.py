import os
import sys
import time

import pytest

from equivpkg import core


class TestGroup:
    def test_method_ok(self):
        assert core.register("a") >= 1

    def test_method_fails(self):
        assert core.REGISTRY == ["nope"]


def test_prints(capsys):
    print("hello from test_prints")
    sys.stderr.write("err from test_prints\n")
    assert True


def test_prints_and_fails():
    print("output before the failure")
    assert 0, "failed after printing"


def test_flavour(flavour):
    assert flavour in ("plain", "spicy")


def test_flavour_is_spicy(flavour):
    assert flavour == "spicy"


@pytest.mark.parametrize("delay", [0.3, 0.2, 0.1])
def test_timed(delay):
    # Sleeps only when asked (EQUIV_SLEEP=1, read at call time) so --durations has
    # a stable top three without slowing every other run.
    if os.environ.get("EQUIV_SLEEP") == "1":
        time.sleep(delay)


async def test_async_plain_is_not_run():
    pass
