"""Statistics on numpy arrays and measurement tables; estimators come from ESTIMATORS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from labstats.registry import ESTIMATORS


def _array(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return np.asarray(values, dtype=np.float64)


def zscore(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    data = _array(values)
    spread = data.std(ddof=1)
    if spread == 0:
        raise ValueError("zscore: all values are equal")
    return (data - data.mean()) / spread


def weighted_mean(values: npt.ArrayLike, weights: npt.ArrayLike) -> float:
    data, w = _array(values), _array(weights)
    if data.shape != w.shape:
        raise ValueError("weighted_mean: values and weights differ in shape")
    if np.any(w < 0) or w.sum() == 0:
        raise ValueError("weighted_mean: weights must be non-negative, not all zero")
    return float(np.dot(data, w) / w.sum())


def pearson(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    return float(np.corrcoef(_array(x), _array(y))[0, 1])


@dataclass(frozen=True)
class Fit:
    slope: float
    intercept: float
    r_squared: float

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return self.slope * _array(x) + self.intercept


def linear_fit(x: npt.ArrayLike, y: npt.ArrayLike) -> Fit:
    """Least squares line through (x, y)."""
    xs, ys = _array(x), _array(y)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("linear_fit: x and y must be 1-d and of one length")
    if len(xs) < 3:
        raise ValueError("linear_fit: needs at least 3 points")
    design = np.column_stack([xs, np.ones_like(xs)])
    (slope, intercept), *_ = np.linalg.lstsq(design, ys, rcond=None)
    residual = ys - (slope * xs + intercept)
    total = np.sum((ys - ys.mean()) ** 2)
    r_squared = 1.0 - float(np.sum(residual**2) / total) if total else 1.0
    return Fit(float(slope), float(intercept), r_squared)


def bootstrap_ci(
    values: npt.ArrayLike,
    estimator: str = "mean",
    *,
    level: float = 0.95,
    draws: int = 400,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of an ESTIMATORS entry."""
    data = _array(values)
    est = ESTIMATORS.get(estimator)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=(draws, len(data)))
    stats = np.array([est(data[row]) for row in picks])
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def summarize(
    frame: pd.DataFrame,
    estimators: Sequence[str] = ("mean", "median"),
    *,
    by: Sequence[str] = ("sample", "quantity"),
    column: str = "si_value",
) -> pd.DataFrame:
    """One row per group: the count and each named estimator of ``column``."""
    chosen = [ESTIMATORS.get(name) for name in estimators]
    rows = []
    for key, group in frame.groupby(list(by), sort=True):
        values = group[column].to_numpy(dtype=np.float64)
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row["n"] = len(values)
        row.update({est.name: est(values) for est in chosen})
        rows.append(row)
    return pd.DataFrame(rows).set_index(list(by))
