"""The warm process (zygote) and its forked run workers.

PYTEST_DONT_REWRITE. Runs single-threaded; imports pytest and the project, never
pydantic, psutil or watchdog (the project might import its own versions).
"""
