import app.ns
from app.ns.mod import VALUE


def test_value():
    assert VALUE == 7


def test_namespace_package():
    assert getattr(app.ns, "FLAG", None) is None
