"""Watch mode's rooms in the supervisor (change log, watch and affected) with a fake warm process.

No processes: ``Supervisor`` with ``fake_warm.FakeWarm``; file events are fed
as the watcher would feed them (``note_changes``), and the watch request's
connection is one end of a socketpair, so a hang-up can be tested too.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_fastcollect.supervisor.core import Incoming
from pytest_fastcollect.supervisor.freshness import FILE_CLOCK_SLACK_NS
from pytest_fastcollect.supervisor.watching import ChangeLog, client_connected
from pytest_fastcollect.wire import lite
from pytest_fastcollect.wire import protocol as p

from fake_warm import FakeLayers

FILES = {
    "app/__init__.py": "",
    "app/core.py": "def greet():\n    return 'hi'\n",
    "app/leaf.py": "X = 1\n",
    "tests/test_core.py": "from app.core import greet\n\ndef test_it():\n    assert greet()\n",
    "tests/test_leaf.py": "from app.leaf import X\n\ndef test_it():\n    assert X\n",
}
QUIET = 0.05


class Harness(FakeLayers):
    def __init__(self, root: Path) -> None:
        super().__init__(root, debounce=QUIET)
        self.conns: list[socket.socket] = []

    def edit(self, rel: str, text: str) -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        self.sup.note_changes({str(path)})  # as the watcher reports it
        return os.path.realpath(path)

    def watch(
        self, cursor: int | None, epoch: str | None = None, timeout: float = 10.0
    ) -> p.WatchResponse:
        ours, theirs = socket.socketpair()
        self.conns += [ours, theirs]
        req = p.WatchRequest(
            cursor=cursor, epoch=epoch or self.sup.watching.log.epoch, timeout=timeout
        )
        return self.sup.handle_watch(req, Incoming(theirs, []))


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    root = tmp_path / "proj"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    time.sleep(2 * FILE_CLOCK_SLACK_NS / 1e9)
    harness = Harness(root)
    harness.sup.start()
    # The registrant scan starts at adoption: until it answers, any change selects everything.
    deadline = time.monotonic() + 10
    while harness.sup.slot.isolation.registrants is None and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield harness
    finally:
        harness.sup.shutdown()
        for conn in harness.conns:
            conn.close()


def rels(h: Harness, paths: list[str]) -> list[str]:
    return sorted(os.path.relpath(x, h.root) for x in paths)


def test_a_start_answers_at_once_with_the_cursor(h: Harness) -> None:
    started = time.monotonic()
    answer = h.watch(None)
    assert time.monotonic() - started < 1.0
    assert answer.selection is None and answer.changed == [] and not answer.lost
    assert answer.cursor == h.sup.watching.log.cursor()


def test_a_save_is_answered_once_applied_with_its_selection(h: Harness) -> None:
    cursor = h.watch(None).cursor
    generation = h.sup.slot.generation
    h.edit("app/core.py", "def greet():\n    return 'ho'\n")
    answer = h.watch(cursor)
    assert rels(h, answer.changed) == ["app/core.py"]
    assert answer.selection is not None and not answer.selection.everything
    assert rels(h, answer.selection.test_files) == ["tests/test_core.py"]
    # Applied before the answer: the warm process reloaded, the generation moved on.
    assert answer.generation == h.sup.slot.generation > generation
    assert answer.reloaded == 2  # app.core and tests.test_core
    assert answer.ready_ms is not None and answer.ready_ms >= QUIET * 1000 * 0.5
    assert h.sup.records.pending() == set()


def test_saves_made_meanwhile_are_in_the_next_answer(h: Harness) -> None:
    cursor = h.watch(None).cursor
    h.edit("app/core.py", "def greet():\n    return 'ho'\n")
    first = h.watch(cursor)
    # The client runs tests now; these saves land during the run.
    h.edit("app/leaf.py", "X = 2\n")
    h.edit("tests/test_leaf.py", "from app.leaf import X\n\ndef test_it():\n    assert X == 2\n")
    second = h.watch(first.cursor)
    assert rels(h, second.changed) == ["app/leaf.py", "tests/test_leaf.py"]
    assert second.selection is not None
    assert rels(h, second.selection.test_files) == ["tests/test_leaf.py"]


def test_a_burst_of_saves_is_one_batch(h: Harness) -> None:
    # Saves QUIET/3 apart, in a quiet period ten times longer: a loaded
    # machine may stall the saving thread for a while without splitting it.
    quiet = h.sup.watching.log.quiet = QUIET * 10
    cursor = h.watch(None).cursor

    def saves() -> None:
        for n in range(5):
            h.edit("app/leaf.py", f"X = {n + 3}\n")
            time.sleep(QUIET / 3)

    thread = threading.Thread(target=saves)
    thread.start()
    answer = h.watch(cursor)
    thread.join()
    assert rels(h, answer.changed) == ["app/leaf.py"]
    assert h.watch(answer.cursor, timeout=quiet * 4).selection is None  # nothing left over


def test_nothing_changed_until_the_timeout(h: Harness) -> None:
    cursor = h.watch(None).cursor
    started = time.monotonic()
    answer = h.watch(cursor, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 5
    assert answer.selection is None and answer.cursor == cursor


def test_caches_and_editor_temporaries_do_not_wake_it(h: Harness) -> None:
    cursor = h.watch(None).cursor
    h.sup.note_changes({str(h.root / "app" / "__pycache__" / "core.cpython-311.pyc")})
    tmp = h.root / "app" / ".core.py.tmp42"
    tmp.write_text("x")
    h.sup.note_changes({str(tmp)})
    tmp.unlink()
    answer = h.watch(cursor, timeout=0.5)
    assert answer.selection is None


def test_a_data_file_selects_everything(h: Harness) -> None:
    cursor = h.watch(None).cursor
    h.edit("tests/expected.json", "{}")
    answer = h.watch(cursor)
    assert answer.selection is not None and answer.selection.everything
    assert answer.selection.reasons == ["tests/expected.json changed (a file tests may read)"]


def test_another_daemons_cursor_is_lost(h: Harness) -> None:
    answer = h.watch(7, epoch="another-daemon")
    assert answer.lost and answer.selection is not None and answer.selection.everything


def test_a_hung_up_client_ends_the_wait(h: Harness) -> None:
    cursor = h.watch(None).cursor
    ours, theirs = socket.socketpair()
    h.conns += [ours, theirs]
    assert client_connected(theirs)
    ours.close()
    assert not client_connected(theirs)
    req = p.WatchRequest(cursor=cursor, epoch=h.sup.watching.log.epoch, timeout=30)
    started = time.monotonic()
    answer = h.sup.handle_watch(req, Incoming(theirs, []))
    assert time.monotonic() - started < 5
    assert answer.selection is None


def test_a_change_the_watcher_missed_is_found_by_the_sweep(h: Harness) -> None:
    cursor = h.watch(None).cursor
    path = h.root / "app" / "leaf.py"
    path.write_text("X = 9\n")  # no event
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    answer = h.watch(cursor, timeout=10)
    assert rels(h, answer.changed) == ["app/leaf.py"]


def test_the_change_log_keeps_a_bounded_history(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ChangeLog(str(h.root), QUIET)
    log.note([str(h.root / "a.py")])
    first = log.cursor()
    log.note([str(h.root / "b.py"), str(h.root / "outside" / ".." / ".." / "c.py")])
    batch = log.batch(first, log.cursor())
    assert rels(h, batch.paths) == ["b.py"] and not batch.lost
    assert log.batch(-5, log.cursor()).lost


def test_affected_answers_for_paths(h: Harness) -> None:
    ours, theirs = socket.socketpair()
    h.conns += [ours, theirs]
    answer = h.sup.handle_affected(
        p.AffectedRequest(paths=["app/leaf.py"], collect=True), Incoming(theirs, [])
    )
    assert isinstance(answer, p.AffectedResponse)
    assert rels(h, answer.test_files) == ["tests/test_leaf.py"]
    leaf = os.path.realpath(h.root / "tests" / "test_leaf.py")
    assert answer.node_ids == {leaf: ["tests/test_leaf.py::test_it"]}
    outside = h.sup.handle_affected(p.AffectedRequest(paths=["/etc/passwd"]), Incoming(theirs, []))
    assert isinstance(outside, p.ErrorResponse) and outside.code is p.ErrorCode.OUTSIDE_ROOT


def test_the_lite_codec_reads_every_watch_answer(h: Harness) -> None:
    cursor = h.watch(None).cursor
    h.edit("app/core.py", "def greet():\n    return 'hey'\n")
    answer = h.watch(cursor)
    decoded = lite.decode_watch_response(p.dump(answer))
    assert isinstance(decoded, lite.Watched)
    assert (decoded.cursor, decoded.epoch, decoded.changed) == (
        answer.cursor,
        answer.epoch,
        answer.changed,
    )
    assert answer.selection is not None
    assert decoded.selection == answer.selection.test_files
    assert decoded.companions == answer.selection.companions
    assert decoded.reloaded == answer.reloaded and decoded.ready_ms == answer.ready_ms
    start = lite.decode_watch_response(p.dump(h.watch(None)))
    assert isinstance(start, lite.Watched) and start.selection is None


def test_registrants_reach_tests_that_do_not_import_them(h: Harness) -> None:
    leaf = os.path.realpath(h.root / "app" / "leaf.py")
    h.sup.slot.isolation.scanned({leaf: "registers X into app.core"}, 0)
    h.current.registrants = {leaf: "registers X into app.core"}  # what the next scans find
    cursor = h.watch(None).cursor
    h.edit("app/core.py", "def greet():\n    return 'yo'\n")
    answer = h.watch(cursor)
    assert answer.selection is not None and not answer.selection.everything
    assert rels(h, answer.selection.test_files) == ["tests/test_core.py"]
    # A partial run must import what a full run imports and registers.
    assert rels(h, answer.selection.companions) == ["tests/test_leaf.py"]
    h.edit("app/leaf.py", "X = 5\n")
    answer = h.watch(answer.cursor)
    assert answer.selection is not None and answer.selection.everything
    assert answer.selection.reasons == [
        "app/leaf.py changed, and it registers into another module (registers X into app.core)"
    ]


def test_before_the_registrant_scan_everything(h: Harness) -> None:
    wp = h.sup.slot.current
    assert wp is not None
    h.sup.slot.isolation.adopted(wp)  # a new layer: not scanned yet
    h.current.held_scans = []  # and its scans do not answer
    cursor = h.watch(None).cursor
    h.edit("app/core.py", "def greet():\n    return 'yo'\n")
    answer = h.watch(cursor)
    assert answer.selection is not None and answer.selection.everything
    assert "not known yet" in answer.selection.reasons[0]
    assert len(h.current.held_scans) == 1  # the reload re-imported app/core.py: scanned at once
