"""Arithmetic with a module constant other modules bind by name."""

SCALE = 2


def compute(x):
    return x * SCALE


def greet(name):
    return "hello " + name
