"""The code under test in the never-stale example project."""
