"""Products by SKU."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shop.money import Money


class UnknownProduct(KeyError):
    pass


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: Money
    tags: frozenset[str] = field(default_factory=frozenset)


class Catalog:
    def __init__(self, products: list[Product] | None = None) -> None:
        self._by_sku: dict[str, Product] = {}
        for product in products or []:
            self.add(product)

    def add(self, product: Product) -> None:
        if product.sku in self._by_sku:
            raise ValueError(f"duplicate SKU {product.sku}")
        self._by_sku[product.sku] = product

    def get(self, sku: str) -> Product:
        try:
            return self._by_sku[sku]
        except KeyError:
            raise UnknownProduct(sku) from None

    def tagged(self, tag: str) -> list[Product]:
        return sorted((p for p in self if tag in p.tags), key=lambda p: p.sku)

    def __iter__(self) -> Iterator[Product]:
        return iter(self._by_sku.values())

    def __len__(self) -> int:
        return len(self._by_sku)
