"""A fixture defined in a project module and imported by the root conftest."""

import pytest


@pytest.fixture
def factor():
    return 3
