"""The built-in location estimators, registered in ESTIMATORS at import."""

from __future__ import annotations

import numpy as np

from labstats.registry import Values, estimator

TRIM = 0.1


@estimator("mean")
def mean(values: Values) -> float:
    """Arithmetic mean."""
    return float(np.mean(values))


@estimator("median", robust=True)
def median(values: Values) -> float:
    """Middle value (mean of the two middle ones for an even count)."""
    return float(np.median(values))


@estimator("trimmed_mean", robust=True)
def trimmed_mean(values: Values) -> float:
    """Mean after dropping the lowest and highest 10 percent."""
    ordered = np.sort(values)
    cut = int(len(ordered) * TRIM)
    kept = ordered[cut : len(ordered) - cut] if cut else ordered
    return float(np.mean(kept))


@estimator("midrange")
def midrange(values: Values) -> float:
    """Halfway between the smallest and the largest value."""
    return float((np.min(values) + np.max(values)) / 2)


@estimator("geometric_mean")
def geometric_mean(values: Values) -> float:
    """n-th root of the product; positive values only."""
    if np.any(values <= 0):
        raise ValueError("geometric_mean: values must be positive")
    return float(np.exp(np.mean(np.log(values))))


@estimator("harmonic_mean")
def harmonic_mean(values: Values) -> float:
    """Reciprocal of the mean reciprocal; positive values only."""
    if np.any(values <= 0):
        raise ValueError("harmonic_mean: values must be positive")
    return float(len(values) / np.sum(1.0 / values))


@estimator("hodges_lehmann", robust=True)
def hodges_lehmann(values: Values) -> float:
    """Median of all pairwise means (Walsh averages)."""
    i, j = np.triu_indices(len(values))
    return float(np.median((values[i] + values[j]) / 2))
