"""A plugin module the root conftest names in pytest_plugins (a string, not an import)."""

import pytest


@pytest.fixture
def plugin_value():
    return "plugin"
