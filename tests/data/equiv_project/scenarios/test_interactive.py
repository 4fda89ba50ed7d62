def test_ok():
    assert True


def test_fails_for_pdb():
    value = 41
    assert value == 42


def test_breakpoint():
    answer = 6 * 7
    breakpoint()
    assert answer == 42
