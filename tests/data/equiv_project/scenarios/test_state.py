import os
import sys
import threading
import time

from equivpkg import core

_BASELINE_PATH = list(sys.path)


def test_state_is_pristine_then_dirty_it():
    # Each run must start from the same state as a cold run, whatever the last one did.
    assert "EQUIV_LEAK" not in os.environ
    assert "/equiv-leak" not in sys.path
    assert core.COUNTER == 0
    assert core.REGISTRY == []
    assert "equiv_leaked_module" not in sys.modules
    os.environ["EQUIV_LEAK"] = "1"
    sys.path.append("/equiv-leak")
    core.bump()
    core.register("leak")
    sys.modules["equiv_leaked_module"] = sys
    os.chdir("/")


def test_background_thread_finishes():
    # A non-daemon thread outlives the test; a cold interpreter waits for it at exit.
    path = os.environ["EQUIV_THREAD_FILE"]

    def later():
        time.sleep(0.5)
        with open(path, "w") as fh:
            fh.write("done")

    threading.Thread(target=later).start()


def test_daemon_thread_keeps_running():
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
    assert threading.active_count() >= 2
