from equivpkg.checks import checked_positive, digits


def test_helper_assert_is_active():
    checked_positive(-1)


def test_huge_int_to_str():
    assert digits(10**5000) == 5001


def test_plain():
    assert checked_positive(1) == 1
