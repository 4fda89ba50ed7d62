from __future__ import annotations

import pytest
from shop import Cart, Catalog, Money, Product


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        [
            Product("APL", "Apple", Money.parse("0.40"), frozenset({"fruit"})),
            Product("BRD", "Bread", Money.parse("2.15"), frozenset({"bakery"})),
            Product("CHS", "Cheese", Money.parse("6.99"), frozenset({"dairy"})),
            Product("PER", "Pear", Money.parse("0.55"), frozenset({"fruit"})),
        ]
    )


@pytest.fixture
def cart(catalog: Catalog) -> Cart:
    return Cart(catalog)
