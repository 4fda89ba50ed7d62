"""A module in a namespace package (app/ns has no __init__.py yet)."""

VALUE = 7
