"""The supervisor's rooms with a scripted fake warm process: no processes are started.

Real files in tmp_path (the freshness records and the import graph read
them); the warm process is ``fake_warm.FakeWarm``, which records the orders
it gets and answers from a script.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_fastcollect.supervisor import isolation
from pytest_fastcollect.supervisor.core import Incoming, Supervisor
from pytest_fastcollect.supervisor.freshness import FILE_CLOCK_SLACK_NS, Freshness
from pytest_fastcollect.supervisor.lifecycle import WarmHandle
from pytest_fastcollect.supervisor.slot import Refused
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire import warm as wm

from fake_warm import FakeLayers, FakeWarm

FILES = {
    "app/__init__.py": "",
    "app/core.py": "def greet():\n    return 'hi'\n",
    "app/util.py": "from app.core import greet\n\ndef shout():\n    return greet().upper()\n",
    "app/leaf.py": "X = 1\n",
    "tests/conftest.py": "import app.leaf\n",
    "tests/test_util.py": "from app.util import shout\n\ndef test_it():\n    assert shout()\n",
    "tests/test_leaf.py": "from app.leaf import X\n\ndef test_it():\n    assert X\n",
}


def saved_before_warm_up() -> None:
    """Let the kernel's file clock move past the saves just made: a file saved
    during a warm-up (or one clock tick before it) counts as changed."""
    time.sleep(2 * FILE_CLOCK_SLACK_NS / 1e9)


class Harness(FakeLayers):
    def __init__(self, root: Path) -> None:
        super().__init__(root, debounce=30.0)
        self.notices: list[str] = []

    def edit(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.write_text(text)
        # The same second and size must still count: move mtime on explicitly.
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    def fresh(self) -> WarmHandle:
        with self.sup.slot.hold() as held:
            return held.fresh(self.notices.append)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    root = tmp_path / "proj"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    saved_before_warm_up()
    harness = Harness(root)
    harness.sup.start()
    # The registrant scan runs in a thread after adoption (runs before it ends
    # come from the base process): wait for it, so runs come from the layer.
    wait_for(lambda: harness.sup.slot.isolation.registrants is not None)
    try:
        yield harness
    finally:
        harness.sup.shutdown()


def test_start_adopts_the_warm_process(h: Harness) -> None:
    assert h.sup.slot.state is p.DaemonState.READY
    assert h.sup.slot.generation == 1
    assert len(h.spawned) == 1
    assert set(h.sup.records.known_files()) == set(h.current.modules) | h.current.conftests
    assert h.fresh() is h.current  # nothing changed: nothing reloaded
    assert [type(o) for o in h.current.orders] == [wm.ScanOrder]


def test_a_core_edit_reloads_its_reverse_closure(h: Harness) -> None:
    h.edit("app/core.py", "def greet():\n    return 'ho'\n")
    wp = h.fresh()
    assert wp is h.spawned[0]
    (order,) = wp.orders_of(wm.ReloadOrder)
    assert isinstance(order, wm.ReloadOrder)
    assert order.modules == ["app.core", "app.util", "tests.test_util"]
    # Test modules are left to the run (assertion rewriting) and the re-warm.
    assert order.reimport == ["app.core", "app.util"]
    assert h.sup.slot.generation == 2
    stats = h.sup.reload_stats()
    assert (stats.reloads, stats.modules_reloaded) == (1, 3)
    assert stats.last is not None and stats.last.files == ["app/core.py"]
    assert h.notices == ["reloading 3 module(s) (changed: app/core.py)"]


def test_an_unchanged_save_reloads_nothing(h: Harness) -> None:
    h.edit("app/core.py", FILES["app/core.py"])
    h.fresh()
    assert h.current.orders_of(wm.ReloadOrder) == []
    assert h.sup.reload_stats().reloads == 0


def test_a_plain_conftest_edit_needs_no_new_warm_process(h: Harness) -> None:
    # Imports, definitions and assignments only: pytest imports it afresh per run.
    h.edit("tests/conftest.py", "import app.leaf\n\nLIMIT = 3\n")
    wp = h.fresh()
    assert wp is h.spawned[0] and len(h.spawned) == 1
    assert h.sup.reload_stats().replacements == {}
    assert h.sup.slot.generation == 2
    # The new version is what the next edit is compared with.
    h.edit("tests/conftest.py", "import app.leaf\n\nLIMIT = 4\n")
    assert h.fresh() is wp


def test_a_test_module_importing_from_a_conftest_is_purged_with_it(h: Harness) -> None:
    h.edit("tests/test_leaf.py", "from conftest import LIMIT\n\ndef test_it():\n    assert LIMIT\n")
    h.fresh()
    h.edit("tests/conftest.py", "import app.leaf\n\nLIMIT = 5\n")
    h.fresh()
    orders = h.current.orders_of(wm.ReloadOrder)
    assert isinstance(orders[-1], wm.ReloadOrder)
    assert "tests.test_leaf" in orders[-1].modules
    assert h.sup.reload_stats().replacements == {}


@pytest.mark.parametrize(
    "conftest,why",
    [
        ("import os\nos.environ['MODE'] = 'x'\n", "now runs code at import (line 2"),
        ("import sys\nsys.path.insert(0, 'x')\n", "now runs code at import (line 2"),
        ("def pytest_configure(config):\n    pass\n", "a hook that runs before test modules"),
        ("pytest_plugins = ['x']\n", "pytest_plugins, changed"),
    ],
)
def test_a_conftest_edit_that_cannot_be_reloaded_replaces_the_warm_process(
    h: Harness, conftest: str, why: str
) -> None:
    h.edit("tests/conftest.py", conftest)
    wp = h.fresh()
    assert len(h.spawned) == 2 and wp is h.spawned[1]
    assert h.spawned[0].retired
    assert h.sup.reload_stats().replacements == {"conftest": 1}
    assert any(why in n for n in h.notices), h.notices


def test_a_conftest_whose_imported_version_had_effects_replaces(tmp_path: Path) -> None:
    files = dict(FILES, **{"tests/conftest.py": "import app.leaf\nimport os\nos.getcwd()\n"})
    root = tmp_path / "p2"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    saved_before_warm_up()
    harness = Harness(root)
    harness.sup.start()
    try:
        # Back to a plain conftest: the old effect stays in the warm process.
        harness.edit("tests/conftest.py", "import app.leaf\n")
        harness.fresh()
        assert harness.sup.reload_stats().replacements == {"conftest": 1}
        assert any("imported version runs code at import (line 3" in n for n in harness.notices)
    finally:
        harness.sup.shutdown()


def test_an_edit_to_a_module_a_plain_conftest_imports_reloads_in_place(h: Harness) -> None:
    h.edit("app/leaf.py", "X = 2\n")
    wp = h.fresh()
    assert wp is h.spawned[0]
    (order,) = wp.orders_of(wm.ReloadOrder)
    assert isinstance(order, wm.ReloadOrder)
    assert order.modules == ["app.leaf", "tests.test_leaf"]
    assert order.reimport == ["app.leaf"]
    assert h.sup.reload_stats().replacements == {}


@pytest.mark.parametrize(
    "failure,counted",
    [
        (wm.ReloadFailure.ALIVE, "alive"),
        (wm.ReloadFailure.REIMPORT_ERROR, "reload-error"),
        (wm.ReloadFailure.PLAIN_IMPORT, "reload-error"),
    ],
)
def test_a_failed_reload_replaces_by_its_kind_not_its_text(
    h: Harness, failure: wm.ReloadFailure, counted: str
) -> None:
    first = h.current
    # The reason text says nothing the supervisor could parse.
    first.reload_answer = lambda order: first.reloaded(order.id, failure, "some text")
    h.edit("app/util.py", FILES["app/util.py"] + "\nY = 1\n")
    h.fresh()
    assert h.sup.reload_stats().replacements == {counted: 1}
    assert h.current is not first


def test_a_failed_warm_up_refuses_runs_until_a_change(h: Harness) -> None:
    h.fail_next = "conftest raised"
    h.edit("tests/conftest.py", "raise RuntimeError\n")
    with pytest.raises(Refused, match="conftest raised"):
        h.fresh()
    assert h.sup.slot.state is p.DaemonState.FAILED
    # A run does not retry (no change): no new process.
    with pytest.raises(Refused):
        h.fresh()
    assert len(h.spawned) == 2
    # A change may be the fix: one retry.
    h.edit("tests/conftest.py", "import app.leaf\n")
    assert h.fresh() is h.spawned[2]
    assert h.sup.slot.state is p.DaemonState.READY
    assert h.sup.reload_stats().replacements == {"conftest": 1, "retry": 1}


def test_a_dead_warm_process_is_replaced(h: Harness) -> None:
    first = h.current
    first.state = first.state.DEAD
    assert h.fresh() is h.spawned[1]
    assert h.sup.reload_stats().replacements == {"crash": 1}


def test_a_run_that_finds_the_warm_process_dead_goes_cold(h: Harness) -> None:
    first = h.current
    first.state = first.state.DEAD
    result = _serve_run(h, _run_request({}))
    assert isinstance(result, p.RunRefused) and "restarting" in result.reason
    wait_for(lambda: h.sup.slot.current is not first and h.sup.slot.state is p.DaemonState.READY)


def _run_request(env: dict[str, str]) -> p.RunRequest:
    return p.RunRequest(
        args=["-q"],
        cwd="/somewhere",
        env=env,
        umask=0o22,
        python="/bin/python",
        sys_path=["/x"],
    )


def _serve_run(h: Harness, req: p.RunRequest) -> p.BaseModel:
    a, b = socket.socketpair()
    fds = [os.open(os.devnull, os.O_RDWR) for _ in range(3)]
    try:
        return h.sup.handle_run(req, Incoming(a, fds))
    finally:
        a.close()
        b.close()


def test_a_run_forks_with_the_clients_environment(h: Harness) -> None:
    result = _serve_run(h, _run_request({"PATH": "/usr/bin"}))
    assert isinstance(result, p.RunFinished) and result.exit_code == 0
    (order,) = h.current.orders_of(wm.ForkOrder)
    assert isinstance(order, wm.ForkOrder)
    assert (order.mode, order.cwd, order.env) == ("run", "/somewhere", {"PATH": "/usr/bin"})
    # Our own order id, never the client's request id.
    assert order.id != result.request_id


def test_a_run_with_another_interpreter_is_refused(h: Harness) -> None:
    req = _run_request({}).model_copy(update={"python": "/other/python"})
    result = _serve_run(h, req)
    assert isinstance(result, p.RunRefused)
    assert "/other/python" in result.reason
    assert h.current.orders_of(wm.ForkOrder) == []


def wait_for(predicate: typing.Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_import_time_variable_that_differs_warms_a_process_with_the_runs_env(
    h: Harness,
) -> None:
    # Waiting for a warm-up is slower than a cold run: this run goes cold.
    result = _serve_run(h, _run_request({"APP_MODE": "fast"}))
    assert isinstance(result, p.RunRefused)
    assert "restarting the warm process (environment variable APP_MODE" in result.reason
    wait_for(lambda: len(h.spawned) == 2 and h.sup.slot.current is h.spawned[1])
    assert h.spawned[1].env == {"APP_MODE": "fast"}
    assert h.sup.reload_stats().replacements == {"env": 1}
    # Whether the base needs renewing is the layer source's call (the variables
    # it read: test_base_env.py), not forced for every new environment.
    assert h.renewals == 0
    wait_for(lambda: h.sup.slot.isolation.registrants is not None)  # the new layer's scan
    assert isinstance(_serve_run(h, _run_request({"APP_MODE": "fast"})), p.RunFinished)


def test_a_run_never_waits_for_a_warm_up(h: Harness) -> None:
    release = threading.Event()
    slow = threading.Event()

    def spawn_slowly(gen: int, env: dict[str, str], on_death: typing.Any) -> WarmHandle:
        fake = FakeWarm(gen, env, h.root, on_death=on_death)
        original = fake.wait_ready

        def wait_ready(timeout: float | None = None) -> bool:
            slow.set()
            release.wait(5)
            return original(timeout)

        fake.wait_ready = wait_ready  # type: ignore[method-assign]
        h.spawned.append(fake)
        return fake

    h.project = spawn_slowly  # type: ignore[method-assign]
    h.edit("pyproject.toml", "[tool.pytest.ini_options]\n")
    h.sup.note_changes({str(h.root / "pyproject.toml")})  # as the watcher would
    result = _serve_run(h, _run_request({}))
    assert isinstance(result, p.RunRefused)
    assert "restarting the warm process (pyproject.toml changed)" in result.reason
    slow.wait(5)
    # While the new process warms up, a run is refused at once.
    started = time.monotonic()
    again = _serve_run(h, _run_request({}))
    assert time.monotonic() - started < 1.0
    assert isinstance(again, p.RunRefused)
    assert "the warm process is restarting (pyproject.toml changed)" in again.reason
    release.set()
    wait_for(lambda: h.sup.slot.current is h.spawned[1])
    wait_for(lambda: h.sup.slot.isolation.registrants is not None)  # the new layer's scan
    assert isinstance(_serve_run(h, _run_request({})), p.RunFinished)


def test_a_tainted_warm_process_refuses_the_run_and_is_replaced(h: Harness) -> None:
    first = h.current
    first.fork_events = lambda order: [wm.Tainted(id=order.id, reason="a Python thread runs")]
    result = _serve_run(h, _run_request({}))
    assert isinstance(result, p.RunRefused)
    assert "a Python thread runs" in result.reason
    deadline = time.monotonic() + 5
    while h.current is first and time.monotonic() < deadline:
        time.sleep(0.01)
    assert h.current is not first
    assert h.sup.reload_stats().replacements == {"tainted": 1}


def test_a_warm_process_that_cannot_fork_is_reported_once_not_replaced_in_a_loop(
    h: Harness,
) -> None:
    first = h.current
    first.fork_events = lambda order: [wm.Tainted(id=order.id, reason="libgomp has a pool")]
    h.unsafe_next = "libgomp has a pool"  # its replacement warms up just the same
    assert isinstance(_serve_run(h, _run_request({})), p.RunRefused)
    deadline = time.monotonic() + 5
    while len(h.spawned) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while h.sup.slot.state is not p.DaemonState.FAILED and time.monotonic() < deadline:
        time.sleep(0.01)
    # Runs now go cold at once, saying why; no further replacement.
    for _ in range(3):
        result = _serve_run(h, _run_request({}))
        assert isinstance(result, p.RunRefused)
        assert "cannot fork safely: libgomp has a pool" in result.reason
    assert len(h.spawned) == 2
    assert h.spawned[1].killed
    health = h.sup.health().checks["warm_process_fork_safe"]
    assert not health.ok and health.detail == "libgomp has a pool"
    # A change may be the fix: one retry.
    h.unsafe_next = None
    h.edit("app/leaf.py", "X = 3\n")
    assert h.fresh() is h.spawned[2]


def test_learned_imports_are_imported_a_module_a_step(h: Harness) -> None:
    wp = h.current
    h.sup.idle.learn_imports = True
    h.sup.idle.want_imports(wp, ["json.tool", "xml.dom.minidom", "email.parser"])
    h.sup.idle._learn(wp)
    steps = [o.modules for o in wp.orders_of(wm.LearnOrder)]  # type: ignore[attr-defined]
    assert steps == [["email.parser"], ["json.tool"], ["xml.dom.minidom"]]
    assert len(wp.orders_of(wm.TrialOrder)) == 1
    assert h.sup.warmup().learned_imports == 3


def test_idle_work_gives_way_to_a_run_between_steps(h: Harness) -> None:
    wp = h.current
    in_step = threading.Event()
    finish_step = threading.Event()

    def gate(order: wm.LearnOrder) -> None:
        if order.modules == ["a_mod"]:
            in_step.set()
            finish_step.wait(5)

    wp.learn_gate = gate
    h.sup.idle.learn_imports = True
    h.sup.idle.want_imports(wp, ["a_mod", "b_mod", "c_mod"])
    learner = threading.Thread(target=h.sup.idle._learn, args=(wp,))
    learner.start()
    assert in_step.wait(5)
    served: list[p.BaseModel] = []
    runner = threading.Thread(target=lambda: served.append(_serve_run(h, _run_request({}))))
    runner.start()
    wait_for(h.sup.slot.lock.urgent_waiting)
    finish_step.set()  # the step in progress ends; the run goes before the next one
    runner.join(5)
    learner.join(5)
    assert isinstance(served[0], p.RunFinished)
    learned = [o.modules for o in wp.orders_of(wm.LearnOrder)]  # type: ignore[attr-defined]
    assert learned == [["a_mod"]]  # b and c wait for the next quiet moment
    assert wp.orders.index(wp.orders_of(wm.ForkOrder)[0]) > wp.orders.index(
        wp.orders_of(wm.LearnOrder)[0]
    )


def test_a_run_that_does_not_import_a_registrant_comes_from_the_base(h: Harness) -> None:
    # app/leaf.py registers something at import; tests/test_util.py never imports it
    # (the conftest does, though: so make the conftest import nothing).
    h.edit("tests/conftest.py", "X = 1\n")
    h.fresh()
    h.sup.slot.isolation.scanned({str(h.root / "app/leaf.py"): "X is held elsewhere"}, 0)
    req = _run_request({}).model_copy(update={"args": ["tests/test_util.py"], "cwd": str(h.root)})
    result = _serve_run(h, req)
    # No base process in this harness: the run goes cold, saying why.
    assert isinstance(result, p.RunRefused)
    assert "does not import app/leaf.py" in result.reason
    # The run of the file that imports it is served by the layer.
    req = req.model_copy(update={"args": ["tests/test_leaf.py"]})
    assert isinstance(_serve_run(h, req), p.RunFinished)


def test_collect_reads_the_workers_result(h: Harness) -> None:
    result = h.sup.handle_collect(p.CollectRequest(root=str(h.root)), Incoming(None, []))  # type: ignore[arg-type]
    assert isinstance(result, p.CollectResponse)
    assert result.node_ids == ["tests/test_leaf.py::test_it", "tests/test_util.py::test_it"]
    (order,) = h.current.orders_of(wm.ForkOrder)
    assert isinstance(order, wm.ForkOrder) and order.mode == "collect"


def test_collect_outside_the_root_is_refused(h: Harness, tmp_path: Path) -> None:
    result = h.sup.handle_collect(p.CollectRequest(root=str(tmp_path)), Incoming(None, []))  # type: ignore[arg-type]
    assert isinstance(result, p.ErrorResponse)
    assert result.code is p.ErrorCode.OUTSIDE_ROOT


def test_the_reload_lock_is_exclusive(h: Harness) -> None:
    entered = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def holder() -> None:
        with h.sup.slot.hold():
            entered.set()
            release.wait(5)
            order.append("holder done")

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait(5)
    waiter = threading.Thread(target=lambda: (h.fresh(), order.append("fresh done")))
    waiter.start()
    time.sleep(0.05)
    assert order == []
    release.set()
    thread.join(5)
    waiter.join(5)
    assert order == ["holder done", "fresh done"]


def test_every_command_has_a_handler() -> None:
    commands = {
        typing.get_args(model.model_fields["command"].annotation)[0]
        for model in typing.get_args(typing.get_args(p.Request)[0])
    }
    assert commands == {
        "status",
        "health",
        "collect",
        "run",
        "signal",
        "reload",
        "stop",
        "watch",
        "affected",
    }
    for command in commands:
        assert callable(getattr(Supervisor, f"handle_{command}", None)), command


def test_status_and_health_need_no_real_process(h: Harness) -> None:
    status = h.sup.status()
    assert status.state is p.DaemonState.READY
    assert status.project_modules == len(FILES) - 1  # pytest drops tests/conftest.py
    verdict = h.sup.health()
    # The fake pid is no process: the warm process counts as missing.
    assert not verdict.checks["warm_process_alive"].ok


# -- freshness on its own -------------------------------------------------------------------


def test_the_sweep_finds_what_the_watcher_missed(tmp_path: Path) -> None:
    quiet = threading.Event()
    records = Freshness(str(tmp_path), debounce=0.01, on_quiet=quiet.set)
    path = tmp_path / "mod.py"
    path.write_text("A = 1\n")
    saved_before_warm_up()
    records.record([str(path)], [], since_ns=time.time_ns())
    records.sweep()
    assert not records.has_pending()
    path.write_text("A = 22\n")
    records.sweep()
    assert records.take_pending() == {str(path)}
    records.refresh([str(path)])  # as applying the change does
    (tmp_path / "new.py").write_text("")
    os.utime(tmp_path, ns=(0, time.time_ns() + 10**9))
    records.sweep()
    assert records.take_pending() == {str(tmp_path / "new.py")}


def test_a_burst_of_events_is_debounced_into_one_call(tmp_path: Path) -> None:
    calls: list[float] = []
    records = Freshness(str(tmp_path), debounce=0.05, on_quiet=lambda: calls.append(1.0))
    for i in range(10):
        records.note([str(tmp_path / f"m{i}.py")])
    time.sleep(0.3)
    assert calls == [1.0]
    assert records.pending_count() == 10
    assert records.events_seen == 10


def test_irrelevant_paths_are_not_noted(tmp_path: Path) -> None:
    records = Freshness(str(tmp_path), debounce=10, on_quiet=lambda: None)
    records.note(
        [
            str(tmp_path / "README.md"),
            str(tmp_path / ".git" / "x.py"),
            str(tmp_path / "__pycache__" / "a.cpython-311.pyc"),
            "/elsewhere/x.py",
        ]
    )
    assert not records.has_pending()
    records.stop()


def test_a_run_after_a_reimport_waits_for_the_scan_it_started(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # app/leaf.py is re-imported by a reload: a registrant suspect until a
    # scan, which the reload starts at once. tests/test_util.py never imports
    # it (the conftest does: make it import nothing).
    h.edit("tests/conftest.py", "X = 1\n")
    h.fresh()
    h.edit("app/leaf.py", "X = 2\n")
    h.current.held_scans = []
    req = _run_request({}).model_copy(update={"args": ["tests/test_util.py"], "cwd": str(h.root)})
    served: list[p.BaseModel] = []
    runner = threading.Thread(target=lambda: served.append(_serve_run(h, req)))
    runner.start()
    wait_for(lambda: len(h.current.held_scans or []) == 1)
    runner.join(0.3)
    assert runner.is_alive()  # the run waits for the scan, not the base
    box, order = h.current.held_scans[0]
    h.current.held_scans = None
    box.put(wm.Scanned(id=order.id, registrants={}, complete=True))
    runner.join(10)
    assert isinstance(served[0], p.RunFinished)  # the scan cleared app/leaf.py: served warm
    # A scan that does not answer in time: the run goes to the base (cold here).
    monkeypatch.setattr(isolation, "SCAN_WAIT", 0.2)
    h.edit("app/leaf.py", "X = 3\n")
    h.current.held_scans = []
    result = _serve_run(h, req)
    assert isinstance(result, p.RunRefused) and "does not import app/leaf.py" in result.reason
