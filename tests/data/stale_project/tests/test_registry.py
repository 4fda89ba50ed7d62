import app.plugins
from app.registry import REGISTRY


def test_registered_names():
    assert sorted(REGISTRY) == ["Alpha", "Beta"]


def test_registered_identity():
    assert REGISTRY["Alpha"] is app.plugins.Alpha
    assert REGISTRY["Alpha"].value == 1
