def test_base(base):
    assert base == 10


def test_offset(offset):
    assert offset == 1


def test_factor(factor):
    assert factor == 3


def test_plugin_value(plugin_value):
    assert plugin_value == "plugin"
