"""Human rendering of daemon answers (``--daemon-json`` prints the models instead).

Imports no pydantic at run time: the quick verbs (``fastverbs.py``) pass it
records decoded by ``wire/lite_verbs.py``, which have the models' attributes.
"""

from __future__ import annotations

import datetime
import os

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
        f"  learned:        {s.warmup.learned_imports} library imports from runs"
        f" ({s.warmup.unlearnable_imports} not learnable)",
    ]
    for failure in s.warmup.failures:
        lines.append(f"    Failed to import {_rel(failure.path, s.root)}: {failure.error}")
    lines += [
        f"  requests:       {m.total_requests} total, {m.successful_requests} ok, {m.failed_requests} failed "
        f"(error rate {m.error_rate:.1%}); runs {m.runs}, collects {m.collects}",
        f"  watcher:        {r.watcher} ({', '.join(s.watched_paths) or 'nothing watched'}; "
        f"inotify watches: {s.inotify_watches if s.inotify_watches is not None else '-'})",
        *(f"  not watched:    {path} ({why})" for path, why in sorted(s.unwatched_paths.items())),
        f"  reloads:        {r.reloads} ({r.modules_reloaded} modules; mean "
        f"{'-' if r.mean_ms is None else f'{r.mean_ms:.1f} ms'}, p95 "
        f"{'-' if r.p95_ms is None else f'{r.p95_ms:.1f} ms'}); pending changes: {r.pending_changes}",
    ]
    if r.last is not None:
        when = datetime.datetime.fromtimestamp(r.last.at).strftime("%H:%M:%S")
        lines.append(
            f"  last reload:    {when}, {r.last.modules} modules in {r.last.duration_ms:.1f} ms "
            f"({r.last.action}; changed: {', '.join(r.last.files)})"
        )
    repl = ", ".join(f"{k} {v}" for k, v in sorted(r.replacements.items())) or "none"
    lines.append(f"  replacements:   {repl}")
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


def render_health(h: p.HealthResponse) -> str:
    lines = [f"Status: {h.status.value}", "Checks:"]
    for name, check in h.checks.items():
        shown = check.display or str(check.value)
        mark = "" if check.ok else f"  <- {check.severity}"
        detail = f"  [{check.detail}]" if check.detail and not check.ok else ""
        lines.append(f"  - {name}: {shown}{mark}{detail}")
    return "\n".join(lines) + "\n"
