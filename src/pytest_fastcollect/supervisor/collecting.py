"""Collects for the API (``DaemonClient.collect``): a worker forked to collect, or the cache.

Runs in the supervisor, one thread per connection. The API has no cold
collect to fall back on, so a collect waits for a warm process; results are
kept per generation and filters (``collects.py``) and a repeated collect
with nothing changed is answered without forking.
"""

from __future__ import annotations

import logging
import os
import time

import pydantic

from pytest_fastcollect.supervisor import changes
from pytest_fastcollect.supervisor.collects import CollectCache
from pytest_fastcollect.supervisor.lifecycle import WarmHandle, next_order_id
from pytest_fastcollect.supervisor.runs import abandon, fork_answer, umask
from pytest_fastcollect.supervisor.slot import Refused, WarmSlot
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire import warm as wm
from pytest_fastcollect.wire.framing import read_to_eof

log = logging.getLogger("pytest_fastcollect.daemon")

COLLECT_RESULT = pydantic.TypeAdapter(wm.CollectResult)


class Collects:
    def __init__(self, slot: WarmSlot, root: str, cache_dir: str) -> None:
        self.slot = slot
        self.root = root
        self.cache_dir = cache_dir
        self.collects = CollectCache(root, ignore=(cache_dir,))

    def collect(self, req: p.CollectRequest) -> p.CollectResponse | p.ErrorResponse:
        root = req.root if os.path.isabs(req.root) else os.path.join(self.root, req.root)
        targets = [
            x if os.path.isabs(x) else os.path.join(self.root, x) for x in req.filters.paths
        ] or [root]
        for target in [root, *targets]:
            if not self.inside_root(target.split("::", 1)[0]):
                return p.ErrorResponse(
                    request_id=req.request_id,
                    code=p.ErrorCode.OUTSIDE_ROOT,
                    message=f"{target} resolves outside the project root {self.root}",
                )
        if not req.filters.paths and os.path.realpath(root) == self.root:
            # The project root itself: collect as `pytest --collect-only` there
            # would, honouring testpaths.
            targets = []
        started = time.perf_counter()
        args = ["--collect-only", "-q", "-o", f"cache_dir={self.cache_dir}"]
        if req.filters.keyword:
            args += ["-k", req.filters.keyword]
        if req.filters.markers:
            args += ["-m", req.filters.markers]
        try:
            wp, result, cached = self._collect_in_worker([*args, *targets], targets or [root])
        except Refused as exc:
            return p.ErrorResponse(
                request_id=req.request_id, code=p.ErrorCode.NOT_READY, message=str(exc)
            )
        if result is None:
            return p.ErrorResponse(
                request_id=req.request_id,
                code=p.ErrorCode.INTERNAL,
                message="the collect worker produced no result (it crashed); see the daemon log",
            )
        return p.CollectResponse(
            request_id=req.request_id,
            node_ids=result.node_ids,
            count=len(result.node_ids),
            errors=[p.CollectError(nodeid=e.nodeid, message=e.message) for e in result.errors],
            exit_code=result.exit_code,
            collection_time=round(time.perf_counter() - started, 4),
            generation=wp.generation,
            cached=cached,
        )

    def _collect_in_worker(
        self, args: list[str], targets: list[str]
    ) -> tuple[WarmHandle, wm.CollectResult | None, bool]:
        """The result, from the cache (True) or from a worker forked for it."""
        r, w = os.pipe()
        try:
            # The API has no cold collect to fall back on: it waits for a warm-up.
            with self.slot.hold() as held:
                wp = held.fresh(lambda _m: None)
                stamp = self.slot.records.stamp
                hit = self.collects.get(args, wp.generation, stamp)
                if hit is not None:
                    os.close(r)
                    self.slot.stats.count_served("collect_cache")
                    log.debug("Collect %s answered from the cache", " ".join(args))
                    return wp, hit, True
                started_ns = time.time_ns()
                order = wm.ForkOrder(
                    id=next_order_id(),
                    mode="collect",
                    args=args,
                    cwd=self.root,
                    env=self.slot.warm_env,
                    umask=umask(),
                )
                box = wp.request(order, (w,))
        except Refused:
            os.close(r)
            raise
        finally:
            os.close(w)
        try:
            event = fork_answer(wp, box)
            if event is None and wp.unresponsive is not None:
                abandon(wp)
                raise Refused(
                    f"the warm process is not answering ({wp.unresponsive}); it is being replaced"
                )
            raw = read_to_eof(r) if isinstance(event, wm.Forked) else b""
            while event is not None and not isinstance(event, (wm.Exited, wm.Tainted)):
                event = box.get()
        finally:
            os.close(r)
            wp.done(order.id)
        if isinstance(event, wm.Tainted):
            self.slot.replace_soon(changes.Replace.TAINTED, event.reason)
        result = COLLECT_RESULT.validate_json(raw) if raw else None
        unchanged = self.slot.records.stamp == stamp and self.slot.generation == wp.generation
        if result is not None and isinstance(event, wm.Exited) and unchanged:
            self.collects.put(args, targets, result, wp.generation, stamp, started_ns)
        return wp, result, False

    def inside_root(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)
