from __future__ import annotations

import pytest
from shop import Cart, Money
from shop.catalog import UnknownProduct


class TestCart:
    def test_new_cart_is_empty(self, cart: Cart) -> None:
        assert cart.lines == []
        assert cart.subtotal() == Money(0)

    def test_adding_twice_merges_lines(self, cart: Cart) -> None:
        cart.add("APL", 2)
        cart.add("APL")
        assert [(line.product.sku, line.quantity) for line in cart.lines] == [("APL", 3)]

    def test_subtotal(self, cart: Cart) -> None:
        cart.add("BRD")
        cart.add("APL", 5)
        assert cart.subtotal() == Money.parse("4.15")
        assert cart.quantity() == 6

    def test_partial_remove_keeps_the_line(self, cart: Cart) -> None:
        cart.add("CHS", 3)
        cart.remove("CHS", 1)
        assert cart.lines[0].quantity == 2

    def test_full_remove_drops_the_line(self, cart: Cart) -> None:
        cart.add("CHS", 3)
        cart.remove("CHS")
        assert cart.lines == []

    def test_unknown_sku(self, cart: Cart) -> None:
        with pytest.raises(UnknownProduct):
            cart.add("XYZ")

    @pytest.mark.parametrize("quantity", [0, -1])
    def test_quantity_must_be_positive(self, cart: Cart, quantity: int) -> None:
        with pytest.raises(ValueError, match="positive"):
            cart.add("APL", quantity)


def test_catalog_tags(cart: Cart) -> None:
    assert [p.sku for p in cart.catalog.tagged("fruit")] == ["APL", "PER"]
