"""The edit fuzzer at CI size: a few seeded sequences, each on a fresh daemon.

The full-size run (200+ sequences) is ``python tests/fuzz_edits.py
--sequences 200 --seed N``. Here the seed and size can be changed with
FASTCOLLECT_FUZZ_SEED and FASTCOLLECT_FUZZ_SEQUENCES; a failure prints the
reproducer (seed, sequence, both outputs, the daemon log).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fuzz_edits import run_sequence

SEED = int(os.environ.get("FASTCOLLECT_FUZZ_SEED", "20261128"))
SEQUENCES = int(os.environ.get("FASTCOLLECT_FUZZ_SEQUENCES", "12"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("index", range(SEQUENCES))
def test_fuzz_sequence(tmp_path: Path, index: int) -> None:
    failure = run_sequence(SEED, index, tmp_path)
    if failure is not None:
        pytest.fail(failure.report(), pytrace=False)


# -- the harness itself: a comparison that cannot see a difference proves nothing --

SAMPLE = """\
============================= test session starts ==============================
collected 3 items

tests/test_a.py .F.                                                      [100%]

=========================== short test summary info ============================
PASSED tests/test_a.py::test_one
FAILED tests/test_a.py::test_two - assert <object at 0x7f00deadbeef> == 1
PASSED tests/test_a.py::test_three
========================= 1 failed, 2 passed in 0.05s ==========================
"""


def test_outcomes_parse_and_compare() -> None:
    from fuzz_edits import outcomes
    from helpers import Result

    cold = outcomes(Result([], 1, SAMPLE, ""))
    assert cold.exit_code == 1
    assert cold.summary == "1 failed, 2 passed"
    assert cold.tests == (
        "FAILED tests/test_a.py::test_two - assert <object at 0x?> == 1",
        "PASSED tests/test_a.py::test_one",
        "PASSED tests/test_a.py::test_three",
    )
    # Addresses and durations differ between processes; outcomes do not.
    same = SAMPLE.replace("0x7f00deadbeef", "0x55aa").replace("0.05s", "1.20s")
    assert outcomes(Result([], 1, same, "")).diff(cold) == []
    stale = SAMPLE.replace(
        "FAILED tests/test_a.py::test_two - assert <object at 0x7f00deadbeef> == 1",
        "PASSED tests/test_a.py::test_two",
    ).replace("1 failed, 2 passed", "3 passed")
    problems = outcomes(Result([], 0, stale, "")).diff(cold)
    assert "exit code: warm 0, cold 1" in problems
    assert "+PASSED tests/test_a.py::test_two" in problems
    assert any(p.startswith("summary:") for p in problems)


@pytest.mark.parametrize("keep_mtime", [False, True])
@pytest.mark.parametrize("style", ["inplace", "atomic", "backup", "sed", "jetbrains"])
def test_save_styles(tmp_path: Path, style: str, keep_mtime: bool) -> None:
    from fuzz_edits import Style, save

    path = tmp_path / "mod.py"
    path.write_text("VALUE = 1\n")
    before = path.stat()
    save(path, "VALUE = 2\n", Style(style), keep_mtime=keep_mtime)
    after = path.stat()
    assert path.read_text() == "VALUE = 2\n"
    assert os.listdir(tmp_path) == ["mod.py"], "the editor's temporary files were left behind"
    assert (after.st_ino == before.st_ino) == (style == "inplace")
    if keep_mtime:
        assert after.st_mtime_ns == before.st_mtime_ns
