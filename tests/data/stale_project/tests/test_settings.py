from app.settings import MODE


def test_mode():
    assert MODE == "default"
