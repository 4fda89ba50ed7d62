from __future__ import annotations

import math

import numpy as np
import pytest

from labstats import ESTIMATORS

DATA = [2.0, 4.0, 4.0, 5.0, 100.0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mean", 23.0),
        ("median", 4.0),
        ("midrange", 51.0),
        ("trimmed_mean", 23.0),  # 10 percent of 5 values trims nothing
        ("geometric_mean", (2 * 4 * 4 * 5 * 100) ** (1 / 5)),
        ("harmonic_mean", 5 / (1 / 2 + 1 / 4 + 1 / 4 + 1 / 5 + 1 / 100)),
        ("hodges_lehmann", 4.5),
    ],
)
def test_known_values(name: str, expected: float) -> None:
    assert ESTIMATORS.get(name)(DATA) == pytest.approx(expected)


def test_trimmed_mean_drops_the_tails_of_ten_values() -> None:
    data = [-1000.0, 1, 2, 3, 4, 5, 6, 7, 8, 1000.0]
    assert ESTIMATORS.get("trimmed_mean")(data) == pytest.approx(4.5)


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "hodges_lehmann"])
def test_robust_estimators_resist_one_outlier(name: str) -> None:
    clean = np.arange(1.0, 21.0)
    spoiled = clean.copy()
    spoiled[-1] = 1e6
    est = ESTIMATORS.get(name)
    assert est.robust
    assert abs(est(spoiled) - est(clean)) < 1.0


@pytest.mark.parametrize("name", ["mean", "midrange"])
def test_non_robust_estimators_follow_an_outlier(name: str) -> None:
    est = ESTIMATORS.get(name)
    assert not est.robust
    assert est([1.0, 2.0, 3.0, 1e6]) > 1000


@pytest.mark.parametrize("name", ["geometric_mean", "harmonic_mean"])
def test_positive_only_estimators_refuse_zero(name: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ESTIMATORS.get(name)([1.0, 0.0, 2.0])


def test_empty_input_is_refused() -> None:
    with pytest.raises(ValueError, match="mean: no values"):
        ESTIMATORS.get("mean")([])


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        ESTIMATORS.get("median")([1.0, math.nan])


def test_means_are_ordered() -> None:
    data = [1.0, 3.0, 9.0, 27.0]
    harmonic = ESTIMATORS.get("harmonic_mean")(data)
    geometric = ESTIMATORS.get("geometric_mean")(data)
    arithmetic = ESTIMATORS.get("mean")(data)
    assert harmonic < geometric < arithmetic
