"""Apply pending changes to the warm process: re-import a closure, or replace it.

Runs in the supervisor, under the reload lock (its one entry point takes a
``Held``). The decision itself is ``changes.classify`` (pure, table-tested);
this module carries it out: purge and re-import the reverse-dependency
closure of the changed modules in the warm process, or replace the process
when a re-import cannot be trusted.
"""

from __future__ import annotations

import logging
import os
import time

from pytest_fastcollect.supervisor import changes
from pytest_fastcollect.supervisor.lifecycle import WarmState, next_order_id
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire import warm as wm

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pytest_fastcollect.supervisor.slot import Held

log = logging.getLogger("pytest_fastcollect.daemon")

_FAILURE_TO_REPLACE = {
    wm.ReloadFailure.ALIVE: changes.Replace.ALIVE,
    wm.ReloadFailure.REIMPORT_ERROR: changes.Replace.RELOAD_ERROR,
    wm.ReloadFailure.PLAIN_IMPORT: changes.Replace.RELOAD_ERROR,
}


def _rel(paths: Iterable[str], root: str) -> str:
    return ", ".join(sorted(os.path.relpath(x, root) for x in paths))


def _log_decision(paths: set[str], decision: changes.Decision, root: str) -> None:
    """DEBUG: what a batch of changes leads to, and why."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    if decision.replace is not None:
        what = f"replace the warm process ({decision.replace.value}: {decision.reason})"
    elif not decision.changed:
        what = "nothing to do (content unchanged, or files no warm process has loaded)"
    else:
        broken = f"; does not compile: {_rel(decision.broken, root)}" if decision.broken else ""
        what = f"re-import the closure of {', '.join(sorted(decision.changed))}{broken}"
    log.debug("Reload decision for %s: %s", _rel(paths, root), what)


def _log_closure(decision: changes.Decision, closure: list[str], tests: set[str]) -> None:
    """DEBUG: the reverse-dependency closure of the changed modules, and its size."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    shown = sorted(closure)[:12]
    more = f" and {len(closure) - len(shown)} more" if len(closure) > len(shown) else ""
    log.debug(
        "Closure of %s: %d modules (%d test modules): %s%s",
        ", ".join(sorted(decision.changed)),
        len(closure),
        len(tests),
        ", ".join(shown),
        more,
    )


def apply_pending(held: Held, notify: Callable[[str], None] | None) -> None:
    slot = held.slot
    paths = slot.records.take_pending()
    if not paths:
        return
    wp = held.current
    if wp is None or wp.state is not WarmState.READY:
        if slot.state is p.DaemonState.FAILED:
            # The last warm-up failed (a broken conftest, say). Try again once
            # per change, which may be the fix, never once per run.
            reason = f"retrying after a change ({_rel(paths, slot.root)})"
            held.replace(changes.Replace.RETRY, reason, notify, changed=paths)
        return
    decision = changes.classify(paths, slot.root, wp.modules, slot.records.hashes())
    _log_decision(paths, decision, slot.root)
    if decision.replace is not None:
        held.replace(decision.replace, decision.reason, notify, changed=paths)
        return
    if not decision.changed:
        # Unchanged content (a touch, a save without edits): refresh stats only.
        slot.records.refresh(paths)
        return
    by_name = {name: path for path, name in wp.modules.items()}
    closure = slot.graph.reverse_closure(decision.changed, by_name)
    _log_closure(decision, closure, {n for n in closure if by_name[n] in wp.test_files})
    if any(n == "conftest" or n.endswith(".conftest") for n in closure):
        held.replace(
            changes.Replace.CONFTEST, "a conftest imports a changed module", notify, changed=paths
        )
        return
    for path in decision.changed.values():
        changes.remove_stale_bytecode(path)
    rels = ", ".join(os.path.relpath(x, slot.root) for x in decision.changed.values())
    if notify is not None:
        notify(f"reloading {len(closure)} module(s) (changed: {rels})")
    tests = [n for n in closure if by_name[n] in wp.test_files]
    # Project modules are imported again now; test modules by the next run
    # (through pytest, so assertions are rewritten) and by a later re-warm.
    reimport = [] if decision.broken else [n for n in closure if n not in tests]
    started = time.perf_counter()
    since_ns = time.time_ns()
    with held.doing(p.DaemonState.RELOADING):
        event = wp.ask(wm.ReloadOrder(id=next_order_id(), modules=closure, reimport=reimport))
    if not isinstance(event, wm.Reloaded):
        held.replace(changes.Replace.CRASH, "the warm process died while reloading", notify)
        return
    if event.failure is not None:
        held.replace(_FAILURE_TO_REPLACE[event.failure], event.reason, notify)
        return
    wp.update_modules(event)
    slot.records.record(wp.modules, wp.test_files, since_ns, reread={by_name[n] for n in closure})
    elapsed = (time.perf_counter() - started) * 1000
    held.bump_generation(wp)
    slot.stats.count_reload(
        files=[os.path.relpath(x, slot.root) for x in decision.changed.values()],
        modules=len(closure),
        duration_ms=elapsed,
        action="reimport" if not decision.broken else "purge (syntax error)",
    )
    log.info("Reloaded %d modules in %.1f ms (changed: %s)", len(closure), elapsed, rels)
    if tests and not decision.broken and slot.listener is not None:
        slot.listener.purged_tests(wp, [by_name[n] for n in tests])
