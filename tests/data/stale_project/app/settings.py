"""Reads an environment variable at import time."""

import os

MODE = os.environ.get("STALE_MODE", "default")
