"""Collect answers kept per generation and filters: repeats come from the cache, changes never do.

Each test drives a real daemon through ``DaemonClient.collect``. A repeat
with nothing changed is answered from the cache (``cached`` in the answer,
``collect_cache_hits`` in status) with the same node ids; every kind of
change a cold ``pytest --collect-only`` would see shows in the next answer:
an edited test module, a new test file, a fixed broken one, a data file that
a conftest reads while collecting (which no watcher rule covers), a new
conftest, other filters.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_fastcollect.daemon_client import DaemonClient

from helpers import DEFAULT_INI, Project, daemon_metrics, make_project


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Project]:
    project = make_project(tmp_path / "proj")
    project.write(
        {
            "pytest.ini": DEFAULT_INI,
            "tests/conftest.py": """
                import json
                import pathlib

                def pytest_generate_tests(metafunc):
                    if "case" in metafunc.fixturenames:
                        data = pathlib.Path(__file__).with_name("cases.json").read_text()
                        metafunc.parametrize("case", json.loads(data))
            """,
            "tests/cases.json": '["a", "b"]',
            "tests/test_one.py": """
                def test_first():
                    pass

                def test_case(case):
                    pass
            """,
            "tests/sub/test_two.py": "def test_second():\n    pass\n",
        }
    )
    try:
        started = project.start("tests")
        assert started.returncode == 0, str(started)
        yield project
    finally:
        project.cleanup()


def collect(proj: Project, **filters: Any) -> dict[str, Any]:
    record = proj.record()
    assert record is not None
    answer = DaemonClient(str(record["socket_path"])).collect(proj.root, filters=filters or None)
    return answer


def settled(proj: Project, **filters: Any) -> dict[str, Any]:
    """Collect until an answer comes from the cache (a result is kept only once the
    files it read are older than the collection), and return that answer."""
    first = collect(proj, **filters)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        again = collect(proj, **filters)
        if again["cached"]:
            assert again["node_ids"] == first["node_ids"] or not first["cached"]
            return again
        first = again
        time.sleep(0.05)
    raise AssertionError(f"never answered from the cache: {first}")


def cold_ids(proj: Project, *args: str) -> list[str]:
    result = proj.cold("--collect-only", "-q", *args)
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_a_repeat_is_answered_from_the_cache(proj: Project) -> None:
    first = collect(proj)
    assert not first["cached"]
    hits = daemon_metrics(proj)["collect_cache_hits"]
    again = settled(proj)
    assert again["node_ids"] == first["node_ids"] == cold_ids(proj)
    assert again["count"] == 4 and again["generation"] == first["generation"]
    assert daemon_metrics(proj)["collect_cache_hits"] > hits


def test_an_edit_shows_in_the_next_collect(proj: Project) -> None:
    settled(proj)
    test_one = proj.root / "tests" / "test_one.py"
    test_one.write_text(test_one.read_text() + "\ndef test_added():\n    pass\n")
    answer = collect(proj)
    assert not answer["cached"]
    assert "tests/test_one.py::test_added" in answer["node_ids"]
    assert answer["node_ids"] == cold_ids(proj)


def test_a_new_test_file_in_a_new_directory_shows(proj: Project) -> None:
    settled(proj)
    proj.write({"tests/sub/deeper/test_three.py": "def test_third():\n    pass\n"})
    answer = collect(proj)
    assert "tests/sub/deeper/test_three.py::test_third" in answer["node_ids"], answer


def test_a_data_file_read_while_collecting_counts(proj: Project) -> None:
    """No watcher rule covers a .json file: the cache knows the collection read it."""
    settled(proj)
    cases = proj.root / "tests" / "cases.json"
    cases.write_text('["a", "b", "c"]')
    answer = collect(proj)
    assert "tests/test_one.py::test_case[c]" in answer["node_ids"], answer
    assert answer["node_ids"] == cold_ids(proj)


def test_a_fixed_broken_file_shows(proj: Project) -> None:
    proj.write({"tests/test_broken.py": "def test_x(:\n    pass\n"})
    broken = settled(proj)
    assert broken["errors"] and broken["exit_code"] == 2
    # Same size and a restored mtime: only the content and the ctime tell.
    path = proj.root / "tests" / "test_broken.py"
    st = path.stat()
    path.write_text("def test_x():\n   pass\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    answer = collect(proj)
    assert not answer["errors"], answer
    assert "tests/test_broken.py::test_x" in answer["node_ids"]


def test_a_new_conftest_shows(proj: Project) -> None:
    settled(proj)
    proj.write(
        {
            "tests/sub/conftest.py": """
                def pytest_collection_modifyitems(items):
                    items[:] = [i for i in items if "second" not in i.name]
            """
        }
    )
    answer = collect(proj)
    assert "tests/sub/test_two.py::test_second" not in answer["node_ids"], answer


def test_filters_are_part_of_the_key(proj: Project) -> None:
    everything = settled(proj)
    only = collect(proj, **{"-k": "first"})
    assert not only["cached"]
    assert only["node_ids"] == ["tests/test_one.py::test_first"]
    assert settled(proj)["node_ids"] == everything["node_ids"]
