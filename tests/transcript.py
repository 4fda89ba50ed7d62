"""Transcript assertions: a command's exit code, and its stdout and stderr against templates.

Templates are literal text except for placeholders: ``{root}``, ``{socket}``,
``{log}``, ``{runtime}``, ``{pid}`` and ``{warm}`` (this daemon's values),
``{n}`` (an integer), ``{f}`` (a decimal) and ``{*}`` (anything on one
line). A template must match the whole output, line for line. Used by
tests/test_verbs.py and the other transcript tests.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from helpers import Project, Result, files_of, record_of

PLACEHOLDER = re.compile(r"\{(root|socket|log|pid|warm|runtime|n|f|\*)\}")


def pattern(template: str, values: dict[str, str]) -> str:
    out = []
    pos = 0
    for m in PLACEHOLDER.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        name = m.group(1)
        if name == "n":
            out.append(r"\d+")
        elif name == "f":
            out.append(r"\d+\.\d+")
        elif name == "*":
            out.append(r"[^\n]*")
        else:
            out.append(re.escape(values[name]))
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return "".join(out)


def expect(
    project: Project,
    result: Result,
    code: int,
    *,
    stdout: str = "",
    stderr: str = "",
    record: dict[str, Any] | None = None,
) -> None:
    """Assert a transcript: exit code, and stdout/stderr matching their templates in full.

    ``{pid}`` and ``{warm}`` come from ``record``, else from the daemon record now on disk.
    """
    record = record or record_of(project) or {}
    files = files_of(project)
    values = {
        "root": str(project.root),
        "socket": str(files.socket),
        "log": str(files.log),
        "runtime": str(project.runtime),
        "pid": str(record.get("pid", "?")),
        "warm": str(record.get("warm_pid", "?")),
    }
    problems = []
    if result.returncode != code:
        problems.append(f"exit {result.returncode}, expected {code}")
    for name, got, template in (
        ("stdout", result.stdout, stdout),
        ("stderr", result.stderr, stderr),
    ):
        want = textwrap.dedent(template).lstrip("\n")
        if not re.fullmatch(pattern(want, values), got):
            problems.append(
                f"{name} does not match its template:\n--- template ---\n{want}--- got ---\n{got}"
            )
    assert not problems, "\n".join(problems) + f"\n\n{result}"
