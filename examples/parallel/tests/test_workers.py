from __future__ import annotations

import os
import time

from depot import Network


def test_worker_id_matches_environment(worker_id: str, body_seconds: float) -> None:
    time.sleep(body_seconds)
    # "master" when the run is not distributed.
    assert worker_id == os.environ.get("PYTEST_XDIST_WORKER", "master")


def test_worker_count_is_consistent(worker_id: str) -> None:
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if worker_id == "master":
        assert count is None
    else:
        assert count is not None and int(worker_id[2:]) < int(count) * 5


def test_network_is_shared_within_a_worker(network: Network, body_seconds: float) -> None:
    time.sleep(body_seconds)
    import depot

    assert network is depot.NETWORK
