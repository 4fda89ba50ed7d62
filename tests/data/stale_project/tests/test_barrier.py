"""Blocks on a file barrier when STALE_BARRIER names a directory (the harness
uses it to save an edit while a run is in progress); otherwise passes at once."""

import os
import time


def test_barrier():
    where = os.environ.get("STALE_BARRIER")
    if not where:
        return
    open(os.path.join(where, "entered"), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(where, "go")):
        assert time.monotonic() < deadline, "the harness never opened the barrier"
        time.sleep(0.01)
