def test_base(base):
    assert base == 10


def test_offset(offset):
    assert offset == 1
