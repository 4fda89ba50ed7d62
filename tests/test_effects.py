"""supervisor/effects.py: which conftest versions can be purged and imported again."""

from __future__ import annotations

import textwrap

import pytest

from pytest_fastcollect.supervisor import effects


def prof(source: str) -> effects.Profile:
    return effects.profile(textwrap.dedent(source).encode())


PLAIN = [
    "",
    '"""Fixtures."""\nimport pytest\nfrom app import core\n',
    "import pytest\n\n@pytest.fixture\ndef x():\n    return 1\n",
    "from pytest import fixture\n\n@fixture(scope='session')\ndef x():\n    return 1\n",
    "import pytest_asyncio\n\n@pytest_asyncio.fixture\nasync def x():\n    return 1\n",
    "collect_ignore = ['setup.py']\nLIMIT: int = 3\nA, B = 1, 2\n",
    "from pathlib import Path\nDATA = Path(__file__).parent / 'data'\n",
    "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import os\n",
    "class Helper:\n    value = 1\n\n    def get(self):\n        return self.value\n",
    "def pytest_runtest_setup(item):\n    pass\n",
]

EFFECTS = [
    ("import os\nos.environ['MODE'] = 'x'\n", "line 2: an assignment to os.environ['MODE']"),
    ("import sys\nsys.path.insert(0, '.')\n", "line 2: the expression sys.path.insert(0, '.')"),
    ("import matplotlib\nmatplotlib.use('Agg')\n", "line 2: the expression matplotlib.use('Agg')"),
    ("import app\napp.DEBUG = True\n", "line 2: an assignment to app.DEBUG"),
    (
        "from app import register\n\n@register\ndef x():\n    pass\n",
        "line 3: the decorator @register",
    ),
    ("for i in range(3):\n    pass\n", "line 1: a for statement"),
    ("with open('x') as f:\n    pass\n", "line 1: a with statement"),
    ("if True:\n    import os\n    os.chdir('/')\n", "line 3: the expression os.chdir('/')"),
    ("class A:\n    print('hi')\n", "line 2: the expression print('hi')"),
    ("import app\napp.counter += 1\n", "line 2: an assignment to app.counter"),
]


@pytest.mark.parametrize("source", PLAIN)
def test_plain_conftests_have_no_import_effect(source: str) -> None:
    assert prof(source).effect is None


@pytest.mark.parametrize("source,effect", EFFECTS)
def test_import_effects_are_found_with_their_line(source: str, effect: str) -> None:
    assert prof(source).effect == effect


def test_early_hooks_and_pytest_plugins_are_fingerprinted() -> None:
    base = prof("import pytest\n")
    assert not base.has_early_hooks
    configure = prof("def pytest_configure(config):\n    config.x = 1\n")
    assert configure.has_early_hooks
    assert prof("pytest_plugins = ['a']\n").has_early_hooks
    # A fixture or a later hook changing is not an early change.
    late = prof("import pytest\n\ndef pytest_runtest_setup(item):\n    pass\n")
    assert late.early == base.early


def test_reloadable_decides_by_old_and_new_versions() -> None:
    plain = prof("import pytest\n")
    other_plain = prof("import pytest\nX = 2\n")
    effect = prof("import os\nos.environ['A'] = '1'\n")
    configure = prof("def pytest_configure(config):\n    pass\n")
    configure_changed = prof("def pytest_configure(config):\n    config.x = 1\n")
    assert effects.reloadable(plain, other_plain) is None
    assert effects.reloadable(effects.EMPTY, plain) is None  # a new plain conftest
    assert effects.reloadable(plain, effects.EMPTY) is None  # a plain one deleted
    assert "imported version runs code" in (effects.reloadable(effect, plain) or "")
    assert "now runs code" in (effects.reloadable(plain, effect) or "")
    assert "before test modules" in (effects.reloadable(plain, configure) or "")
    assert "before test modules" in (effects.reloadable(configure, configure_changed) or "")
    assert effects.reloadable(configure, configure) is None
    assert "unknown" in (effects.reloadable(None, plain) or "")


def test_a_broken_conftest_is_not_called_plain() -> None:
    broken = prof("def (:\n")
    assert effects.reloadable(prof("import pytest\n"), broken) is not None
