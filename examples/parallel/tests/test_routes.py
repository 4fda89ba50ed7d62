from __future__ import annotations

import time

import pytest
from depot import Network, plan_route

PAIRS = [("D000", f"D{i:03d}") for i in range(5, 125, 10)]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_route_is_no_longer_than_the_ring(
    network: Network, body_seconds: float, a: str, b: str
) -> None:
    time.sleep(body_seconds)
    i, j = network.index(a), network.index(b)
    ring = 10.0 * min(abs(i - j), len(network.names) - abs(i - j))
    assert network.shortest(a, b) <= ring


@pytest.mark.parametrize(("a", "b"), PAIRS[:6])
def test_path_ends_where_asked(network: Network, body_seconds: float, a: str, b: str) -> None:
    time.sleep(body_seconds)
    path = network.path(a, b)
    assert path[0] == a and path[-1] == b


def test_round_trip_costs_twice(network: Network, body_seconds: float) -> None:
    time.sleep(body_seconds)
    there = plan_route(["D000", "D060"], network)
    back = plan_route(["D060", "D000"], network)
    assert there.km == back.km
