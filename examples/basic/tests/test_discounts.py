from __future__ import annotations

import pytest
from shop import Cart, Money
from shop.discounts import BuyXGetOneFree, PercentOff, amount_due, best_discount


@pytest.mark.parametrize(
    ("quantity", "free"),
    [(1, 0), (2, 0), (3, 1), (5, 1), (6, 2), (9, 3)],
    ids=lambda v: f"n{v}",
)
def test_buy_two_get_one_free(cart: Cart, quantity: int, free: int) -> None:
    cart.add("PER", quantity)
    assert BuyXGetOneFree("PER", 2).discount(cart) == Money.parse("0.55").times(free)


@pytest.mark.parametrize(
    ("items", "due"),
    [
        pytest.param({"BRD": 1}, "2.15", id="below-minimum"),
        pytest.param({"CHS": 2}, "12.58", id="ten-percent-off"),
        pytest.param({"PER": 12}, "4.40", id="free-pears-win"),
        pytest.param({"PER": 9, "CHS": 2}, "17.04", id="percent-beats-free-pears"),
    ],
)
def test_best_rule_wins(cart: Cart, items: dict[str, int], due: str) -> None:
    for sku, quantity in items.items():
        cart.add(sku, quantity)
    rules = [PercentOff(10, minimum=Money.parse("10")), BuyXGetOneFree("PER", 2)]
    assert amount_due(cart, rules) == Money.parse(due)


def test_no_rules_no_discount(cart: Cart) -> None:
    cart.add("APL")
    assert best_discount(cart, []) == Money(0)
