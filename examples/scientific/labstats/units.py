"""Units of measurement and vectorised conversion between them.

Every unit maps to its dimension's SI unit by ``si = value * scale + offset``
(the offset is for temperatures). Conversion never crosses dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Unit:
    symbol: str
    dimension: str
    scale: float
    offset: float = 0.0


_TABLE = (
    Unit("kg", "mass", 1.0),
    Unit("g", "mass", 1e-3),
    Unit("mg", "mass", 1e-6),
    Unit("ug", "mass", 1e-9),
    Unit("m", "length", 1.0),
    Unit("cm", "length", 1e-2),
    Unit("mm", "length", 1e-3),
    Unit("um", "length", 1e-6),
    Unit("L", "volume", 1.0),
    Unit("mL", "volume", 1e-3),
    Unit("uL", "volume", 1e-6),
    Unit("mol/L", "concentration", 1.0),
    Unit("mmol/L", "concentration", 1e-3),
    Unit("umol/L", "concentration", 1e-6),
    Unit("nmol/L", "concentration", 1e-9),
    Unit("K", "temperature", 1.0),
    Unit("degC", "temperature", 1.0, 273.15),
    Unit("degF", "temperature", 5.0 / 9.0, 459.67 * 5.0 / 9.0),
)

UNITS: dict[str, Unit] = {unit.symbol: unit for unit in _TABLE}

SI: dict[str, str] = {
    "mass": "kg",
    "length": "m",
    "volume": "L",
    "concentration": "mol/L",
    "temperature": "K",
}


class UnitError(ValueError):
    pass


def lookup(symbol: str) -> Unit:
    try:
        return UNITS[symbol]
    except KeyError:
        raise UnitError(f"unknown unit {symbol!r}") from None


def convert(values: npt.ArrayLike, source: str, target: str) -> npt.NDArray[np.float64]:
    """``values`` in unit ``source``, expressed in unit ``target``."""
    src, dst = lookup(source), lookup(target)
    if src.dimension != dst.dimension:
        raise UnitError(f"cannot convert {src.dimension} ({source}) to {dst.dimension} ({target})")
    si = np.asarray(values, dtype=np.float64) * src.scale + src.offset
    return (si - dst.offset) / dst.scale


def to_si(values: npt.ArrayLike, source: str) -> tuple[npt.NDArray[np.float64], str]:
    """``values`` in their dimension's SI unit, and that unit's symbol."""
    target = SI[lookup(source).dimension]
    return convert(values, source, target), target
