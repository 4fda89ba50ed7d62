from __future__ import annotations

from decimal import Decimal

import pytest
from shop.money import CurrencyMismatch, Money, total


@pytest.mark.parametrize(
    ("text", "cents"),
    [("0", 0), ("1", 100), ("2.5", 250), ("0.005", 0), ("0.015", 2), ("-3.10", -310)],
)
def test_parse(text: str, cents: int) -> None:
    assert Money.parse(text).cents == cents


@pytest.mark.parametrize(
    ("cents", "shown"),
    [(0, "0.00 EUR"), (5, "0.05 EUR"), (1999, "19.99 EUR"), (-42, "-0.42 EUR")],
)
def test_str(cents: int, shown: str) -> None:
    assert str(Money(cents)) == shown


@pytest.mark.parametrize("factor", [0, 1, 3, Decimal("0.5"), Decimal("0.1")])
def test_times_matches_decimal_arithmetic(factor: int | Decimal) -> None:
    price = Money.parse("2.15")
    expected = (Decimal("2.15") * Decimal(factor)).quantize(Decimal("0.01"))
    assert price.times(factor) == Money.parse(str(expected))


def test_total_of_nothing_is_zero() -> None:
    assert total([]) == Money(0)


def test_mixing_currencies_is_refused() -> None:
    with pytest.raises(CurrencyMismatch, match="EUR and USD"):
        Money(100, "EUR") + Money(100, "USD")
