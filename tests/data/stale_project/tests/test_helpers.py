from app.helpers import helper


def test_helper():
    assert helper() == 42
