"""pytest-fastcollect: a resident, never-stale pytest daemon per project.

PYTEST_DONT_REWRITE: the warm process imports this package before pytest's
assertion-rewrite hook exists; the marker stops pytest from warning that it
"cannot be rewritten" (which projects with ``filterwarnings = error`` turn
into a crash).
"""

from __future__ import annotations

__version__ = "0.1.0"
