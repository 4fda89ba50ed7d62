from app.alpha import NAME


def test_name():
    assert NAME == "alpha"
