"""labstats: unit-aware measurement tables, location estimators and fits.

Importing the package registers the built-in estimators (labstats.estimators)
in ESTIMATORS, the way plugin packages fill a registry on import.
"""

from __future__ import annotations

from labstats import estimators as estimators
from labstats.registry import ESTIMATORS as ESTIMATORS

__version__ = "0.3.0"
