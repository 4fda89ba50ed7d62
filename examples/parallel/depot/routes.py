"""Routes through the network and what they cost."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from depot.network import NETWORK, Network

FUEL_PER_KM = 0.31
STOP_FEE = 4.5


@dataclass(frozen=True)
class Route:
    stops: tuple[str, ...]  # where the van must stop, in order
    hops: tuple[str, ...]  # every depot it passes
    km: float

    @property
    def cost(self) -> float:
        return round(self.km * FUEL_PER_KM + STOP_FEE * max(len(self.stops) - 2, 0), 2)


def plan_route(stops: list[str], network: Network = NETWORK) -> Route:
    """Visit ``stops`` in order along shortest paths."""
    hops: list[str] = [stops[0]]
    km = 0.0
    for a, b in pairwise(stops):
        km += network.shortest(a, b)
        hops.extend(network.path(a, b)[1:])
    return Route(stops=tuple(stops), hops=tuple(hops), km=round(km, 1))
