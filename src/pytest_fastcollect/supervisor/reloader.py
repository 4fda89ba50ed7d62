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

from pytest_fastcollect.supervisor import changes, effects
from pytest_fastcollect.supervisor.lifecycle import WarmState, loaded_files, next_order_id
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
    elif not decision.changed and not decision.conftests:
        what = "nothing to do (content unchanged, or files no warm process has loaded)"
    else:
        files = {*decision.changed.values(), *decision.conftests}
        broken = f"; does not compile: {_rel(decision.broken, root)}" if decision.broken else ""
        what = f"re-import the closure of {_rel(files, root)}{broken}"
    log.debug("Reload decision for %s: %s", _rel(paths, root), what)


def _log_closure(seeds: dict[str, str], closure: list[str], tests: set[str]) -> None:
    """DEBUG: the reverse-dependency closure of the changed modules, and its size."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    shown = sorted(closure)[:12]
    more = f" and {len(closure) - len(shown)} more" if len(closure) > len(shown) else ""
    log.debug(
        "Closure of %s: %d modules (%d test modules): %s%s",
        ", ".join(sorted(seeds)),
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
    decision = changes.classify(paths, slot.root, wp.modules, slot.records.hashes(), wp.conftests)
    if decision.replace is None:
        decision.reason = _conftest_edit_blocker(held, decision) or ""
        if decision.reason:
            decision.replace = changes.Replace.CONFTEST
    _log_decision(paths, decision, slot.root)
    if decision.replace is not None:
        held.replace(decision.replace, decision.reason, notify, changed=paths)
        return
    if not decision.changed and not decision.conftests:
        # Unchanged content (a touch, a save without edits) or files nothing has
        # loaded: refresh stats only. A standby prepared for the next run read the
        # file system around its arguments; it is prepared again.
        slot.records.refresh(paths)
        wp.ask(wm.PingOrder(id=next_order_id(), changed=True))
        return
    _reload(held, decision, notify)


def _conftest_edit_blocker(held: Held, decision: changes.Decision) -> str | None:
    """Why an added, changed or deleted conftest needs a new warm process, or None."""
    wp = held.current
    assert wp is not None
    for path, new in sorted(decision.conftests.items()):
        old = held.slot.records.conftest_profile(path) if path in wp.conftests else effects.EMPTY
        reason = effects.reloadable(old, new)
        log.debug("Conftest %s: %s", path, reason or "reloadable")
        if reason is not None:
            return f"{os.path.relpath(path, held.slot.root)} changed: {reason}"
    return None


def _closure(held: Held, decision: changes.Decision) -> tuple[list[str], dict[str, str]]:
    """The modules to purge, and module name -> file for them."""
    wp = held.current
    assert wp is not None
    by_name = {name: path for path, name in wp.modules.items()}
    seeds = dict(decision.changed)
    # A conftest outside a package is module "conftest" to whoever imports it
    # by that name (``from conftest import X``); pytest itself imports it
    # afresh in every session, so only those importers need a purge.
    synthetic = False
    plain = [c for c in decision.conftests if c not in wp.modules]
    if plain:
        synthetic = "conftest" not in by_name
        seeds["conftest"] = by_name.setdefault("conftest", plain[0])
    closure = held.slot.graph.reverse_closure(seeds, by_name)
    if synthetic:
        closure.remove("conftest")
        del by_name["conftest"]
    _log_closure(seeds, closure, {n for n in closure if by_name[n] in wp.test_files})
    return closure, by_name


def _closure_conftest_blocker(
    held: Held, closure: list[str], by_name: dict[str, str]
) -> str | None:
    """A conftest imports a changed module: a re-import is exact only for a plain one."""
    for name in closure:
        path = by_name[name]
        if os.path.basename(path) != "conftest.py":
            continue
        old = held.slot.records.conftest_profile(path)
        if old is None or old.effect is not None or old.has_early_hooks:
            if old is None:
                why = "its imported version is unknown"
            elif old.effect is not None:
                why = f"it runs code at import ({old.effect})"
            else:
                why = "it has hooks that run before test modules are imported"
            rel = os.path.relpath(path, held.slot.root)
            return f"{rel} imports a changed module and {why}"
    return None


def _reload(held: Held, decision: changes.Decision, notify: Callable[[str], None] | None) -> None:
    slot = held.slot
    wp = held.current
    assert wp is not None
    closure, by_name = _closure(held, decision)
    blocker = _closure_conftest_blocker(held, closure, by_name)
    if blocker is not None:
        changed = set(decision.changed.values()) | set(decision.conftests)
        held.replace(changes.Replace.CONFTEST, blocker, notify, changed=changed)
        return
    for path in decision.changed.values():
        changes.remove_stale_bytecode(path)
    files = sorted({*decision.changed.values(), *decision.conftests})
    rels = ", ".join(os.path.relpath(x, slot.root) for x in files)
    if notify is not None and closure:
        notify(f"reloading {len(closure)} module(s) (changed: {rels})")
    # Test modules and conftests are imported again by the next run (through
    # pytest, so assertions are rewritten) and by a later re-warm; project
    # modules now.
    by_pytest = [n for n in closure if by_name[n] in wp.test_files or _is_conftest(by_name[n])]
    reimport = [] if decision.broken else [n for n in closure if n not in by_pytest]
    started = time.perf_counter()
    since_ns = time.time_ns()
    if closure:
        with held.doing(p.DaemonState.RELOADING):
            event = wp.ask(wm.ReloadOrder(id=next_order_id(), modules=closure, reimport=reimport))
        if not isinstance(event, wm.Reloaded):
            held.replace(changes.Replace.CRASH, "the warm process died while reloading", notify)
            return
        if event.failure is not None:
            held.replace(_FAILURE_TO_REPLACE[event.failure], event.reason, notify)
            return
        wp.update_modules(event)
    # Accepted conftest edits are re-read (hash and stat) but keep the profile
    # of the version the warm process ran: that is what a later edit is
    # compared with.
    slot.isolation.reloaded([by_name[n] for n in reimport])
    reread = {by_name[n] for n in closure} | set(decision.conftests)
    slot.records.record(loaded_files(wp), wp.test_files, since_ns, reread=reread)
    elapsed = (time.perf_counter() - started) * 1000
    held.bump_generation(wp)
    slot.stats.count_reload(
        files=[os.path.relpath(x, slot.root) for x in files],
        modules=len(closure),
        duration_ms=elapsed,
        action="reimport" if not decision.broken else "purge (syntax error)",
    )
    log.info("Reloaded %d modules in %.1f ms (changed: %s)", len(closure), elapsed, rels)
    tests = [by_name[n] for n in by_pytest if by_name[n] in wp.test_files]
    if slot.listener is not None:
        slot.listener.reloaded(wp, tests if not decision.broken else [])


def _is_conftest(path: str) -> bool:
    return os.path.basename(path) == "conftest.py"
