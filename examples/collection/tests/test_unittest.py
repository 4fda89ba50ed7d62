from __future__ import annotations

import unittest


class ArithmeticTests(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(1 + 1, 2)

    def test_sub(self) -> None:
        self.assertEqual(3 - 1, 2)

    @unittest.skip("collected, then skipped")
    def test_skipped(self) -> None:
        raise AssertionError("never runs")

    def helper(self) -> None:
        """Not a test method."""


class ComparisonMixin:
    def test_mixin_method(self) -> None:
        self.assertTrue(self.small < self.big)  # type: ignore[attr-defined]


class IntComparisonTests(ComparisonMixin, unittest.TestCase):
    small, big = 1, 2


class StrComparisonTests(ComparisonMixin, unittest.TestCase):
    small, big = "a", "b"

    def test_only_for_strings(self) -> None:
        self.assertEqual("a".upper(), "A")
