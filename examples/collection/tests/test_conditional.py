from __future__ import annotations

import sys

import pytest

# Which of the two exists depends on the interpreter: collection must see
# exactly the one this interpreter defines.
if sys.version_info >= (3, 12):

    def test_python_312_or_newer() -> None:
        assert sys.version_info >= (3, 12)

else:

    def test_python_older_than_312() -> None:
        assert sys.version_info < (3, 12)


if sys.platform == "win32":

    def test_windows_only() -> None:
        assert sys.platform == "win32"

else:

    def test_not_windows() -> None:
        assert sys.platform != "win32"

    class TestPosixOnly:
        def test_sep(self) -> None:
            assert sys.platform != "win32"


if False:  # a test that is never defined must not be collected

    def test_dead_code() -> None:
        raise AssertionError("never defined")


def _make(n: int):  # type: ignore[no-untyped-def]
    def test() -> None:
        assert n >= 0

    return test


for _n in range(3):
    globals()[f"test_generated_{_n}"] = _make(_n)


@pytest.mark.skipif(
    sys.version_info < (3, 10), reason="collected everywhere, skipped on old Pythons"
)
def test_skipif_is_still_collected() -> None:
    assert True
