from __future__ import annotations

import pytest

pytestmark = [pytest.mark.db]


def test_plain_db() -> None:
    assert True


@pytest.mark.slow
def test_slow_db() -> None:
    assert True


@pytest.mark.network
@pytest.mark.smoke
def test_network_smoke() -> None:
    assert True


@pytest.mark.device(kind="gpu")
def test_on_gpu() -> None:
    assert True


@pytest.mark.device(kind="cpu")
def test_on_cpu() -> None:
    assert True


@pytest.mark.slow
class TestSlowQueries:
    def test_scan(self) -> None:
        assert True

    @pytest.mark.network
    def test_remote_scan(self) -> None:
        assert True


@pytest.mark.parametrize(
    "table",
    [
        "users",
        pytest.param("orders", marks=pytest.mark.slow),
        pytest.param("logs", marks=pytest.mark.network),
    ],
)
def test_tables(table: str) -> None:
    assert table
