"""Which daemon a verb acts on: the rootdir's, else the one started from here.

Runs in the client, for the ``--daemon-*`` verbs only (never on the run
path). pytest picks the rootdir from the command line, so a bare
``pytest --daemon-stop`` in the directory that ran ``pytest --daemon-start
proj/tests`` computes another rootdir than the start did (``proj`` holds the
ini file). When no daemon serves the rootdir, the daemons' records say where
each was started from and which project it serves: a verb acts on the one
started from this directory or serving a project below it, and names them
when there are several.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydantic

from pytest_fastcollect.client.transport import lock_is_free
from pytest_fastcollect.errors import UsageError
from pytest_fastcollect.paths import ProjectFiles, project_files, runtime_dir
from pytest_fastcollect.wire import protocol as p


class Found:
    """A live daemon: its files and its record."""

    __slots__ = ("files", "record")

    def __init__(self, files: ProjectFiles, record: p.DaemonRecord) -> None:
        self.files = files
        self.record = record

    def describe(self) -> str:
        return f"{self.record.root} (pid {self.record.pid}, started from {self.record.cwd or '?'})"


def live_daemons(directory: Path | None = None) -> list[Found]:
    """Every daemon in the runtime directory whose lock is held, by record."""
    directory = directory or runtime_dir()
    found = []
    try:
        records = sorted(directory.glob("*.json"))
    except OSError:
        return []
    for path in records:
        try:
            record = p.DaemonRecord.model_validate_json(path.read_bytes())
        except (OSError, pydantic.ValidationError):
            continue
        files = project_files(record.root, directory)
        if files.key != path.stem or lock_is_free(files):
            continue  # another project's leftovers, or stale
        found.append(Found(files, record))
    return sorted(found, key=lambda d: d.record.root)


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def started_here(invocation_dir: str, rootdir: str, directory: Path | None = None) -> list[Found]:
    """The daemons started from ``invocation_dir``, or serving a project below
    it or below ``rootdir``."""
    here = os.path.realpath(invocation_dir)
    root = os.path.realpath(rootdir)
    out = []
    for daemon in live_daemons(directory):
        record = daemon.record
        served = os.path.realpath(record.root)
        if (
            (record.cwd and os.path.realpath(record.cwd) == here)
            or _inside(served, here)
            or _inside(served, root)
        ):
            out.append(daemon)
    return out


def choose(files: ProjectFiles, invocation_dir: str) -> tuple[ProjectFiles, Found | None]:
    """The files of the daemon to act on, and the record that led there when it
    is not the rootdir's own. Raises UsageError when several would fit."""
    if not lock_is_free(files):
        return files, None  # the rootdir's daemon (answering or not)
    candidates = [
        d
        for d in started_here(invocation_dir, str(files.root), files.directory)
        if d.files != files
    ]
    if len(candidates) == 1:
        return candidates[0].files, candidates[0]
    if len(candidates) > 1:
        names = "; ".join(d.describe() for d in candidates)
        raise UsageError(
            f"no daemon serves {files.root}, and {len(candidates)} daemons started here "
            f"serve projects below it: {names}; run the command in the directory of the "
            "one you mean, or name its project with --rootdir=DIR"
        )
    return files, None
