import dataclasses

from app import models
from app.models import Color, Point, User


def test_colors():
    assert [c.name for c in Color] == ["RED", "GREEN"]


def test_enum_identity():
    assert isinstance(models.Color.RED, Color)
    assert Color(1) is models.Color.RED


def test_point_fields():
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y"]


def test_point_equality():
    assert Point(1, 2) == models.Point(1, 2)


def test_user_age_is_int():
    assert User(name="a", age="3").age == 3
