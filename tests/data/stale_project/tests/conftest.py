"""Package conftest: a fixture the scenarios change."""

import pytest


@pytest.fixture
def offset():
    return 1
