"""The road network and its all-pairs shortest distances, computed at import.

Real projects pay at import time too (loading data files, building
registries, compiling schemas); here it is a Floyd-Warshall over a few
dozen depots, a few hundred milliseconds in pure Python. Every process
that imports the package (a cold run's controller and each of its xdist
workers) pays it again; a warm daemon pays it once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

DEPOTS = 200
ROADS_PER_DEPOT = 4
SEED = 20240611
INF = float("inf")


@dataclass
class Network:
    names: list[str]
    roads: dict[tuple[int, int], float]
    distance: list[list[float]] = field(default_factory=list)
    via: list[list[int]] = field(default_factory=list)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def shortest(self, a: str, b: str) -> float:
        return self.distance[self.index(a)][self.index(b)]

    def path(self, a: str, b: str) -> list[str]:
        i, j = self.index(a), self.index(b)
        if self.distance[i][j] == INF:
            return []
        hops = [i]
        while i != j:
            i = self.via[i][j]
            hops.append(i)
        return [self.names[k] for k in hops]


def _build() -> Network:
    rng = random.Random(SEED)
    names = [f"D{i:03d}" for i in range(DEPOTS)]
    roads: dict[tuple[int, int], float] = {}
    for i in range(DEPOTS):
        # A ring keeps the network connected; a few random roads make it interesting.
        roads[(i, (i + 1) % DEPOTS)] = roads[((i + 1) % DEPOTS, i)] = 10.0
        for _ in range(ROADS_PER_DEPOT - 1):
            j = rng.randrange(DEPOTS)
            if j != i:
                km = round(rng.uniform(5, 80), 1)
                roads[(i, j)] = roads[(j, i)] = km
    dist = [
        [0.0 if i == j else roads.get((i, j), INF) for j in range(DEPOTS)] for i in range(DEPOTS)
    ]
    via = [[j for j in range(DEPOTS)] for _ in range(DEPOTS)]
    for k in range(DEPOTS):
        dk = dist[k]
        for i in range(DEPOTS):
            di = dist[i]
            dik = di[k]
            if dik == INF:
                continue
            vi = via[i]
            vik = vi[k]
            for j in range(DEPOTS):
                alt = dik + dk[j]
                if alt < di[j]:
                    di[j] = alt
                    vi[j] = vik
    return Network(names=names, roads=roads, distance=dist, via=via)


NETWORK = _build()
