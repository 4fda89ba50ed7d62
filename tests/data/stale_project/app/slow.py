"""Slow to import while slow.flag exists next to it: the harness saves a new
version of this file while the daemon is importing it (slow.importing says when)."""

import os
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(_HERE, "slow.flag")):
    open(os.path.join(_HERE, "slow.importing"), "w").close()
    time.sleep(1.0)

VALUE = 1
