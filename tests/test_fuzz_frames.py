"""The hostile-frame fuzzer at CI size (``nox -s hostile`` runs 10,000 frames).

FASTCOLLECT_HOSTILE_FRAMES and FASTCOLLECT_HOSTILE_SEED change the size and
the seed; a failure prints what the fuzzer saw (answers by kind, problems).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz_frames import Fuzzer, Report, fuzz, start_project

from helpers import Project, wait_until

SEED = int(os.environ.get("FASTCOLLECT_HOSTILE_SEED", "20261201"))
FRAMES = int(os.environ.get("FASTCOLLECT_HOSTILE_FRAMES", "300"))

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Project]:
    project = start_project(tmp_path)
    try:
        yield project
    finally:
        project.cleanup()
        shutil.rmtree(project.runtime, ignore_errors=True)


def test_hostile_frames(target: Project) -> None:
    report = fuzz(target, SEED, FRAMES)
    assert report.problems == [], report.summary()
    assert report.frames == FRAMES
    # The frames reached the daemon and were judged, not just dropped.
    assert report.kinds["bad_request"] > FRAMES // 10, report.summary()
    assert report.kinds["run_finished"] + report.kinds["collect"] > 0, report.summary()
    assert report.status_ms, report.summary()


def test_the_fuzzer_sees_a_crash(target: Project) -> None:
    """A check that cannot fail proves nothing: a warm process that died is reported."""
    fuzzer = Fuzzer(target, random.Random(1))
    report = Report()
    fuzzer.check(report)
    assert report.problems == []
    os.kill(int(fuzzer.pids[1]), signal.SIGKILL)
    wait_until(
        lambda: target.status()["warm_pid"] not in (None, fuzzer.pids[1]),
        timeout=60,
        what="the warm process to be replaced",
    )
    fuzzer.check(report)
    assert any("pids changed" in x for x in report.problems), report.problems
