from __future__ import annotations

import time

import pytest
from depot import Network, plan_route
from depot.routes import FUEL_PER_KM, STOP_FEE


class TestCosts:
    @pytest.mark.parametrize("hops", [2, 3, 4, 5, 6, 7])
    def test_stop_fees(self, network: Network, body_seconds: float, hops: int) -> None:
        time.sleep(body_seconds)
        stops = [f"D{i * 11:03d}" for i in range(hops)]
        route = plan_route(stops, network)
        assert route.cost >= STOP_FEE * (hops - 2)

    @pytest.mark.parametrize("end", ["D010", "D020", "D030", "D040", "D050", "D070"])
    def test_fuel(self, network: Network, body_seconds: float, end: str) -> None:
        time.sleep(body_seconds)
        route = plan_route(["D000", end], network)
        assert route.cost == round(route.km * FUEL_PER_KM, 2)


class TestBudget:
    @pytest.mark.parametrize("budget", [50, 100, 200, 400])
    def test_reachable_within_budget(
        self, network: Network, body_seconds: float, budget: int
    ) -> None:
        time.sleep(body_seconds)
        reachable = [n for n in network.names if plan_route(["D000", n], network).cost <= budget]
        assert "D000" in reachable
