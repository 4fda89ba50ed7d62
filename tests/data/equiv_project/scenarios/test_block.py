import os
import signal
import subprocess
import sys
import threading
import time


def wait_for_a_signal():
    # Short waits in a loop: a signal that lands after CPython's last check
    # between bytecodes, but before a long wait has started, would only be
    # acted on when that wait returns (a lost ^C in a tiny window).
    while True:
        time.sleep(0.05)


def test_before():
    assert True


def test_blocks():
    # Blocks until interrupted; prints (with -s) so a caller knows it started.
    print("BLOCKING-NOW", flush=True)
    wait_for_a_signal()


def test_blocks_ignoring_sigint():
    # Survives Ctrl-C (and says so), so only a harder stop ends it.
    signal.signal(signal.SIGINT, lambda *_: print("GOT-SIGINT", flush=True))
    print("IGNORING-SIGINT-NOW", flush=True)
    wait_for_a_signal()


def test_blocks_with_default_sigint():
    # Ctrl-C now kills the process outright (no KeyboardInterrupt, no report).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    print("DEFAULT-SIGINT-NOW", flush=True)
    threading.Event().wait()


def test_hangs_with_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    path = os.environ.get("EQUIV_CHILD_PID_FILE")
    if path:
        with open(path + ".tmp", "w") as fh:
            fh.write(str(child.pid))
        os.replace(path + ".tmp", path)
    print("HANGING-NOW", flush=True)
    time.sleep(600)


def test_sleeps_long():
    time.sleep(30)


def test_after():
    assert True
