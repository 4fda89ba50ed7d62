"""An enum, a dataclass and a pydantic model: identity-sensitive definitions."""

import dataclasses
import enum

from pydantic import BaseModel


class Color(enum.Enum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int


class User(BaseModel):
    name: str
    age: int
