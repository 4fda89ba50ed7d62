"""Which daemon a verb acts on, from where: transcripts (issue 11, items 5, 6 and 11).

- A verb run where the start ran, when the project's ini file is one level
  down, acts on that daemon (pytest computes another rootdir there), and
  names the candidates when there are several.
- A restart from a subdirectory warms what the start warmed: relative warm
  paths are taken from the directory they were given in.
- A start whose rootdir has no ini file and far more files than the warm
  paths is refused unless confirmed with --daemon-confirm.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import DEFAULT_INI, Project, daemon_status, kill_if_ours, make_project, record_of
from transcript import expect

TESTS = {
    "tests/test_a.py": "def test_a():\n    pass\n",
    "tests/test_b.py": "def test_b():\n    pass\n",
}


def _project_in(parent: Path, name: str, ini: bool = True) -> Path:
    root = parent / name
    (root / "tests").mkdir(parents=True)
    if ini:
        (root / "pytest.ini").write_text(DEFAULT_INI)
    for rel, text in TESTS.items():
        (root / rel).write_text(text)
    return root


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Project]:
    """A directory without an ini file, holding projects; one runtime dir for all of them.

    Teardown stops every daemon in that runtime dir (by its record), whatever the test did.
    """
    parent = tmp_path / "work"
    parent.mkdir()
    work = make_project(parent)
    try:
        yield work
    finally:
        for record_file in work.runtime.glob("*.json"):
            try:
                record = json.loads(record_file.read_text())
            except (OSError, ValueError):
                continue
            try:
                work.pytest("--daemon-stop", f"--rootdir={record['root']}", timeout=60)
            except subprocess.TimeoutExpired:
                pass
            kill_if_ours(int(record["pid"]))
        for pid in work.started_pids:
            kill_if_ours(pid)
        shutil.rmtree(work.runtime, ignore_errors=True)


def _in(work: Project, root: Path) -> Project:
    """The project at ``root``, sharing ``work``'s runtime dir and environment."""
    return Project(root=root, runtime=work.runtime, env=work.env)


def _start_from_parent(work: Project, name: str) -> Project:
    proj = _in(work, _project_in(work.root, name))
    started = work.pytest("--daemon-start", f"{name}/tests")
    assert started.returncode == 0, str(started)
    record = record_of(proj)
    assert record is not None, str(started)
    work.started_pids.append(int(record["pid"]))
    return proj


def test_verbs_from_the_directory_that_started_the_daemon(workdir: Project) -> None:
    """Issue 11.5: ``--daemon-start proj/tests`` then bare verbs in the same directory."""
    proj = _start_from_parent(workdir, "proj")
    record = record_of(proj)
    note = (
        f"pytest-fastcollect: no daemon serves {workdir.root}; acting on the one for "
        f"{proj.root} (started from {workdir.root})\n"
    )
    status = workdir.pytest("--daemon-status")
    assert status.returncode == 0 and status.stderr == note, str(status)
    assert status.stdout.startswith(f"pytest-fastcollect daemon for {proj.root}\n"), str(status)

    health = workdir.pytest("--daemon-health", "--daemon-json")
    assert health.returncode == 0 and health.stderr == note, str(health)
    assert json.loads(health.stdout)["pid"] == record["pid"]  # type: ignore[index]

    expect(
        proj,
        workdir.pytest("--daemon-stop"),
        0,
        record=record,
        stdout="pytest-fastcollect: stopped the daemon (pid {pid}) for {root}\n",
        stderr=note,
    )
    assert record_of(proj) is None
    expect(
        proj,
        workdir.pytest("--daemon-stop"),
        6,
        stderr=(
            f"pytest-fastcollect: error: no daemon running for {workdir.root}; "
            "start one with: pytest --daemon-start\n"
        ),
    )


def test_several_daemons_started_here_are_named_not_guessed(workdir: Project) -> None:
    """Issue 11.5: two candidates: the verb names both, acts on neither; --rootdir picks one."""
    one = _start_from_parent(workdir, "one")
    two = _start_from_parent(workdir, "two")
    pids = [record_of(p)["pid"] for p in (one, two)]  # type: ignore[index]
    result = workdir.pytest("--daemon-stop")
    expect(
        one,
        result,
        4,
        stderr=(
            f"pytest-fastcollect: error: no daemon serves {workdir.root}, and 2 daemons started "
            f"here serve projects below it: {one.root} (pid {pids[0]}, started from "
            f"{workdir.root}); {two.root} (pid {pids[1]}, started from {workdir.root}); run the "
            "command in the directory of the one you mean, or name its project with --rootdir=DIR\n"
        ),
    )
    assert record_of(one) is not None and record_of(two) is not None, "a daemon was stopped"
    stopped = workdir.pytest("--daemon-stop", "--rootdir=one")
    assert stopped.returncode == 0 and stopped.stderr == "", str(stopped)
    assert record_of(one) is None and record_of(two) is not None
    # One candidate left: a bare verb acts on it again.
    assert workdir.pytest("--daemon-status").returncode == 0


def test_restart_from_a_subdirectory_warms_what_the_start_warmed(project: Project) -> None:
    """Issue 11.6: relative warm paths are taken from the directory they were given in."""
    project.write(TESTS)
    assert project.start("tests/test_a.py").returncode == 0
    old = record_of(project)
    assert old is not None
    result = project.pytest("--daemon-restart", cwd=project.root / "tests")
    new = record_of(project)
    assert new is not None
    project.started_pids.append(int(new["pid"]))
    expect(
        project,
        result,
        0,
        stdout=f"""
        pytest-fastcollect: stopped the daemon (pid {old["pid"]}) for {{root}}
        pytest-fastcollect: daemon started for {{root}}
          pid:    {{pid}}
          socket: {{socket}}
          log:    {{log}}
          Pre-import complete: 1/1 modules in {{f}}s
    """,
    )
    assert daemon_status(project)["warm_paths"] == ["tests/test_a.py"]
    assert new["cwd"] == str(project.root)


def test_restart_from_the_parent_directory(workdir: Project) -> None:
    """Issue 11.5 for restart: the daemon is started again as it was, where it was."""
    proj = _start_from_parent(workdir, "proj")
    old = record_of(proj)
    result = workdir.pytest("--daemon-restart")
    new = record_of(proj)
    assert result.returncode == 0 and new is not None and old is not None, str(result)
    workdir.started_pids.append(int(new["pid"]))
    assert new["pid"] != old["pid"]
    assert f"stopped the daemon (pid {old['pid']}) for {proj.root}" in result.stdout
    assert "Pre-import complete: 2/2 modules" in result.stdout, str(result)
    assert new["warm_args"] == ["proj/tests"] and new["cwd"] == str(workdir.root)


# --- a rootdir far bigger than what is warmed (item 11) ---------------------------------------


def _big_rootdir(work: Project) -> Path:
    """``work`` (no ini file) holds 1,500 data files and a small project without an ini."""
    data = work.root / "data"
    data.mkdir()
    for i in range(1500):
        (data / f"f{i}.txt").write_text("x")
    return _project_in(work.root, "proj", ini=False)


REFUSED = (
    "pytest-fastcollect: error: the rootdir {root} has no pytest ini file and holds more than "
    "1,000 files, against 2 in the paths to warm up; a daemon would watch all of them; start it "
    "from the project's directory, give the project an ini file (pytest.ini), or confirm with "
    "--daemon-confirm\n"
)


def test_start_in_a_big_rootdir_without_ini_is_refused(workdir: Project) -> None:
    _big_rootdir(workdir)
    expect(workdir, workdir.pytest("--daemon-start", "proj/tests"), 4, stderr=REFUSED)
    assert list(workdir.runtime.glob("*.json")) == [], "a daemon was started"
    expect(
        workdir,
        workdir.pytest("--daemon-confirm"),
        4,
        stderr="ERROR: --daemon-confirm goes with --daemon-start or --daemon-restart\n\n",
    )


def test_start_in_a_big_rootdir_with_confirmation(workdir: Project) -> None:
    _big_rootdir(workdir)
    result = workdir.start("--daemon-confirm", "proj/tests")
    warning = REFUSED.replace("error: ", "warning: ").split("; start it")[0]
    warning = warning.format(root=workdir.root) + "; starting anyway (--daemon-confirm)\n"
    assert result.returncode == 0 and result.stderr == warning, str(result)
    assert "Pre-import complete: 2/2 modules" in result.stdout
    record = record_of(workdir)
    assert record is not None and record["root"] == str(workdir.root)


def test_small_rootdir_without_ini_starts_without_asking(workdir: Project) -> None:
    """No ini file is common in small projects: only size relative to the warm paths counts."""
    _project_in(workdir.root, "proj", ini=False)
    result = workdir.start("proj/tests")
    assert result.returncode == 0 and result.stderr == "", str(result)
