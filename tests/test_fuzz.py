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
SEQUENCES = int(os.environ.get("FASTCOLLECT_FUZZ_SEQUENCES", "10"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("index", range(SEQUENCES))
def test_fuzz_sequence(tmp_path: Path, index: int) -> None:
    failure = run_sequence(SEED, index, tmp_path)
    if failure is not None:
        pytest.fail(failure.report(), pytrace=False)
