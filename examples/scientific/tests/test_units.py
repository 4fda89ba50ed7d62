from __future__ import annotations

import numpy as np
import pytest

from labstats import units


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (1.0, "kg", "g", 1000.0),
        (250.0, "mg", "g", 0.25),
        (1.5, "m", "mm", 1500.0),
        (2.0, "L", "mL", 2000.0),
        (5.0, "mmol/L", "umol/L", 5000.0),
        (0.0, "degC", "K", 273.15),
        (100.0, "degC", "degF", 212.0),
        (-40.0, "degF", "degC", -40.0),
    ],
)
def test_convert(value: float, source: str, target: str, expected: float) -> None:
    assert units.convert(value, source, target) == pytest.approx(expected)


def test_convert_is_vectorised() -> None:
    out = units.convert(np.array([0.0, 10.0, 37.0]), "degC", "K")
    np.testing.assert_allclose(out, [273.15, 283.15, 310.15])


def test_every_unit_round_trips_through_si() -> None:
    values = np.array([-3.5, 0.0, 1.0, 42.0])
    for symbol in units.UNITS:
        si, si_symbol = units.to_si(values, symbol)
        assert units.lookup(si_symbol).dimension == units.lookup(symbol).dimension
        np.testing.assert_allclose(units.convert(si, si_symbol, symbol), values, atol=1e-9)


def test_dimensions_do_not_mix() -> None:
    with pytest.raises(units.UnitError, match=r"cannot convert mass \(g\) to length \(m\)"):
        units.convert(1.0, "g", "m")


def test_unknown_unit() -> None:
    with pytest.raises(units.UnitError, match="unknown unit 'furlong'"):
        units.lookup("furlong")


def test_every_dimension_has_an_si_unit() -> None:
    assert {unit.dimension for unit in units.UNITS.values()} == set(units.SI)
    for symbol in units.SI.values():
        unit = units.lookup(symbol)
        assert (unit.scale, unit.offset) == (1.0, 0.0)
