from __future__ import annotations

import asyncio

import pytest


async def test_sleep_zero() -> None:
    await asyncio.sleep(0)


async def test_gather(numbers: list[int]) -> None:
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    assert await asyncio.gather(*(double(n) for n in numbers)) == [6, 2, 4]


@pytest.mark.parametrize("delay", [0, 0.001])
async def test_parametrized_async(delay: float) -> None:
    await asyncio.sleep(delay)


class TestAsyncMethods:
    async def test_in_class(self) -> None:
        await asyncio.sleep(0)


def test_sync_neighbour() -> None:
    assert True
