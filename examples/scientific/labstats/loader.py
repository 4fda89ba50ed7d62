"""Measurement tables: records or CSV text in, a normalised DataFrame out.

A table has one row per measurement: ``sample``, ``quantity``, ``value``,
``unit`` and an optional ``replicate``. Loading adds ``si_value`` and
``si_unit`` so that later steps never see mixed units.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from labstats import units

REQUIRED = ("sample", "quantity", "value", "unit")


class LoaderError(ValueError):
    pass


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in REQUIRED if column not in frame.columns]
    if missing:
        raise LoaderError(f"missing columns: {', '.join(missing)}")
    out = frame.copy()
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    if out["value"].isna().any():
        bad = out.index[out["value"].isna()].tolist()
        raise LoaderError(f"non-numeric values in rows {bad}")
    if "replicate" not in out.columns:
        out["replicate"] = out.groupby(["sample", "quantity"]).cumcount() + 1
    si_value = np.empty(len(out))
    si_unit = np.empty(len(out), dtype=object)
    for unit, rows in out.groupby("unit").indices.items():
        try:
            converted, symbol = units.to_si(out["value"].to_numpy()[rows], str(unit))
        except units.UnitError as exc:
            raise LoaderError(str(exc)) from None
        si_value[rows] = converted
        si_unit[rows] = symbol
    out["si_value"] = si_value
    out["si_unit"] = si_unit
    per_quantity = out.groupby("quantity")["si_unit"].nunique()
    mixed = per_quantity[per_quantity > 1]
    if not mixed.empty:
        raise LoaderError(f"quantity {mixed.index[0]!r} is measured in several dimensions")
    return out.reset_index(drop=True)


def from_records(records: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    return normalise(pd.DataFrame.from_records(list(records)))


def read_csv(text: str) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(text), comment="#", skipinitialspace=True)
    return normalise(frame)


def wide(frame: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """One row per sample, one column per replicate, for one quantity (SI values)."""
    rows = frame[frame["quantity"] == quantity]
    if rows.empty:
        raise LoaderError(f"no measurements of {quantity!r}")
    table = rows.pivot(index="sample", columns="replicate", values="si_value")
    table.columns = [f"r{column}" for column in table.columns]
    return table.sort_index()
