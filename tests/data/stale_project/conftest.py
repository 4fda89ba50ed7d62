"""Root conftest: a fixture the scenarios change."""

import pytest


@pytest.fixture
def base():
    return 10
