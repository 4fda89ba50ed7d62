from __future__ import annotations

import numpy as np
import pytest

from labstats import ESTIMATORS
from labstats.registry import Estimator, Registry

BUILT_IN = {
    "geometric_mean",
    "harmonic_mean",
    "hodges_lehmann",
    "mean",
    "median",
    "midrange",
    "trimmed_mean",
}


def test_package_import_registers_the_built_in_estimators() -> None:
    assert set(ESTIMATORS.names()) == BUILT_IN


def test_names_are_sorted_and_iteration_follows_them() -> None:
    assert ESTIMATORS.names() == sorted(BUILT_IN)
    assert list(ESTIMATORS) == ESTIMATORS.names()
    assert len(ESTIMATORS) == len(BUILT_IN)


def test_unknown_estimator_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown estimator 'mode'; known: geometric_mean"):
        ESTIMATORS.get("mode")


def test_duplicate_registration_is_refused() -> None:
    registry: Registry[int] = Registry("widget")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.add("a", 2)
    assert registry.get("a") == 1


def test_membership() -> None:
    assert "median" in ESTIMATORS
    assert "mode" not in ESTIMATORS


# Parametrized from the registry itself: collection sees what import registered.
@pytest.mark.parametrize("name", ESTIMATORS.names())
def test_estimate_lies_within_the_data(name: str) -> None:
    data = np.array([1.0, 2.0, 2.5, 3.0, 8.0])
    value = ESTIMATORS.get(name)(data)
    assert data.min() <= value <= data.max()


def test_every_estimator_has_a_summary() -> None:
    for name in ESTIMATORS:
        entry = ESTIMATORS.get(name)
        assert isinstance(entry, Estimator)
        assert entry.name == name
        assert entry.summary.endswith(".")
