from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labstats import loader

# Three samples, three quantities, three replicates each, in mixed units.
RECORDS = [
    {"sample": sample, "quantity": quantity, "value": value, "unit": unit}
    for sample, rows in {
        "A": [
            ("mass", 1.20, "g"),
            ("mass", 1180.0, "mg"),
            ("mass", 1.25, "g"),
            ("glucose", 5.1, "mmol/L"),
            ("glucose", 5300.0, "umol/L"),
            ("glucose", 4.9, "mmol/L"),
            ("temp", 21.0, "degC"),
            ("temp", 21.5, "degC"),
            ("temp", 294.0, "K"),
        ],
        "B": [
            ("mass", 2.40, "g"),
            ("mass", 2.35, "g"),
            ("mass", 2450.0, "mg"),
            ("glucose", 7.8, "mmol/L"),
            ("glucose", 8.1, "mmol/L"),
            ("glucose", 7.5, "mmol/L"),
            ("temp", 37.0, "degC"),
            ("temp", 36.8, "degC"),
            ("temp", 37.2, "degC"),
        ],
        "C": [
            ("mass", 0.60, "g"),
            ("mass", 610.0, "mg"),
            ("mass", 0.58, "g"),
            ("glucose", 3.9, "mmol/L"),
            ("glucose", 4.2, "mmol/L"),
            ("glucose", 4000.0, "umol/L"),
            ("temp", 4.0, "degC"),
            ("temp", 277.5, "K"),
            ("temp", 39.4, "degF"),
        ],
    }.items()
    for quantity, value, unit in rows
]


@pytest.fixture
def measurements() -> pd.DataFrame:
    return loader.from_records(RECORDS)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261201)


@pytest.fixture
def noisy_line(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 10.0, 50)
    return x, 2.5 * x - 1.0 + rng.normal(0.0, 0.2, size=x.size)
