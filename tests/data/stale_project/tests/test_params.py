import pytest
from app.core import SCALE


@pytest.mark.parametrize("n", range(SCALE))
def test_param(n):
    assert n < 2
