"""A shopping cart: lines of products and quantities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shop.money import Money, total

if TYPE_CHECKING:
    from shop.catalog import Catalog, Product


@dataclass
class CartLine:
    product: Product
    quantity: int

    @property
    def amount(self) -> Money:
        return self.product.price.times(self.quantity)


class Cart:
    def __init__(self, catalog: Catalog, currency: str = "EUR") -> None:
        self.catalog = catalog
        self.currency = currency
        self._lines: dict[str, CartLine] = {}

    def add(self, sku: str, quantity: int = 1) -> CartLine:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        product = self.catalog.get(sku)
        line = self._lines.get(sku)
        if line is None:
            line = self._lines[sku] = CartLine(product, 0)
        line.quantity += quantity
        return line

    def remove(self, sku: str, quantity: int | None = None) -> None:
        line = self._lines[sku]
        if quantity is None or quantity >= line.quantity:
            del self._lines[sku]
        else:
            line.quantity -= quantity

    @property
    def lines(self) -> list[CartLine]:
        return sorted(self._lines.values(), key=lambda line: line.product.sku)

    def quantity(self) -> int:
        return sum(line.quantity for line in self._lines.values())

    def subtotal(self) -> Money:
        return total([line.amount for line in self._lines.values()], self.currency)
