"""Bodies that compute instead of sleeping: CPU-bound work is what parallel runs share out."""

from __future__ import annotations

import time

import pytest
from depot import Network


def busy(seconds: float) -> int:
    """Spin for about ``seconds`` of CPU time; returns how many rounds it did."""
    rounds = 0
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(i * i for i in range(500))
        rounds += 1
    return rounds


@pytest.mark.parametrize("seed", range(10))
def test_busy_depot_pairs(network: Network, body_seconds: float, seed: int) -> None:
    assert busy(body_seconds) > 0
    a, b = network.names[seed], network.names[-seed - 1]
    assert network.shortest(a, b) == network.shortest(b, a)


@pytest.mark.slow
@pytest.mark.xdist_group("audit")
@pytest.mark.parametrize("part", range(4))
def test_audit(network: Network, body_seconds: float, part: int) -> None:
    """A group of tests --dist loadgroup keeps on one worker."""
    assert busy(body_seconds) > 0
    chunk = network.names[part * 30 : part * 30 + 30]
    assert all(network.shortest(n, n) == 0.0 for n in chunk)
