from __future__ import annotations

import pandas as pd
import pytest

from labstats import loader

CSV = """\
# exported from the plate reader
sample, quantity, value, unit
S1, glucose, 5.5, mmol/L
S1, glucose, 5600, umol/L
S2, glucose, 6.1, mmol/L
S2, mass, 12, mg
"""


def test_read_csv_normalises_units() -> None:
    frame = loader.read_csv(CSV)
    assert len(frame) == 4
    glucose = frame[frame["quantity"] == "glucose"]
    assert set(glucose["si_unit"]) == {"mol/L"}
    assert glucose["si_value"].tolist() == pytest.approx([0.0055, 0.0056, 0.0061])


def test_replicates_are_numbered_per_sample_and_quantity() -> None:
    frame = loader.read_csv(CSV)
    assert frame["replicate"].tolist() == [1, 2, 1, 1]


def test_missing_columns_are_named() -> None:
    with pytest.raises(loader.LoaderError, match="missing columns: unit"):
        loader.from_records([{"sample": "A", "quantity": "mass", "value": 1.0}])


def test_non_numeric_value_names_the_row() -> None:
    records = [
        {"sample": "A", "quantity": "mass", "value": "1.0", "unit": "g"},
        {"sample": "A", "quantity": "mass", "value": "n/a", "unit": "g"},
    ]
    with pytest.raises(loader.LoaderError, match=r"rows \[1\]"):
        loader.from_records(records)


def test_unknown_unit_is_a_loader_error() -> None:
    with pytest.raises(loader.LoaderError, match="unknown unit 'stone'"):
        loader.from_records([{"sample": "A", "quantity": "mass", "value": 1, "unit": "stone"}])


def test_one_quantity_in_two_dimensions_is_refused() -> None:
    records = [
        {"sample": "A", "quantity": "size", "value": 1, "unit": "g"},
        {"sample": "A", "quantity": "size", "value": 1, "unit": "mm"},
    ]
    with pytest.raises(loader.LoaderError, match="'size' is measured in several dimensions"):
        loader.from_records(records)


def test_fixture_table_shape(measurements: pd.DataFrame) -> None:
    assert len(measurements) == 27
    assert measurements.groupby("quantity").size().to_dict() == {"glucose": 9, "mass": 9, "temp": 9}
    assert set(measurements["si_unit"]) == {"kg", "mol/L", "K"}


@pytest.mark.parametrize("quantity", ["mass", "glucose", "temp"])
def test_wide_has_one_row_per_sample(measurements: pd.DataFrame, quantity: str) -> None:
    table = loader.wide(measurements, quantity)
    assert table.index.tolist() == ["A", "B", "C"]
    assert table.columns.tolist() == ["r1", "r2", "r3"]
    assert not table.isna().any().any()


def test_wide_of_an_unknown_quantity(measurements: pd.DataFrame) -> None:
    with pytest.raises(loader.LoaderError, match="no measurements of 'ph'"):
        loader.wide(measurements, "ph")


def test_loading_does_not_change_the_input() -> None:
    raw = pd.DataFrame({"sample": ["A"], "quantity": ["mass"], "value": [1.0], "unit": ["g"]})
    loader.normalise(raw)
    assert raw.columns.tolist() == ["sample", "quantity", "value", "unit"]
