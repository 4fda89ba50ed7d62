"""A pytest plugin that watch mode loads (``-p``) into each of its runs: what ran, and how.

Runs inside the pytest session of a watch run (a run worker forked from the
warm process, or a cold pytest when the daemon refuses the run); it prints
nothing, so the output stays pytest's own. At the end of the session it
writes, to the file ``PYTEST_FASTCOLLECT_WATCH_REPORT`` names, the rootdir,
the session's argument paths, the ``python_files`` patterns, every collected
node id and every test's outcome (``failed`` if any phase failed), and the
node ids of collectors that failed (a module with a syntax error). Watch
mode learns from it which tests its arguments select and which failed.
Standard library and pytest only.
"""

from __future__ import annotations

import json
import os

import pytest

from pytest_fastcollect.settings import ENV_WATCH_REPORT


class Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.collected: dict[str, None] = {}  # ordered set
        self.outcomes: dict[str, str] = {}
        self.errors: list[str] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.errors.append(report.nodeid)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            self.collected[item.nodeid] = None

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        # Deselected (-k, -m) tests exist all the same: their last outcome stands.
        for item in items:
            self.collected[item.nodeid] = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collected[report.nodeid] = None  # with xdist the controller collects nothing
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and report.when in ("setup", "call"):
            self.outcomes.setdefault(report.nodeid, "skipped")
        elif report.when == "call":
            self.outcomes.setdefault(report.nodeid, "passed")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = session.config
        base = str(config.invocation_params.dir)
        data = {
            "rootdir": str(config.rootpath),
            "args": [os.path.join(base, a.split("::", 1)[0]) for a in config.args],
            "python_files": [str(p) for p in config.getini("python_files")],
            "collected": list(self.collected),
            "outcomes": self.outcomes,
            "errors": self.errors,
            "exitstatus": int(exitstatus),
        }
        tmp = f"{self.path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # the watch shows the run's output anyway; it only learns less


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(ENV_WATCH_REPORT)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller reports for its workers
    if path and not config.pluginmanager.has_plugin("fastcollect-watch-report"):
        config.pluginmanager.register(Recorder(path), "fastcollect-watch-report")
