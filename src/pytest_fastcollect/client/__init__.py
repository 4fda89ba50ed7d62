"""Runs in the user's pytest process (or the thin client): light imports only.

PYTEST_DONT_REWRITE. Never imports the supervisor or the warm process; the
hand-off path never imports watchdog or psutil.
"""
