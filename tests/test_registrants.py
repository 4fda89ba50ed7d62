"""warm/registrants.py: which modules leave something of theirs in other modules.

Each case writes a small package into tmp_path, imports it in a fresh
interpreter and asks ``registrants.find`` about every module of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_fastcollect.supervisor.isolation import selected_paths
from pytest_fastcollect.warm.registrants import MAX_INSTANCES

SCRIPT = """
import importlib, json, os, sys
sys.path.insert(0, {root!r})
from pytest_fastcollect.warm import registrants
names = {names!r}
for name in names:
    importlib.import_module(name)
modules = {{n: sys.modules[n].__file__ for n in names}}
print(json.dumps(registrants.find(modules, {sources!r})))
"""


def scan(tmp_path: Path, files: dict[str, str], sources: tuple[str, ...] = ()) -> dict[str, str]:
    """Import every ``.py`` of ``files`` but those in ``sources`` (files the layer does
    not hold, passed to ``find`` only as source to read); return what ``find`` says."""
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    names = sorted(
        rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for rel in files
        if rel not in sources
    )
    script = SCRIPT.format(
        root=str(tmp_path), names=names, sources=[str(tmp_path / rel) for rel in sources]
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    found: dict[str, str] = json.loads(proc.stdout.splitlines()[-1])
    return found


REGISTRY = """
REGISTRY = {}

def register(cls):
    REGISTRY[cls.__name__] = cls
    return cls
"""


def test_a_decorator_registry_is_found(tmp_path: Path) -> None:
    found = scan(
        tmp_path,
        {
            "reg.py": REGISTRY,
            "plugins.py": "from reg import register\n\n@register\nclass Alpha:\n    pass\n",
        },
    )
    assert list(found) == ["plugins"]
    assert "Alpha is held by a dict of module reg" in found["plugins"]


def test_an_init_subclass_registry_is_found(tmp_path: Path) -> None:
    found = scan(
        tmp_path,
        {
            "base.py": """
                class Plugin:
                    known = []

                    def __init_subclass__(cls, **kw):
                        super().__init_subclass__(**kw)
                        Plugin.known.append(cls)
            """,
            "impl.py": "from base import Plugin\n\nclass Impl(Plugin):\n    pass\n",
        },
    )
    assert list(found) == ["impl"]


def test_an_instance_registry_of_another_module_is_found(tmp_path: Path) -> None:
    found = scan(
        tmp_path,
        {
            "registry.py": """
                class Registry:
                    def __init__(self):
                        self._entries = {}

                    def add(self, name, entry):
                        self._entries[name] = entry

                ESTIMATORS = Registry()
            """,
            "estimators.py": """
                from registry import ESTIMATORS

                def mean(xs):
                    return sum(xs) / len(xs)

                ESTIMATORS.add("mean", mean)
            """,
        },
    )
    assert list(found) == ["estimators"]


@pytest.mark.parametrize(
    "files,expected",
    [
        # An instance of the module's own class, into another module's list.
        (
            {
                "handlers.py": "HANDLERS = []\n",
                "json_handler.py": "from handlers import HANDLERS\n\nclass Json:\n    pass\n\n"
                "HANDLERS.append(Json())\n",
            },
            {"json_handler": "a Json instance is held by a list of module handlers"},
        ),
        # Made by a third module: it and the class's module both count.
        (
            {
                "handlers.py": "HANDLERS = []\n",
                "kinds.py": "class Kind:\n    pass\n",
                "setup_kinds.py": "from handlers import HANDLERS\nfrom kinds import Kind\n\n"
                "HANDLERS.append(Kind())\n",
            },
            {
                "kinds": "a Kind instance is held by a list of module handlers",
                "setup_kinds": "it imports kinds; a Kind instance is held by a list of module handlers",
            },
        ),
    ],
)
def test_an_instance_registry_is_found(
    tmp_path: Path, files: dict[str, str], expected: dict[str, str]
) -> None:
    assert scan(tmp_path, files) == expected


def test_a_registry_in_the_package_of_its_plugins_is_found(tmp_path: Path) -> None:
    # Importing reg.plugin binds it as reg.plugin in the package's namespace:
    # that is the import system, not an import by reg.
    found = scan(
        tmp_path,
        {
            "reg/__init__.py": REGISTRY,
            "reg/plugin.py": "from reg import register\n\n@register\nclass Alpha:\n    pass\n",
        },
    )
    assert list(found) == ["reg.plugin"]


def test_instances_beyond_the_limit_are_not_followed(tmp_path: Path) -> None:
    # A cost bound, documented in docs/how-it-works.md: past MAX_INSTANCES
    # instances of project classes, where they are held is not looked at.
    files = {
        "handlers.py": "HANDLERS = []\n",
        "json_handler.py": "from handlers import HANDLERS\n\nclass Json:\n    pass\n\n"
        "HANDLERS.append(Json())\nMANY = [Json() for _ in range({n})]\n",
    }
    within = {k: v.format(n=10) for k, v in files.items()}
    assert list(scan(tmp_path / "within", within)) == ["json_handler"]
    beyond = {k: v.format(n=MAX_INSTANCES) for k, v in files.items()}
    assert scan(tmp_path / "beyond", beyond) == {}


SHAPE = """
class Shape:
    pass
"""
SQUARE = "from shapes import Shape\n\nclass Square(Shape):\n    pass\n"
KINDS = "def kinds(base):\n    return [k.__name__ for k in base.__subclasses__()]\n"


@pytest.mark.parametrize(
    "files,sources",
    [
        # The base's own module walks its subclasses.
        ({"shapes.py": SHAPE + "\n" + KINDS, "square.py": SQUARE}, ()),
        # A helper elsewhere in the project does.
        ({"shapes.py": SHAPE, "square.py": SQUARE, "util.py": KINDS}, ()),
        # A test file the layer does not hold (a reload purged it) does.
        ({"shapes.py": SHAPE, "square.py": SQUARE, "test_kinds.py": KINDS}, ("test_kinds.py",)),
    ],
)
def test_a_subclass_registers_where_the_project_walks_subclasses(
    tmp_path: Path, files: dict[str, str], sources: tuple[str, ...]
) -> None:
    found = scan(tmp_path, files, sources)
    assert list(found) == ["square"]
    assert found["square"] == "Square is listed in Shape.__subclasses__() of module shapes"


def test_a_subclass_of_an_importer_or_of_a_library_class_registers_nothing(
    tmp_path: Path,
) -> None:
    # shapes imports square: whoever imports shapes lists Square anyway.
    # ValueError.__subclasses__() is a library's list: not followed.
    files = {
        "shapes.py": SHAPE + "\n" + KINDS + "\nimport square\n",
        "square.py": SQUARE + "\nclass Error(ValueError):\n    pass\n",
    }
    assert scan(tmp_path, files) == {}


@pytest.mark.parametrize(
    "files",
    [
        # Subclasses, instances, enums, dataclasses, closures and a module's own tables.
        {
            "shapes.py": """
                import dataclasses, enum, functools

                class Shape:
                    pass

                class Color(enum.Enum):
                    RED = 1

                @dataclasses.dataclass
                class Point:
                    x: int

                def area(s):
                    return 0

                HANDLERS = {"area": area, "shape": Shape}
                DEFAULT = Point(1)

                @functools.lru_cache
                def cached(x):
                    return x
            """,
            "square.py": """
                from shapes import Color, Shape, area

                class Square(Shape):
                    pass

                INSTANCE = Square()
                TABLE = [area]
                SHAPES = [Square(), Shape(), Color.RED]
            """,
        },
    ],
)
def test_ordinary_modules_are_not_registrants(tmp_path: Path, files: dict[str, str]) -> None:
    # square.Square is in shapes.Shape.__subclasses__(), but nothing reads that list.
    assert scan(tmp_path, files) == {}


@pytest.mark.parametrize(
    "args,expected",
    [
        (["tests/test_a.py"], ["tests/test_a.py"]),
        (["tests/test_a.py::test_x", "-k", "x"], ["tests/test_a.py"]),
        (["-k", "tests", "tests/test_a.py"], ["tests/test_a.py"]),  # -k takes a value
        (["--junitxml", "tests/test_a.py", "tests"], ["tests"]),
        (["-v", "tests"], ["tests"]),
        (["--unknown-plugin-option", "tests/test_a.py", "tests"], ["tests"]),
        (["--unknown=1", "tests"], ["tests"]),
        (["-rA", "tests/test_a.py"], ["tests/test_a.py"]),
        (["-n", "2", "tests"], ["tests"]),
        (["missing.py"], []),
    ],
)
def test_selected_paths(tmp_path: Path, args: list[str], expected: list[str]) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    got = selected_paths(args, str(tmp_path))
    assert got == [str((tmp_path / e).resolve()) for e in expected]


@pytest.mark.parametrize(
    "args",
    [
        ["--pyargs", "pkg"],
        ["tests", "--ignore", "tests/x"],
        # Might be the option's value: then no path was given, which means all tests.
        ["--unknown-plugin-option", "tests/test_a.py"],
    ],
)
def test_arguments_that_change_what_is_collected_make_the_estimate_unknown(
    tmp_path: Path, args: list[str]
) -> None:
    assert selected_paths(args, str(tmp_path)) is None


class _Layer:
    """What ``Isolation`` reads of a project layer."""

    def __init__(self, root: Path, modules: dict[str, str], tests: set[str], conftests: set[str]):
        self.modules = {str(root / f): n for f, n in modules.items()}
        self.test_files = {str(root / f) for f in tests}
        self.conftests = {str(root / f) for f in conftests}


@pytest.fixture
def nested(tmp_path: Path) -> tuple[Path, _Layer]:
    """tests/conftest.py, tests/sub/conftest.py (a package: imports app.reg), and
    tests/sub/test_b.py; checks/test_c.py imports app.reg, a registrant."""
    files = {
        "app/__init__.py": "",
        "app/reg.py": "",
        "tests/conftest.py": "",
        "tests/sub/__init__.py": "",
        "tests/sub/conftest.py": "import app.reg\n",
        "tests/sub/test_b.py": "",
        "tests/test_a.py": "",
        "checks/test_c.py": "import app.reg\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules = {
        "app/__init__.py": "app",
        "app/reg.py": "app.reg",
        "tests/sub/__init__.py": "tests.sub",
        "tests/sub/conftest.py": "tests.sub.conftest",
        "tests/sub/test_b.py": "tests.sub.test_b",
        "tests/test_a.py": "test_a",
        "checks/test_c.py": "test_c",
    }
    tests = {"tests/sub/test_b.py", "tests/test_a.py", "checks/test_c.py"}
    conftests = {"tests/conftest.py", "tests/sub/conftest.py"}
    return tmp_path, _Layer(tmp_path, modules, tests, conftests)


@pytest.mark.parametrize(
    "args,imports_reg",
    [
        # Collecting tests/ imports the conftest of every directory it collects from.
        ([], True),
        (["tests"], True),
        (["tests/sub/test_b.py"], True),
        (["tests/test_a.py"], False),
        # --lf skips files without a last failure: none is imported for certain.
        (["checks/test_c.py"], True),
        (["--lf", "checks/test_c.py"], False),
        (["--lf", "tests/sub"], True),  # the conftest of a given directory is
    ],
)
def test_certain_imports_follow_the_conftests_of_collected_directories(
    nested: tuple[Path, _Layer], args: list[str], imports_reg: bool
) -> None:
    from pytest_fastcollect.supervisor.graph import ImportGraph
    from pytest_fastcollect.supervisor.isolation import Isolation

    root, layer = nested
    iso = Isolation(str(root), ImportGraph())
    certain = iso.certain_imports(layer, args, str(root))  # type: ignore[arg-type]
    assert (str(root / "app/reg.py") in certain) is imports_reg


def test_pytest_addopts_count_as_arguments(nested: tuple[Path, _Layer]) -> None:
    from pytest_fastcollect.supervisor.graph import ImportGraph
    from pytest_fastcollect.supervisor.isolation import Isolation

    root, layer = nested
    iso = Isolation(str(root), ImportGraph())
    iso.scanned({str(root / "app/reg.py"): "it registers"}, 0)
    assert iso.verdict(layer, ["checks/test_c.py"], str(root)) is None  # type: ignore[arg-type]
    apart = iso.verdict(layer, ["checks/test_c.py"], str(root), addopts="--lf")  # type: ignore[arg-type]
    assert apart is not None and "app/reg.py" in apart
