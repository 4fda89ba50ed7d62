from app.core import SCALE, compute, greet
from app.derived import DOUBLE_SCALE, scaled


def test_compute():
    assert compute(3) == 6


def test_scale_constant():
    assert SCALE == 2


def test_double_scale():
    assert DOUBLE_SCALE == 4


def test_scaled():
    assert scaled(1) == 4


def test_greet():
    assert greet("bob") == "hello bob"
