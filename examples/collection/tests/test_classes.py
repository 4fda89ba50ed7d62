from __future__ import annotations

import pytest


class TestCart:
    def test_empty(self) -> None:
        assert [] == []

    def test_total(self, numbers: list[int]) -> None:
        assert sum(numbers) == 6

    @staticmethod
    def test_static() -> None:
        assert True

    @classmethod
    def test_classmethod(cls) -> None:
        assert cls is TestCart

    def helper(self) -> None:
        """Not collected: does not match python_functions."""


class TestOuter:
    def test_outer(self) -> None:
        assert True

    class TestInner:
        def test_inner(self) -> None:
            assert True

        class TestInnermost:
            def test_deep(self) -> None:
                assert True


class TestBase:
    flavour = "base"

    def test_flavour_is_set(self) -> None:
        assert self.flavour


class TestDerived(TestBase):
    flavour = "derived"

    def test_only_here(self) -> None:
        assert self.flavour == "derived"


class TestNotCollected:
    __test__ = False

    def test_hidden(self) -> None:
        raise AssertionError("never collected")


class Helper:
    """Not collected: does not match python_classes."""

    def test_method(self) -> None:
        raise AssertionError("never collected")


@pytest.mark.smoke
class TestMarkedClass:
    def test_one(self) -> None:
        assert True

    def test_two(self) -> None:
        assert True
