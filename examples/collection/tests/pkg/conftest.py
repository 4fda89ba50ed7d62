from __future__ import annotations

import pytest


@pytest.fixture(params=[1, 2, 3])
def level(request: pytest.FixtureRequest) -> int:
    return int(request.param)
