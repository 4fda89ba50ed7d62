from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labstats import stats


def test_zscore_has_mean_zero_and_unit_spread(rng: np.random.Generator) -> None:
    z = stats.zscore(rng.normal(10.0, 3.0, size=200))
    assert z.mean() == pytest.approx(0.0, abs=1e-12)
    assert z.std(ddof=1) == pytest.approx(1.0)


def test_zscore_of_constant_values() -> None:
    with pytest.raises(ValueError, match="all values are equal"):
        stats.zscore([2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    ("weights", "expected"),
    [([1, 1, 1], 2.0), ([1, 0, 0], 1.0), ([0, 0, 2], 3.0), ([1, 2, 1], 2.0)],
)
def test_weighted_mean(weights: list[float], expected: float) -> None:
    assert stats.weighted_mean([1.0, 2.0, 3.0], weights) == pytest.approx(expected)


def test_weighted_mean_refuses_negative_weights() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        stats.weighted_mean([1.0, 2.0], [1.0, -1.0])


def test_pearson_of_a_line_and_its_mirror() -> None:
    x = np.arange(10.0)
    assert stats.pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert stats.pearson(x, -x) == pytest.approx(-1.0)


class TestLinearFit:
    def test_exact_line(self) -> None:
        x = np.array([0.0, 1.0, 2.0, 3.0])
        fit = stats.linear_fit(x, 4.0 * x + 2.0)
        assert (fit.slope, fit.intercept) == (pytest.approx(4.0), pytest.approx(2.0))
        assert fit.r_squared == pytest.approx(1.0)

    def test_noisy_line(self, noisy_line: tuple[np.ndarray, np.ndarray]) -> None:
        x, y = noisy_line
        fit = stats.linear_fit(x, y)
        assert fit.slope == pytest.approx(2.5, abs=0.05)
        assert fit.intercept == pytest.approx(-1.0, abs=0.2)
        assert 0.99 < fit.r_squared < 1.0

    def test_predict(self) -> None:
        fit = stats.Fit(slope=2.0, intercept=1.0, r_squared=1.0)
        np.testing.assert_allclose(fit.predict([0.0, 1.0, 2.0]), [1.0, 3.0, 5.0])

    def test_flat_data(self) -> None:
        fit = stats.linear_fit([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
        assert fit.slope == pytest.approx(0.0, abs=1e-12)
        assert fit.r_squared == 1.0

    def test_too_few_points(self) -> None:
        with pytest.raises(ValueError, match="at least 3 points"):
            stats.linear_fit([1.0, 2.0], [1.0, 2.0])

    def test_shapes_must_match(self) -> None:
        with pytest.raises(ValueError, match="of one length"):
            stats.linear_fit([1.0, 2.0, 3.0], [1.0, 2.0])


@pytest.mark.bootstrap
@pytest.mark.parametrize("estimator", ["mean", "median", "trimmed_mean"])
def test_bootstrap_interval_covers_the_centre(rng: np.random.Generator, estimator: str) -> None:
    data = rng.normal(50.0, 5.0, size=80)
    low, high = stats.bootstrap_ci(data, estimator, draws=300, seed=1)
    assert low < 50.0 < high
    assert high - low < 5.0


@pytest.mark.bootstrap
def test_bootstrap_is_reproducible_with_a_seed() -> None:
    data = np.arange(30.0)
    assert stats.bootstrap_ci(data, seed=7) == stats.bootstrap_ci(data, seed=7)
    assert stats.bootstrap_ci(data, seed=7) != stats.bootstrap_ci(data, seed=8)


def test_summarize_per_sample_and_quantity(measurements: pd.DataFrame) -> None:
    summary = stats.summarize(measurements, ["mean", "median", "midrange"])
    assert summary.shape == (9, 4)
    assert set(summary["n"]) == {3}
    mass_b = summary.loc[("B", "mass")]
    assert mass_b["median"] == pytest.approx(0.0024)
    assert mass_b["mean"] == pytest.approx((2.40 + 2.35 + 2.45) / 3 / 1000)


def test_summarize_temperatures_in_kelvin(measurements: pd.DataFrame) -> None:
    temps = measurements[measurements["quantity"] == "temp"]
    summary = stats.summarize(temps, ["mean"], by=["sample"])
    assert summary.index.tolist() == ["A", "B", "C"]
    # 4.0 degC, 277.5 K and 39.4 degF are all about 277.3 K.
    assert summary.loc["C", "mean"] == pytest.approx(277.3, abs=0.2)
    assert summary.loc["B", "mean"] == pytest.approx(310.15)


def test_summarize_rejects_unknown_estimators(measurements: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="unknown estimator 'mode'"):
        stats.summarize(measurements, ["mode"])
