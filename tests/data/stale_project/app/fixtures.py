"""A fixture defined in a project module and imported by the root conftest."""

import numpy  # noqa: F401  (numpy loaded by every session, through the conftest)
import pytest


@pytest.fixture
def factor():
    return 3
