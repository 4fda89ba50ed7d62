"""The daemon's ``collect`` returns exactly what a cold ``pytest --collect-only -q`` prints.

Every case runs the cold collection in a subprocess of its own and asks the
daemon for the same root, filters and paths through ``DaemonClient.collect``;
node ids (in order), exit code and the modules reported as errors must all
agree. The project is a copy of examples/collection (parametrization, classes,
``unittest.TestCase``, async tests, ``pytestmark``, tests under an ``if``,
markers, a package with ``__init__.py`` and a file with a syntax error).

One daemon serves the whole module: every collect is a fresh fork, so a
``-k`` or ``-m`` in one case must not leak into the next.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_fastcollect.daemon_client import DaemonClient, DaemonError

from helpers import EXAMPLES, Project, Result, make_project

BROKEN = "broken/test_syntax_error.py"
ERROR_LINE = re.compile(r"^ERROR (\S+)")


def copy_collection_example(dest: Path) -> Project:
    shutil.copytree(
        EXAMPLES / "collection", dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
    )
    return make_project(dest)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """examples/collection copied to tmp, with a daemon warmed over the whole project."""
    proj = copy_collection_example(tmp_path_factory.mktemp("collect-eq") / "collection")
    try:
        started = proj.start()
        assert started.returncode == 0, str(started)
        yield proj
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


def client_for(proj: Project) -> DaemonClient:
    record = proj.record()
    assert record is not None, "the daemon wrote no record"
    return DaemonClient(str(record["socket_path"]))


def cold_node_ids(result: Result) -> list[str]:
    """The node ids ``pytest --collect-only -q`` printed, in order."""
    ids = []
    for line in result.stdout.splitlines():
        if "::" not in line or line != line.lstrip() or line.startswith(("ERROR ", "FAILED ")):
            continue
        if line.split("::", 1)[0].endswith(".py"):
            ids.append(line)
    return ids


def cold_error_ids(result: Result) -> list[str]:
    """The collectors the short test summary lists as ERROR."""
    return [m.group(1) for line in result.stdout.splitlines() if (m := ERROR_LINE.match(line))]


def assert_same_as_cold(warm: dict[str, Any], cold: Result) -> None:
    assert warm["node_ids"] == cold_node_ids(cold), f"daemon and cold collection differ\n{cold}"
    assert warm["count"] == len(warm["node_ids"])
    assert warm["exit_code"] == cold.returncode, str(cold)
    assert sorted(e["nodeid"] for e in warm["errors"]) == sorted(cold_error_ids(cold)), str(cold)
    assert warm["collection_time"] >= 0


def cold_args(filters: dict[str, Any]) -> list[str]:
    args = []
    for flag in ("-k", "-m"):
        if flag in filters:
            args += [flag, filters[flag]]
    return [*args, *filters.get("paths", [])]


CASES = [
    pytest.param({}, id="everything"),
    pytest.param({"paths": ["tests"]}, id="tests-dir"),
    # -k: names, class names, parametrize ids, markers (keywords include them), no match.
    pytest.param({"-k": "Cart"}, id="k-class"),
    pytest.param({"-k": "not async and not unittest"}, id="k-not"),
    pytest.param({"-k": "currency and (euro or yen)"}, id="k-param-ids"),
    pytest.param({"-k": "TestOuter and not deep"}, id="k-nested-class"),
    pytest.param({"-k": "generated_1 or modern or not_windows"}, id="k-conditional"),
    pytest.param({"-k": "slow", "paths": ["tests"]}, id="k-marker-name"),
    pytest.param({"-k": "names"}, id="k-same-basename"),
    pytest.param({"-k": "no_test_is_called_this"}, id="k-no-match"),
    # -m: module pytestmark, class marks, parameter marks, marker arguments.
    pytest.param({"-m": "db"}, id="m-module-pytestmark"),
    pytest.param({"-m": "slow and not db"}, id="m-and-not"),
    pytest.param({"-m": "network or smoke"}, id="m-or"),
    pytest.param({"-m": "(db or slow) and not network"}, id="m-parens"),
    pytest.param({"-m": "device(kind='gpu')"}, id="m-marker-kwargs"),
    pytest.param({"-m": "not slow", "-k": "params or marks"}, id="m-and-k"),
    # Explicit paths: files, directories, a package, node ids, several at once.
    pytest.param({"paths": ["tests/test_params.py"]}, id="path-file"),
    pytest.param({"paths": ["tests/pkg"]}, id="path-package"),
    pytest.param({"paths": ["tests/test_classes.py::TestOuter"]}, id="path-class"),
    pytest.param({"paths": ["tests/test_params.py::test_add"]}, id="path-function"),
    pytest.param({"paths": ["tests/test_async.py", "tests/test_unittest.py"]}, id="path-two-files"),
    pytest.param({"paths": ["tests/test_marks.py"], "-m": "db and not slow"}, id="path-and-m"),
    pytest.param({"paths": ["broken"]}, id="path-syntax-error"),
]


@pytest.mark.parametrize("filters", CASES)
def test_collect_matches_cold(collection: Project, filters: dict[str, Any]) -> None:
    warm = client_for(collection).collect(collection.root, filters=filters)
    cold = collection.cold("--collect-only", "-q", *cold_args(filters))
    assert_same_as_cold(warm, cold)


def test_everything_has_every_kind_of_test(collection: Project) -> None:
    """Guards the example itself: the comparisons above must cover these shapes."""
    ids = client_for(collection).collect(collection.root)["node_ids"]
    expected = [
        "tests/test_params.py::test_stacked[True-a-1]",
        "tests/test_params.py::test_ids_needing_escapes[caf\\xe9]",
        "tests/test_params.py::TestParametrizedClass::test_product[3-2]",
        "tests/test_classes.py::TestOuter::TestInner::TestInnermost::test_deep",
        "tests/test_unittest.py::StrComparisonTests::test_mixin_method",
        "tests/test_async.py::TestAsyncMethods::test_in_class",
        "tests/test_marks.py::test_tables[logs]",
        "tests/test_conditional.py::test_not_windows",
        "tests/test_conditional.py::test_generated_2",
        "tests/pkg/test_names.py::test_levels[3]",
        "tests/test_names.py::test_top_level_names",
    ]
    assert [x for x in expected if x not in ids] == []
    assert not [x for x in ids if "TestNotCollected" in x or "dead_code" in x or "helpers" in x]


def test_syntax_error_is_reported_like_cold(collection: Project) -> None:
    warm = client_for(collection).collect(collection.root)
    cold = collection.cold("--collect-only", "-q")
    assert cold.returncode == 2, str(cold)
    assert cold_error_ids(cold) == [BROKEN]
    assert [e["nodeid"] for e in warm["errors"]] == [BROKEN]
    assert "SyntaxError" in warm["errors"][0]["message"]
    assert warm["exit_code"] == 2
    assert warm["node_ids"] == cold_node_ids(cold)
    assert len(warm["node_ids"]) > 50


def test_collect_from_a_subdirectory_root(collection: Project) -> None:
    warm = client_for(collection).collect(collection.root / "tests" / "pkg")
    cold = collection.cold("--collect-only", "-q", "tests/pkg")
    assert_same_as_cold(warm, cold)
    assert warm["node_ids"] and all(x.startswith("tests/pkg/") for x in warm["node_ids"])


def test_repeated_collects_do_not_leak_filters(collection: Project) -> None:
    client = client_for(collection)
    full = client.collect(collection.root, filters={"paths": ["tests"]})
    narrowed = client.collect(collection.root, filters={"paths": ["tests"], "-k": "Cart"})
    again = client.collect(collection.root, filters={"paths": ["tests"]})
    assert 0 < narrowed["count"] < full["count"]
    assert again["node_ids"] == full["node_ids"]


@pytest.mark.parametrize(
    "outside",
    [
        pytest.param(lambda proj, elsewhere: {"root": elsewhere}, id="root"),
        pytest.param(lambda proj, elsewhere: {"root": proj.root / ".."}, id="root-parent"),
        pytest.param(
            lambda proj, elsewhere: {"root": proj.root, "paths": [str(elsewhere)]},
            id="path-absolute",
        ),
        pytest.param(
            lambda proj, elsewhere: {"root": proj.root, "paths": ["tests/../../elsewhere"]},
            id="path-dotdot",
        ),
    ],
)
def test_collect_outside_the_project_is_refused(
    collection: Project,
    outside: Callable[[Project, Path], dict[str, Any]],
) -> None:
    elsewhere = collection.root.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "test_stranger.py").write_text("def test_stranger():\n    pass\n")
    spec = outside(collection, elsewhere)
    filters = {"paths": spec["paths"]} if "paths" in spec else None
    with pytest.raises(DaemonError, match="outside"):
        client_for(collection).collect(spec["root"], filters=filters)


def test_warmed_on_tests_only_still_matches_cold(example: Callable[[str], Project]) -> None:
    """Collecting paths the warm-up never imported (broken/) still gives cold's answer."""
    proj = example("collection")
    started = proj.start("tests")
    assert started.returncode == 0, str(started)
    client = client_for(proj)
    for filters in ({}, {"paths": ["broken"]}, {"-k": "Cart or syntax"}):
        warm = client.collect(proj.root, filters=filters)
        cold = proj.cold("--collect-only", "-q", *cold_args(filters))
        assert_same_as_cold(warm, cold)
    assert [e["nodeid"] for e in client.collect(proj.root)["errors"]] == [BROKEN]


def test_symlink_out_of_the_project_is_refused(
    example: Callable[[str], Project], tmp_path: Path
) -> None:
    proj = example("collection")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "test_outside.py").write_text("def test_outside():\n    pass\n")
    (proj.root / "escape").symlink_to(outside, target_is_directory=True)
    started = proj.start("tests")
    assert started.returncode == 0, str(started)
    with pytest.raises(DaemonError, match="outside"):
        client_for(proj).collect(proj.root / "escape")
    with pytest.raises(DaemonError, match="outside"):
        client_for(proj).collect(proj.root, filters={"paths": ["escape/test_outside.py"]})


def test_collect_after_edits_matches_cold(example: Callable[[str], Project]) -> None:
    """Saved edits (a test added, a case removed, a new file, a new marker) show at once."""
    proj = example("collection")
    started = proj.start()
    assert started.returncode == 0, str(started)
    client = client_for(proj)
    before = client.collect(proj.root, filters={"paths": ["tests"]})

    params = proj.root / "tests" / "test_params.py"
    old_cases = '["EUR", "USD", "JPY"], ids=["euro", "dollar", "yen"]'
    text = params.read_text()
    assert old_cases in text
    text = text.replace(old_cases, '["EUR"], ids=["euro"]')
    params.write_text(text + "\n\n@pytest.mark.slow\ndef test_added_later() -> None:\n    pass\n")
    proj.write({"tests/test_brand_new.py": "def test_new_file():\n    pass\n"})

    for filters in ({"paths": ["tests"]}, {"-m": "slow"}, {"-k": "currency or added or new_file"}):
        warm = client.collect(proj.root, filters=filters)
        cold = proj.cold("--collect-only", "-q", *cold_args(filters))
        assert_same_as_cold(warm, cold)
    after = client.collect(proj.root, filters={"paths": ["tests"]})["node_ids"]
    assert "tests/test_params.py::test_added_later" in after
    assert "tests/test_brand_new.py::test_new_file" in after
    assert "tests/test_params.py::test_currency_ids[yen]" in before["node_ids"]
    assert "tests/test_params.py::test_currency_ids[yen]" not in after
