"""docs/ against the code: every exit code, log line, file, setting, field and check they list.

The tables in docs/reference.md are parsed and each row is looked up in the
code (and the other way round: what the code has, the tables list), so a
renamed log message or a new exit code cannot leave the docs behind.
"""

from __future__ import annotations

import ast
import os
import re
import stat
from pathlib import Path

import pytest

from pytest_fastcollect import configfiles, errors, paths, settings
from pytest_fastcollect.daemon_client import DaemonClient
from pytest_fastcollect.paths import ProjectFiles
from pytest_fastcollect.supervisor import health
from pytest_fastcollect.supervisor.run_workers import RunWorkers
from pytest_fastcollect.wire import protocol as p

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "pytest_fastcollect"
REFERENCE = (DOCS / "reference.md").read_text()


def table(doc: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading``."""
    start = doc.index(heading)
    rows = []
    for line in doc[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if not set(cells[0]) <= {"-", " "}:
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- exit codes ------------------------------------------------------------------------------


def test_exit_codes_match_the_code() -> None:
    rows = table(REFERENCE, "## Exit codes")
    documented = {row[0]: row for row in rows}
    numeric = {int(code) for code in documented if code.isdigit()}
    # Every code a verb can exit with is documented, and every documented
    # number is one of them or a run's 3.
    assert set(errors.Exit.codes().values()) | {3} == numeric
    for error in (errors.UsageError, errors.NoDaemon, errors.DaemonError, errors.RuntimeDirError):
        assert int(error.exit_code) in numeric, error
    # 3: a run cut off by the daemon or its warm process.
    assert 3 in numeric
    handoff = (SRC / "client" / "handoff.py").read_text()
    runs = (SRC / "supervisor" / "runs.py").read_text()
    assert "return 3" in handoff and "exit_code=3" in runs
    # 128+N: a run killed by a signal.
    assert "128+N" in documented and "128 - event.code" in runs
    assert "pytest's" in documented


def test_readme_verb_exit_codes_are_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    codes = {
        int(c)
        for c in re.findall(
            r"(?<![\w.])(\d)(?![\w.])", "".join(row[2] for row in table(readme, "### Verbs"))
        )
    }
    reference_codes = {int(row[0]) for row in table(REFERENCE, "## Exit codes") if row[0].isdigit()}
    assert codes <= reference_codes, codes - reference_codes


# --- log lines -------------------------------------------------------------------------------

LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
}


def log_calls() -> list[tuple[str, str, str]]:
    """(level, format string, file) of every logging call in the supervisor."""
    found = []
    for path in sorted((SRC / "supervisor").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.func.attr in LEVELS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append((LEVELS[node.func.attr], node.args[0].value, path.name))
    return found


def as_regex(fmt: str) -> re.Pattern[str]:
    parts = re.split(r"%[-+ #0]*\d*(?:\.\d+)?[sdfr]", fmt)
    return re.compile(".+".join(re.escape(part) for part in parts))


def documented_lines() -> list[tuple[str, str]]:
    """(level, message) for every message in the log table."""
    return [
        (row[1], message) for row in table(REFERENCE, "## Log") for message in code_spans(row[0])
    ]


def test_every_documented_log_line_is_logged_at_its_level() -> None:
    calls = log_calls()
    missing = [
        (level, message)
        for level, message in documented_lines()
        if not any(lv == level and as_regex(fmt).fullmatch(message) for lv, fmt, _ in calls)
    ]
    assert not missing, f"documented but not in the code (or at another level): {missing}"


def test_every_log_line_is_documented() -> None:
    documented = documented_lines()
    undocumented = [
        (level, fmt, name)
        for level, fmt, name in log_calls()
        if not any(lv == level and as_regex(fmt).fullmatch(msg) for lv, msg in documented)
    ]
    assert not undocumented, f"logged but not in docs/reference.md's Log table: {undocumented}"


# --- files, settings, fields, checks ---------------------------------------------------------


def test_runtime_directory_files(monkeypatch: pytest.MonkeyPatch) -> None:
    documented = set()
    for row in table(REFERENCE, "## The runtime directory"):
        documented.update(code_spans(row[0]))
    files = ProjectFiles(root=Path("/r"), directory=Path("/d"), key="KEY")
    for prop in ("socket", "lock", "state", "log"):
        assert getattr(files, prop).name in documented, prop
    assert f"{files.cache.name}/" in documented
    assert {"KEY.log.1", "KEY.log.5"} <= documented
    # Nothing documented that the code does not make.
    made = {getattr(files, x).name for x in ("socket", "lock", "state", "log")}
    made |= {f"{files.cache.name}/", *(f"KEY.log.{i}" for i in range(1, 6))}
    made.add(paths.xdist_record(f"{files.cache.name}", "ORDER"))
    # The TOML view cache: documented with HASH for the hex digest of the path.
    monkeypatch.setattr(configfiles, "cache_dir", "/d")
    toml = os.path.basename(configfiles._cache_file("/r/pyproject.toml") or "")
    assert re.fullmatch(r"toml-[0-9a-f]{24}\.cache", toml), toml
    made.add("toml-HASH.cache")
    assert documented <= made, documented - made
    assert "pytest-fastcollect-cache-" not in REFERENCE


def test_ini_settings() -> None:
    rows = {code_spans(row[0])[0]: row for row in table(REFERENCE, "## ini settings")}
    assert set(rows) == {s.name for s in settings.INI_SETTINGS}
    for s in settings.INI_SETTINGS:
        assert f"`{s.default}`" in rows[s.name][1], (s.name, rows[s.name][1])
        if s.kind in ("int", "float") and s.minimum:
            assert f"at least {s.minimum:g}" in rows[s.name][1], s.name
    levels = rows["daemon_log_level"][1]
    assert all(level in levels for level in settings.LOG_LEVELS)


def test_status_fields() -> None:
    rows = table(REFERENCE, "## Status fields")
    documented = {name for row in rows for name in code_spans(row[0])}
    assert documented == set(p.StatusResponse.model_fields) - {"kind", "request_id"}
    metrics = next(row for row in rows if row[0] == "`metrics`")[1]
    for field in p.Metrics.model_fields:
        assert f"`{field}`" in metrics, field
    reload = next(row for row in rows if row[0] == "`reload`")[1]
    for field in p.ReloadStats.model_fields:
        assert f"`{field}`" in reload, field
    state = next(row for row in rows if row[0] == "`state`")[1]
    assert {s.value for s in p.DaemonState} == set(code_spans(state))


def test_health_checks() -> None:
    facts = health.Facts(
        state=p.DaemonState.READY,
        state_detail="",
        socket_path="/s",
        warm_pid=1,
        fork_safe=True,
        fork_detail="",
        processes=[],
        metrics=p.Metrics(),
        pending_age=0.0,
        watcher="inotify",
        import_failures=0,
    )
    checks = health.checks(facts)
    # The core adds the parallel runs' check (supervisor/run_workers.py).
    checks["leaked_workers"] = RunWorkers("/d").check()
    rows = {code_spans(row[0])[0]: row for row in table(REFERENCE, "## Health checks")}
    assert set(rows) == set(checks)
    for name, check in checks.items():
        if rows[name][2]:
            assert rows[name][2] == check.severity, name


# --- api.md ----------------------------------------------------------------------------------


def test_is_daemon_running_on_a_directory_that_is_not_private(tmp_path: Path) -> None:
    """api.md says False (and that get_status raises); the code agrees."""
    open_dir = tmp_path / "rt"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    assert stat.S_IMODE(open_dir.stat().st_mode) & 0o077
    client = DaemonClient(open_dir / "x.sock")
    assert client.is_daemon_running() is False
    with pytest.raises(errors.RuntimeDirError):
        client.get_status()
    api = (DOCS / "api.md").read_text()
    section = api[api.index("### `is_daemon_running()") : api.index("### `get_status()")]
    assert "or the socket's directory is not private" in " ".join(section.split())
    assert "raises `RuntimeDirError` instead" not in section
