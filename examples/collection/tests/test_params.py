from __future__ import annotations

import pytest

from helpers import add


@pytest.mark.parametrize(("a", "b", "total"), [(1, 2, 3), (0, 0, 0), (-1, 1, 0)])
def test_add(a: int, b: int, total: int) -> None:
    assert add(a, b) == total


@pytest.mark.parametrize("currency", ["EUR", "USD", "JPY"], ids=["euro", "dollar", "yen"])
def test_currency_ids(currency: str) -> None:
    assert len(currency) == 3


@pytest.mark.parametrize("word", ["a", "bb", "ccc"], ids=lambda w: f"len{len(w)}")
def test_callable_ids(word: str) -> None:
    assert word == word[0] * len(word)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1, id="one"),
        pytest.param(2, id="two", marks=pytest.mark.slow),
        pytest.param(3, marks=pytest.mark.skip(reason="collected, then skipped")),
    ],
)
def test_param_objects(value: int) -> None:
    assert value in (1, 2)


@pytest.mark.parametrize("x", [1, 2])
@pytest.mark.parametrize("y", ["a", "b"])
@pytest.mark.parametrize("z", [True])
def test_stacked(x: int, y: str, z: bool) -> None:
    assert z


@pytest.mark.parametrize("label", ["two words", "a/b", "café", "x::y", "[brackets]"])
def test_ids_needing_escapes(label: str) -> None:
    assert label


@pytest.mark.parametrize("nothing", [])
def test_empty_parameter_set(nothing: object) -> None:
    raise AssertionError("never runs: an empty parameter set is skipped")


@pytest.fixture(params=["sqlite", "postgres"], ids=str.upper)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_fixture_params(backend: str) -> None:
    assert backend in ("sqlite", "postgres")


@pytest.fixture
def doubled(request: pytest.FixtureRequest) -> int:
    return int(request.param) * 2


@pytest.mark.parametrize("doubled", [1, 5], indirect=True)
@pytest.mark.parametrize("n", [11])
def test_indirect(doubled: int, n: int) -> None:
    assert doubled < n


@pytest.mark.parametrize("n", [1, 2])
class TestParametrizedClass:
    def test_positive(self, n: int) -> None:
        assert n > 0

    @pytest.mark.parametrize("m", [3])
    def test_product(self, n: int, m: int) -> None:
        assert n * m >= 3
