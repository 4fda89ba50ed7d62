"""Stock levels and reservations for checkout."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shop.cart import Cart


class OutOfStock(Exception):
    def __init__(self, sku: str, wanted: int, available: int) -> None:
        super().__init__(f"{sku}: wanted {wanted}, only {available} available")
        self.sku = sku
        self.wanted = wanted
        self.available = available


class Inventory:
    def __init__(self, stock: dict[str, int]) -> None:
        self._stock = Counter(stock)
        self._reserved: Counter[str] = Counter()

    def available(self, sku: str) -> int:
        return self._stock[sku] - self._reserved[sku]

    def reserve(self, cart: Cart) -> dict[str, int]:
        """Reserve every line of the cart, or nothing at all."""
        wanted = {line.product.sku: line.quantity for line in cart.lines}
        for sku, quantity in wanted.items():
            if self.available(sku) < quantity:
                raise OutOfStock(sku, quantity, self.available(sku))
        self._reserved.update(wanted)
        return wanted

    def release(self, reservation: dict[str, int]) -> None:
        self._reserved.subtract(reservation)

    def commit(self, reservation: dict[str, int]) -> None:
        self._stock.subtract(reservation)
        self._reserved.subtract(reservation)
