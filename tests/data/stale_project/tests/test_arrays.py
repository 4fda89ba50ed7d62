import numpy as np

from app.arrays import scaled


def test_scaled():
    assert scaled([1, 2]) == [2.0, 4.0]


def test_matmul_after_fork():
    a = np.arange(400.0).reshape(20, 20)
    assert float((a @ a).trace()) == 5016600.0
