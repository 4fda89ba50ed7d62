"""A scripted stand-in for the warm process, for supervisor unit tests without processes.

It implements ``supervisor.lifecycle.WarmHandle``: it answers orders with
the events a real warm process would send, from a script the test sets
(``reload_answer``, ``fork_events``), and records every order it got.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

from pytest_fastcollect.supervisor.lifecycle import Mailbox, WarmState
from pytest_fastcollect.wire import warm as wm

_pids = itertools.count(50_000)


def module_table(root: Path) -> list[tuple[str, str]]:
    """(module name, real path) of every .py file under ``root``, as the warm process reports.

    A conftest outside a package is not there: pytest drops it from sys.modules.
    """
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        elif parts[-1] == "conftest" and not (path.parent / "__init__.py").exists():
            continue
        out.append((".".join(parts), os.path.realpath(path)))
    return out


class FakeWarm:
    def __init__(
        self,
        generation: int,
        env: dict[str, str],
        root: Path,
        fail_warmup: str | None = None,
        on_death: Callable[[FakeWarm], None] | None = None,
    ) -> None:
        self.generation = generation
        self.env = env
        self.root = root
        self.pid = next(_pids)
        self.state = WarmState.STARTING
        self.ready: wm.Ready | None = None
        self.fork: wm.ForkVerdict | None = None
        self.unsafe: str | None = None  # a reason: warm, but it cannot fork safely
        self.error: str | None = None
        self.modules: dict[str, str] = {}
        self.test_files: set[str] = set()
        self.conftests: set[str] = set()
        self.cached_modules = 0
        self.running: dict[str, int] = {}
        self.unresponsive: str | None = None
        self.orders: list[wm.Order] = []
        self.retired = False
        self.killed = False
        self.fail_warmup = fail_warmup
        self.on_death = on_death
        # Scripted answers: None means "answer as a healthy warm process would".
        self.reload_answer: Callable[[wm.ReloadOrder], wm.Event | None] | None = None
        self.fork_events: Callable[[wm.ForkOrder], list[wm.Event | None]] | None = None
        self.learn_gate: Callable[[wm.LearnOrder], None] | None = None  # called per step
        self.registrants: dict[str, str] = {}  # what a scan finds
        # Not None: scans are left unanswered here (the test answers them).
        self.held_scans: list[tuple[Mailbox, wm.ScanOrder]] | None = None

    def report(self) -> dict[str, object]:
        table = module_table(self.root)
        tests = [path for name, path in table if name.rsplit(".", 1)[-1].startswith("test_")]
        return {
            "cached_modules": 100 + len(table),
            "modules": table,
            "env_keys": [],
            "test_files": tests,
            "conftests": sorted(os.path.realpath(p) for p in self.root.rglob("conftest.py")),
        }

    @property
    def key(self) -> wm.WarmKey:
        assert self.ready is not None
        return self.ready.key

    def wait_ready(self, timeout: float | None = None) -> bool:
        if self.fail_warmup is not None:
            self.state = WarmState.FAILED
            self.error = self.fail_warmup
            return False
        self.ready = wm.Ready(
            pid=self.pid,
            key=wm.WarmKey(
                python="/bin/python",
                sys_path=["/x"],
                options={},
                env={"APP_MODE": self.env.get("APP_MODE")},  # read at import
            ),
            imported=1,
            total=1,
            seconds=0.01,
            failures=[],
            warm_paths=["tests"],
            libraries=[],
            env_written=[],
            fork=wm.ForkVerdict(
                safe=self.unsafe is None, reason=self.unsafe or "", os_threads=1, native={}
            ),
            **self.report(),  # type: ignore[arg-type]
        )
        self.fork = self.ready.fork
        self.update_modules(self.ready)
        if self.unsafe is not None:
            self.error = f"it cannot fork safely: {self.unsafe}"
            self.state = WarmState.FAILED
            return False
        self.state = WarmState.READY
        return True

    def update_modules(self, report: wm.ModuleReport) -> None:
        self.modules = {path: name for name, path in report.modules}
        self.test_files = set(report.test_files)
        self.conftests = set(report.conftests)
        self.cached_modules = report.cached_modules

    def request(self, order: wm.Order, fds: tuple[int, ...] = ()) -> Mailbox:
        self.orders.append(order)
        box = Mailbox()
        if isinstance(order, wm.ForkOrder):
            if order.mode == "collect" and fds:
                # The real collect worker writes its result to this pipe.
                result = wm.CollectResult(node_ids=self.collected(), errors=[], exit_code=0)
                os.write(fds[0], wm.encode(result))
            events = self.fork_events(order) if self.fork_events else self._forked(order)
            for event in events:
                box.put(event)
        elif isinstance(order, wm.ScanOrder) and self.held_scans is not None:
            self.held_scans.append((box, order))
        else:
            box.put(self._answer(order))
        return box

    def _forked(self, order: wm.ForkOrder) -> list[wm.Event | None]:
        pid = next(_pids)
        return [wm.Forked(id=order.id, pid=pid), wm.Exited(id=order.id, pid=pid, code=0)]

    def collected(self) -> list[str]:
        return sorted(f"{os.path.relpath(path, self.root)}::test_it" for path in self.test_files)

    def _answer(self, order: wm.Order) -> wm.Event | None:
        if isinstance(order, wm.ReloadOrder):
            if self.reload_answer is not None:
                return self.reload_answer(order)
            return self.reloaded(order.id)
        if isinstance(order, wm.RewarmOrder):
            return self.reloaded(order.id, reimported=len(order.files))
        if isinstance(order, wm.ScanOrder):
            return wm.Scanned(id=order.id, registrants=dict(self.registrants), complete=True)
        if isinstance(order, wm.TrialOrder):
            return wm.Trialled(id=order.id, results=dict.fromkeys(order.modules))
        if isinstance(order, wm.LearnOrder):
            if self.learn_gate is not None:
                self.learn_gate(order)
            return wm.Learned(
                id=order.id,
                imported=list(order.modules),
                rejected={},
                deferred=[],
                tainted="",
                duration_ms=1.0,
                **self.report(),  # type: ignore[arg-type]
            )
        return None

    def reloaded(
        self,
        order_id: str,
        failure: wm.ReloadFailure | None = None,
        reason: str = "",
        reimported: int = 0,
    ) -> wm.Reloaded:
        return wm.Reloaded(
            id=order_id,
            failure=failure,
            reason=reason,
            reimported=reimported,
            failures=[],
            duration_ms=1.0,
            conftests_imported=[],
            **self.report(),  # type: ignore[arg-type]
        )

    def ask(self, order: wm.Order) -> wm.Event | None:
        box = self.request(order)
        try:
            return box.get()
        finally:
            box.close()

    def done(self, order_id: str) -> None:
        pass

    def alive(self) -> bool:
        return self.state in (WarmState.STARTING, WarmState.READY) and not self.killed

    def retire(self) -> None:
        self.retired = True

    def kill(self) -> None:
        self.killed = True
        self.state = WarmState.DEAD

    def check_responsive(self) -> str | None:
        return self.unresponsive

    def die(self) -> None:
        """As if the process crashed: the reader thread reports it."""
        self.state = WarmState.DEAD
        if self.on_death is not None:
            self.on_death(self)

    def orders_of(self, kind: type) -> list[wm.Order]:
        return [o for o in self.orders if isinstance(o, kind)]


class FakeLayers:
    """A ``Supervisor`` over ``root`` whose layer source hands out ``FakeWarm``s
    (``supervisor.layers.LayerSource``): no base process, no processes at all."""

    def __init__(self, root: Path, debounce: float) -> None:
        from pytest_fastcollect.settings import DaemonSettings
        from pytest_fastcollect.supervisor.core import DaemonConfig, Supervisor

        self.root = root
        self.spawned: list[FakeWarm] = []
        self.fail_next: str | None = None  # the next layer fails its warm-up so
        self.unsafe_next: str | None = None  # the next layer cannot fork safely so
        self.renewals = 0
        config = DaemonConfig(
            root=str(root),
            socket_path=str(root / "x.sock"),
            log_path=str(root / "x.log"),
            cache_dir=str(root / "cache"),
            cwd=str(root),
            env={"PATH": "/bin"},
            sys_path0=None,
            warm_args=["tests"],
            settings=DaemonSettings(debounce=debounce, learn_imports=False),
        )
        self.sup = Supervisor(config, lambda _on_base_death: self)

    # -- LayerSource ---------------------------------------------------------------------

    def renew_base(self) -> None:
        self.renewals += 1

    def base_for_runs(self) -> None:
        return None

    def learn_libraries(self, libraries: list[tuple[str, str]], env_written: list[str]) -> None:
        pass

    def kill(self) -> None:
        pass

    def project(
        self, generation: int, env: dict[str, str], on_death: Callable[[FakeWarm], None]
    ) -> FakeWarm:
        fake = FakeWarm(generation, env, self.root, self.fail_next, on_death)
        fake.unsafe = self.unsafe_next
        self.fail_next = None
        self.spawned.append(fake)
        return fake

    @property
    def current(self) -> FakeWarm:
        wp = self.sup.slot.current
        assert isinstance(wp, FakeWarm)
        return wp
