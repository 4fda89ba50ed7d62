import asyncio

import pytest


@pytest.mark.asyncio
async def test_async_ok():
    await asyncio.sleep(0)
    assert True


@pytest.mark.asyncio
async def test_async_fails():
    await asyncio.sleep(0)
    assert 1 == 2
