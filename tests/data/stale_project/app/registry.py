"""A registry that outlives the modules registering into it."""

REGISTRY = {}


def register(cls):
    REGISTRY[cls.__name__] = cls
    return cls
