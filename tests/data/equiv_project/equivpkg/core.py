"""A small module under test; its globals let tests check that state does not leak."""

COUNTER = 0
REGISTRY: list[str] = []


def add(a, b):
    return a + b


def bump():
    global COUNTER
    COUNTER += 1
    return COUNTER


def register(name):
    REGISTRY.append(name)
    return len(REGISTRY)
