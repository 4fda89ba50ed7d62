"""The daemon's supervisor: socket, watcher, reload decisions, stats.

Threads are allowed here; user code is never imported here.
"""
