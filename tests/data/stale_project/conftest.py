"""Root conftest: fixtures the scenarios change, one imported, one from a plugin module."""

import pytest

from app.fixtures import factor  # noqa: F401  (a fixture, re-exported)

pytest_plugins = ["app.plugin_fixtures"]


@pytest.fixture
def base():
    return 10
