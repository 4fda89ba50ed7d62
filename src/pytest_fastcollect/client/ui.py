"""Human rendering of daemon answers (``--daemon-json`` prints the models instead).

Imports no pydantic at run time: the quick verbs (``fastverbs.py``) pass it
records decoded by ``wire/lite_verbs.py``, which have the models' attributes.
"""

from __future__ import annotations

import datetime
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pytest_fastcollect.wire import protocol as p


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1024 * 1024):.1f} MiB"


def _rel(path: str, root: str) -> str:
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def render_started(ready: p.StartReady, root: str) -> str:
    w = ready.warmup
    lines = [
        f"pytest-fastcollect: daemon started for {root}",
        f"  pid:    {ready.pid}",
        f"  socket: {ready.socket_path}",
        f"  log:    {ready.log_path}",
        f"  Pre-import complete: {w.imported}/{w.total} modules in {w.seconds:.2f}s",
    ]
    for failure in w.failures:
        lines.append(f"  Failed to import {_rel(failure.path, root)}: {failure.error}")
    return "\n".join(lines) + "\n"


def render_status(s: p.StatusResponse) -> str:
    m = s.metrics
    r = s.reload
    uptime = str(datetime.timedelta(seconds=int(s.uptime)))
    lines = [
        f"pytest-fastcollect daemon for {s.root}",
        f"  state:          {s.state.value} (generation {s.generation})",
        f"  pid:            {s.pid} (warm process: {s.warm_pid if s.warm_pid else '-'})",
        f"  uptime:         {uptime}",
        f"  socket:         {s.socket_path}",
        f"  log:            {s.log_path}",
        f"  versions:       pytest-fastcollect {s.versions.plugin}, protocol {s.versions.protocol}, "
        f"Python {s.versions.python}, pytest {s.versions.pytest}",
        f"  warm paths:     {' '.join(_rel(x, s.root) for x in s.warm_paths) or '-'}",
        f"  cached modules: {s.cached_modules} ({s.project_modules} from the project)",
        f"  warm-up:        {s.warmup.imported}/{s.warmup.total} modules in {s.warmup.seconds:.2f}s",
    ]
    for failure in s.warmup.failures:
        lines.append(f"    Failed to import {_rel(failure.path, s.root)}: {failure.error}")
    served = []
    if m.standby_runs:
        served.append(
            f"{m.standby_runs} from a standby worker, {m.prepared_runs} prepared for the command"
        )
    if m.runs_refused:
        served.append(f"{m.runs_refused} refused: ran cold")
    refused = f" ({'; '.join(served)})" if served else ""
    lines += [
        f"  learned:        {s.warmup.learned_imports} library imports from runs"
        f" ({s.warmup.unlearnable_imports} not learnable)",
        f"  requests:       {m.total_requests} total, {m.successful_requests} ok, {m.failed_requests} failed "
        f"(error rate {m.error_rate:.1%}); runs {m.runs}{refused}, collects {m.collects}",
        f"  watcher:        {r.watcher} ({', '.join(s.watched_paths) or 'nothing watched'}; "
        f"inotify watches: {s.inotify_watches if s.inotify_watches is not None else '-'})",
        *(f"  not watched:    {path} ({why})" for path, why in sorted(s.unwatched_paths.items())),
        f"  reloads:        {_reload_counts(r)}; pending changes: {r.pending_changes}",
    ]
    if r.last is not None:
        lines.append(f"  last reload:    {_last_reload(r.last)}")
    lines.append(f"  replacements:   {_replacements(r)}")
    lines.append("  processes:")
    lines.append(
        "    role        pid      RSS          PSS          CPU s   threads  fds   children  zombies"
    )
    for proc in s.processes:
        lines.append(
            f"    {proc.role:<10}  {proc.pid:<7}  {_mib(proc.rss_bytes):<11}  {_mib(proc.pss_bytes):<11}  "
            f"{proc.cpu_seconds:<6.2f}  {proc.threads:<7}  {proc.open_fds:<4}  {proc.children:<8}  {proc.zombies}"
        )
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _reload_counts(r: p.ReloadStats) -> str:
    """``3 (14 modules; mean 12.1 ms, p95 20.4 ms)``"""
    return f"{r.reloads} ({r.modules_reloaded} modules; mean {_ms(r.mean_ms)}, p95 {_ms(r.p95_ms)})"


def _last_reload(last: p.LastReload, now: float | None = None) -> str:
    """``05:07:26 (42 s ago), 11 modules in 12.0 ms (reimport; changed: shop/money.py)``"""
    when = datetime.datetime.fromtimestamp(last.at).strftime("%H:%M:%S")
    ago = max(0, int((time.time() if now is None else now) - last.at))
    return (
        f"{when} ({datetime.timedelta(seconds=ago)} ago), {last.modules} modules in "
        f"{last.duration_ms:.1f} ms ({last.action}; changed: {', '.join(last.files)})"
    )


def _replacements(r: p.ReloadStats) -> str:
    """``conftest 1, manual 2`` (count by reason), or ``none``."""
    return ", ".join(f"{k} {v}" for k, v in sorted(r.replacements.items())) or "none"


def render_health(h: p.HealthResponse) -> str:
    lines = [f"Status: {h.status.value}", "Checks:"]
    for name, check in h.checks.items():
        shown = check.display or str(check.value)
        mark = "" if check.ok else f"  <- {check.severity}"
        detail = f"  [{check.detail}]" if check.detail and not check.ok else ""
        lines.append(f"  - {name}: {shown}{mark}{detail}")
    r = h.reload
    lines += [
        "Reloads:",
        f"  reloads:         {_reload_counts(r)}",
        f"  last reload:     {_last_reload(r.last) if r.last is not None else 'none yet'}",
        f"  replacements:    {_replacements(r)}",
        f"  pending changes: {r.pending_changes}",
    ]
    return "\n".join(lines) + "\n"
