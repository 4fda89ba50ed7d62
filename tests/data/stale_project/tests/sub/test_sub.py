def test_offset_in_sub(offset):
    assert offset == 1
