"""A tiny shop domain: the code under test in examples/basic."""

from __future__ import annotations

from shop.cart import Cart, CartLine
from shop.catalog import Catalog, Product
from shop.money import Money

__all__ = ["Cart", "CartLine", "Catalog", "Money", "Product"]
