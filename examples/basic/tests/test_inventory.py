from __future__ import annotations

import unittest

from shop import Cart, Catalog, Money, Product
from shop.inventory import Inventory, OutOfStock


class InventoryTests(unittest.TestCase):
    def setUp(self) -> None:
        catalog = Catalog([Product("APL", "Apple", Money(40)), Product("BRD", "Bread", Money(215))])
        self.cart = Cart(catalog)
        self.inventory = Inventory({"APL": 10, "BRD": 1})

    def test_reserve_holds_stock(self) -> None:
        self.cart.add("APL", 4)
        self.inventory.reserve(self.cart)
        self.assertEqual(self.inventory.available("APL"), 6)

    def test_reserve_is_all_or_nothing(self) -> None:
        self.cart.add("APL", 4)
        self.cart.add("BRD", 2)
        with self.assertRaises(OutOfStock) as caught:
            self.inventory.reserve(self.cart)
        self.assertEqual((caught.exception.sku, caught.exception.available), ("BRD", 1))
        self.assertEqual(self.inventory.available("APL"), 10)

    def test_release_and_commit(self) -> None:
        self.cart.add("APL", 3)
        first = self.inventory.reserve(self.cart)
        self.inventory.release(first)
        self.assertEqual(self.inventory.available("APL"), 10)
        second = self.inventory.reserve(self.cart)
        self.inventory.commit(second)
        self.assertEqual(self.inventory.available("APL"), 7)
