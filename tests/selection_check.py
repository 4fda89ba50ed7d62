"""Never too few: the differential check of watch mode's selection.

Used by every never-stale scenario (tests/test_never_stale.py) and every fuzz
sequence (tests/fuzz_edits.py). After each edit it takes what changed on disk
(a content snapshot, before and after), asks the daemon which test files
that can affect (``DaemonClient.affected``, with the test files the previous
full run collected, as watch mode asks), and builds the run watch mode would
make: those files, their companions (files that import a module registering
into others) and every test that failed in the previous cycle, or
everything when the daemon cannot tell (or a test file is new, or the
environment changed). Then, against a full cold run of the project:

- each test of that run, run through the daemon alone, has the outcome the
  full run gives it (and every test of a selected file is there);
- every test outside the selection has the outcome it had in the previous
  cycle's full run.

A test missing from either full run (``-x`` stopped it, or its file is gone)
is not compared. A failure names the edit, the selection and both outputs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from fuzz_edits import Comparison, StaleBench
from helpers import Result

IGNORED = ("__pycache__", ".pytest_cache", "venv")
OUTCOMES = ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS")


def snapshot(*roots: Path) -> dict[str, str]:
    """Content hash of every file under ``roots`` (caches and virtualenvs left out)."""
    out = {}
    for path in (p for root in roots for p in root.rglob("*")):
        if path.is_file() and not any(part in IGNORED for part in path.parts):
            out[str(path)] = hashlib.blake2b(path.read_bytes(), digest_size=12).hexdigest()
    return out


def changed_between(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


@dataclass
class Run:
    """One run's outcomes by node id (a file's own id for a collection error)."""

    started: bool  # pytest got as far as a test session
    stopped: bool  # -x (or a maxfail) cut it short
    tests: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @staticmethod
    def of(result: Result) -> Run:
        import re

        run = Run(
            started="test session starts" in result.stdout,
            stopped="stopping after" in result.stdout or "Interrupted:" in result.stdout,
        )
        in_summary = False
        lines: dict[str, list[str]] = {}
        for line in result.stdout.splitlines():
            if re.match(r"^=+ short test summary info =+$", line):
                in_summary = True
                continue
            words = line.split(" ")
            if in_summary and words[0] in OUTCOMES and len(words) > 1:
                key = words[1] if words[0] != "SKIPPED" else line
                lines.setdefault(key, []).append(re.sub(r"0x[0-9a-fA-F]+", "0x?", line.rstrip()))
            elif in_summary and line.startswith(("=", "!")):
                in_summary = False
        run.tests = {k: tuple(sorted(v)) for k, v in lines.items()}
        return run

    def failing(self) -> list[str]:
        return [
            k for k, v in self.tests.items() if any(x.startswith(("FAILED", "ERROR")) for x in v)
        ]


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class SelectionCheck:
    def __init__(
        self,
        bench: StaleBench,
        args: tuple[str, ...] = ("tests",),
        roots: tuple[Path, ...] = (),
    ) -> None:
        """``roots``: where edits may happen (default: the project); project code
        outside the rootdir is edited where it lives."""
        self.bench = bench
        self.args = args
        self.roots = roots or (bench.root,)
        self.before = snapshot(*self.roots)
        self.env: dict[str, str] = {}
        self.full = Run.of(bench.cold(list(args), {}))
        self.cycles = 0
        self.partial = 0  # cycles that ran a part of the tests (not everything)

    def check(
        self, env: dict[str, str] | None = None, cold: Result | None = None
    ) -> Comparison | None:
        """After an edit: None if the selection held, else what went wrong.

        ``cold``: a cold run of ``self.args`` with ``env`` made already (reused).
        """
        env = dict(env or {})
        after = snapshot(*self.roots)
        changed, self.before = changed_between(self.before, after), after
        full_result = cold if cold is not None else self.bench.cold(list(self.args), env)
        full, previous = Run.of(full_result), self.full
        self.full = full
        self.cycles += 1
        env_changed, self.env = env != self.env, env
        if not changed and not env_changed:
            return self._outside(set(), set(), previous, full, full_result, changed)
        if not (full.started and previous.started) or env_changed:
            return None  # nothing to compare against, or everything reruns
        root = self.bench.root
        known = sorted(
            {str(root / file_of(k)) for k in previous.tests if (root / file_of(k)).exists()}
        )
        answer = self.bench.client().affected(changed, test_files=known)
        selected = [f for f in answer["test_files"] if os.path.exists(f)]
        if answer["everything"] or any(f not in known for f in selected):
            return None  # everything reruns
        self.partial += 1
        # As watch mode runs it: the affected files, the files whose imports
        # register into other modules (a full run imports them), what failed.
        along = [f for f in answer["companions"] if os.path.exists(f)]
        files = {os.path.relpath(f, root) for f in [*selected, *along]}
        reruns = [n for n in previous.failing() if file_of(n) not in files]
        targets = sorted(files) + [n for n in reruns if (root / file_of(n)).exists()]
        problems: list[str] = []
        alone = Result([], 0, "", "(nothing selected)")
        if targets:
            alone = self.bench.warm(targets, env)
            problems += self._alone(Run.of(alone), full, files, set(targets))
        outside = self._outside(files, set(reruns), previous, full, full_result, changed)
        if outside is not None:
            problems += outside.problems
        if not problems:
            return None
        header = [
            f"changed: {', '.join(os.path.relpath(c, root) for c in changed)}",
            f"selected: {', '.join(targets) or '(nothing)'}",
        ]
        return Comparison(targets, env, False, alone, full_result, header + problems)

    def _alone(self, alone: Run, full: Run, files: set[str], targets: set[str]) -> list[str]:
        problems = []
        for key, lines in sorted(alone.tests.items()):
            if key in full.tests and full.tests[key] != lines:
                problems.append(f"selected {key}: alone {lines}, in the full run {full.tests[key]}")
        if not (alone.stopped or full.stopped):
            for key in sorted(full.tests):
                wanted = file_of(key) in files or key in targets
                if wanted and key not in alone.tests:
                    problems.append(f"selected {key} did not run alone")
        return problems

    def _outside(
        self,
        files: set[str],
        reruns: set[str],
        previous: Run,
        full: Run,
        full_result: Result,
        changed: list[str],
    ) -> Comparison | None:
        if not (previous.started and full.started):
            return None
        problems = []
        for key in sorted(previous.tests.keys() & full.tests.keys()):
            if file_of(key) in files or key in reruns:
                continue
            if previous.tests[key] != full.tests[key]:
                problems.append(
                    f"MISS: {key} changed outcome outside the selection: "
                    f"{previous.tests[key]} -> {full.tests[key]}"
                )
        if not (previous.stopped or full.stopped):
            root = self.bench.root
            for key in sorted(full.tests.keys() ^ previous.tests.keys()):
                gone = key in previous.tests
                if (
                    file_of(key) in files
                    or key in reruns
                    or (gone and not (root / file_of(key)).exists())
                ):
                    continue
                problems.append(
                    f"MISS: {key} {'disappeared' if gone else 'appeared'} outside the selection"
                )
        if not problems:
            return None
        return Comparison(list(self.args), self.env, False, full_result, full_result, problems)
