from __future__ import annotations

import os

import depot
import pytest

# Each test body waits about this long (sleeping or computing), so the whole
# suite takes 2-3 s of bodies: enough for two workers to matter.
BODY_SECONDS = float(os.environ.get("PARALLEL_BODY_SECONDS", "0.05"))


@pytest.fixture(scope="session")
def network(worker_id: str) -> depot.Network:
    """The network, set up once per session: once per xdist worker.

    With PARALLEL_SETUP_LOG set, each set-up appends "<worker_id> <pid>" to
    that file, so a run can show how many sessions there were and where.
    """
    log = os.environ.get("PARALLEL_SETUP_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{worker_id} {os.getpid()}\n")
    return depot.NETWORK


@pytest.fixture
def body_seconds() -> float:
    return BODY_SECONDS
