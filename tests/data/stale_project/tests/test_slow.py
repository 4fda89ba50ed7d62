from app.slow import VALUE


def test_slow_value():
    assert VALUE == 1
