"""Discount rules applied to a cart; the best single rule wins."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from shop.money import Money

if TYPE_CHECKING:
    from shop.cart import Cart


class Rule(Protocol):
    def discount(self, cart: Cart) -> Money: ...


@dataclass(frozen=True)
class PercentOff:
    percent: int
    minimum: Money | None = None

    def discount(self, cart: Cart) -> Money:
        subtotal = cart.subtotal()
        if self.minimum is not None and subtotal < self.minimum:
            return Money(0, cart.currency)
        return subtotal.times(Decimal(self.percent) / 100)


@dataclass(frozen=True)
class BuyXGetOneFree:
    sku: str
    x: int

    def discount(self, cart: Cart) -> Money:
        for line in cart.lines:
            if line.product.sku == self.sku:
                free = line.quantity // (self.x + 1)
                return line.product.price.times(free)
        return Money(0, cart.currency)


def best_discount(cart: Cart, rules: list[Rule]) -> Money:
    return max((rule.discount(cart) for rule in rules), default=Money(0, cart.currency))


def amount_due(cart: Cart, rules: list[Rule]) -> Money:
    return cart.subtotal() - best_discount(cart, rules)
