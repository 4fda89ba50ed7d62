"""Named registries that modules fill at import time with a decorator.

ESTIMATORS lives here, apart from the functions that register into it
(labstats.estimators), as plugin registries usually do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

T = TypeVar("T")

Values = npt.NDArray[np.float64]


class Registry(Generic[T]):
    """Name -> entry; a second registration under one name is a mistake."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names())
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Estimator:
    """A location estimator: one number that stands for a sample."""

    name: str
    func: Callable[[Values], float]
    robust: bool
    summary: str

    def __call__(self, values: npt.ArrayLike) -> float:
        data = np.asarray(values, dtype=np.float64)
        if data.size == 0:
            raise ValueError(f"{self.name}: no values")
        if not np.all(np.isfinite(data)):
            raise ValueError(f"{self.name}: values must be finite")
        return float(self.func(data))


ESTIMATORS: Registry[Estimator] = Registry("estimator")


def estimator(
    name: str, *, robust: bool = False
) -> Callable[[Callable[[Values], float]], Callable[[Values], float]]:
    """Register the decorated function in ESTIMATORS under ``name``."""

    def register(func: Callable[[Values], float]) -> Callable[[Values], float]:
        summary = (func.__doc__ or name).strip().splitlines()[0]
        ESTIMATORS.add(name, Estimator(name, func, robust, summary))
        return func

    return register
