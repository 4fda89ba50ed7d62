"""Fixture project for the warm-run equivalence tests (tests/test_equivalence.py)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--equiv-flavour", default="plain", help="an option that only this conftest adds")


@pytest.fixture
def flavour(request):
    return request.config.getoption("--equiv-flavour")


@pytest.fixture
def broken_fixture():
    raise RuntimeError("fixture setup exploded")


@pytest.fixture
def broken_teardown():
    yield 1
    raise RuntimeError("fixture teardown exploded")
