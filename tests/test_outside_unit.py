"""Project code outside the rootdir, in pieces: which modules count, which directories are watched.

No daemon here: the warm process's classification (``warm/loaded.py``), the
supervisor's choice of directories (``supervisor/outside.py``), the freshness
filter and the watcher with a made-up mount table. The end-to-end scenarios
are in test_never_stale_outside.py.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from pytest_fastcollect.supervisor import outside
from pytest_fastcollect.supervisor.freshness import FILE_CLOCK_SLACK_NS, Freshness
from pytest_fastcollect.supervisor.watcher import Watcher
from pytest_fastcollect.warm import loaded
from pytest_fastcollect.warm.learn import library_dirs


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _write(tmp_path / "proj" / "app" / "__init__.py")
    _write(tmp_path / "proj" / "app" / "core.py")
    _write(tmp_path / "lib" / "src" / "sib" / "__init__.py")
    _write(tmp_path / "lib" / "src" / "sib" / "sub" / "__init__.py")
    _write(tmp_path / "lib" / "src" / "sib" / "sub" / "leaf.py")
    _write(tmp_path / "ns" / "nsx" / "b.py")
    _write(tmp_path / "flat" / "toplevel.py")
    return tmp_path


def test_project_file_classification(tree: Path) -> None:
    root = str(tree / "proj")
    prefix = root + os.sep
    libs = library_dirs()
    site = next(d for d in libs if "site-packages" in d)

    def project(name: str, path: Path | str) -> bool:
        return loaded.is_project_file(name, os.path.realpath(path), prefix, libs)

    assert project("app.core", tree / "proj" / "app" / "core.py")
    assert project("sib.sub.leaf", tree / "lib" / "src" / "sib" / "sub" / "leaf.py")
    assert project("nsx.b", tree / "ns" / "nsx" / "b.py")
    # The standard library and installed packages are not project code...
    assert not project("os", os.__file__)
    assert not project("pytest", pytest.__file__)
    assert not project("some_pkg", os.path.join(site, "some_pkg.py"))
    # ... nor is a site directory that site.addsitedir added (not in getsitepackages()).
    other_site = _write(tree / "env" / "lib" / "site-packages" / "dep.py")
    assert not project("dep", other_site)
    # The plugin's own modules, __main__ and files that are not there.
    assert not project("pytest_fastcollect.plugin", tree / "flat" / "toplevel.py")
    assert not project("__main__", tree / "flat" / "toplevel.py")
    assert not project("gone", tree / "flat" / "gone.py")
    # Under the rootdir, a site-packages (a project-local venv) is still not project code.
    venv_file = _write(tree / "proj" / ".venv" / "lib" / "site-packages" / "x.py")
    assert not project("x", venv_file)


def test_project_modules_sees_a_module_loaded_from_outside(tree: Path) -> None:
    sys.path.insert(0, str(tree / "lib" / "src"))
    try:
        import sib.sub.leaf  # noqa: F401

        found = dict(loaded.project_modules(str(tree / "proj")))
    finally:
        sys.path.remove(str(tree / "lib" / "src"))
        for name in ("sib.sub.leaf", "sib.sub", "sib"):
            sys.modules.pop(name, None)
    assert found["sib.sub.leaf"] == os.path.realpath(
        tree / "lib" / "src" / "sib" / "sub" / "leaf.py"
    )
    assert found["sib"] == os.path.realpath(tree / "lib" / "src" / "sib" / "__init__.py")


def test_project_modules_judges_a_new_module_object_again(tmp_path: Path) -> None:
    # Verdicts are remembered per module object: one imported again from
    # elsewhere under the same name is judged by its new file.
    root, other = tmp_path / "proj", tmp_path / "other"
    for d in (root, other):
        d.mkdir()
        (d / "twin_mod.py").write_text("X = 1\n")
    try:
        sys.path.insert(0, str(root))
        __import__("twin_mod")
        first = dict(loaded.project_modules(str(root)))
        sys.path[0] = str(other)
        del sys.modules["twin_mod"]
        __import__("twin_mod")
        second = dict(loaded.project_modules(str(root)))
        third = dict(loaded.project_modules(str(root)))
    finally:
        sys.path.remove(sys.path[0])
        sys.modules.pop("twin_mod", None)
    assert first["twin_mod"] == os.path.realpath(root / "twin_mod.py")
    assert second["twin_mod"] == third["twin_mod"] == os.path.realpath(other / "twin_mod.py")


def test_watch_dirs(tree: Path) -> None:
    root = str(tree / "proj")
    files = [
        str(tree / "proj" / "app" / "core.py"),
        str(tree / "lib" / "src" / "sib" / "sub" / "leaf.py"),
        str(tree / "lib" / "src" / "sib" / "__init__.py"),
        str(tree / "ns" / "nsx" / "b.py"),
        str(tree / "flat" / "toplevel.py"),
    ]
    assert outside.watch_dirs(files, root) == {
        # The topmost package, recursively: new modules of it are seen too.
        str(tree / "lib" / "src" / "sib"): True,
        # A namespace portion and a top-level module: their directory only.
        str(tree / "ns" / "nsx"): False,
        str(tree / "flat"): False,
    }


def test_mount_type_takes_the_longest_mountpoint() -> None:
    mounts = [("/", "ext4"), ("/mnt", "tmpfs"), ("/mnt/share", "nfs4"), ("/mnt/sharetwo", "xfs")]
    assert outside.mount_type("/home/x", mounts) == "ext4"
    assert outside.mount_type("/mnt/share/lib", mounts) == "nfs4"
    assert outside.mount_type("/mnt/sharetwo/lib", mounts) == "xfs"
    assert outside.mount_type("/mnt/other", mounts) == "tmpfs"


def test_network_and_huge_directories_are_only_swept(tree: Path) -> None:
    lib = str(tree / "lib" / "src" / "sib")
    assert outside.why_not_watched(lib, True, [("/", "ext4")]) is None
    reason = outside.why_not_watched(lib, True, [("/", "ext4"), (str(tree / "lib"), "nfs4")])
    assert reason is not None and "network file system (nfs4)" in reason
    reason = outside.why_not_watched(lib, True, [("/", "ext4")], max_dirs=0)
    assert reason is not None and "more than 0 directories" in reason
    # Its own files only: the number of subdirectories does not matter.
    assert outside.why_not_watched(lib, False, [("/", "ext4")], max_dirs=0) is None


def test_watcher_reports_what_it_cannot_watch(tree: Path) -> None:
    events: list[set[str]] = []
    watcher = Watcher(str(tree / "proj"), events.append)
    watcher.start()
    try:
        mounts = [("/", "ext4"), (str(tree / "ns"), "nfs4")]
        unwatched = watcher.watch_outside(
            {str(tree / "lib" / "src" / "sib"): True, str(tree / "ns" / "nsx"): False}, mounts
        )
        assert list(unwatched) == [str(tree / "ns" / "nsx")]
        assert "nfs4" in unwatched[str(tree / "ns" / "nsx")]
        watched, still_unwatched = watcher.outside_state()
        assert watched == [str(tree / "lib" / "src" / "sib")]
        assert still_unwatched == unwatched
        leaf = tree / "lib" / "src" / "sib" / "sub" / "leaf.py"
        leaf.write_text("X = 1\n")
        deadline = time.monotonic() + 10
        while not any(str(leaf) in batch for batch in events):
            assert time.monotonic() < deadline, events
            time.sleep(0.02)
    finally:
        watcher.stop()


def test_freshness_takes_changes_of_loaded_code_outside_the_root(tree: Path) -> None:
    quiet: list[bool] = []
    heard: list[dict[str, bool]] = []
    records = Freshness(
        str(tree / "proj"), 30.0, on_quiet=lambda: quiet.append(True), on_outside=heard.append
    )
    leaf = os.path.realpath(tree / "lib" / "src" / "sib" / "sub" / "leaf.py")
    b = os.path.realpath(tree / "ns" / "nsx" / "b.py")
    # Past the file clock's slack: files saved just before the record count as changed.
    time.sleep(2 * FILE_CLOCK_SLACK_NS / 1e9)
    records.record({leaf: "sib.sub.leaf", b: "nsx.b"}, [], since_ns=time.time_ns())
    assert records.pending() == set()
    assert heard == [{os.path.dirname(os.path.dirname(leaf)): True, os.path.dirname(b): False}]
    # Inside the watched package, new files count; beside a namespace portion, files only.
    new_in_package = str(tree / "lib" / "src" / "sib" / "new.py")
    records.note({new_in_package, str(tree / "ns" / "nsx" / "deeper" / "c.py"), str(tree / "x.py")})
    assert records.pending() == {new_in_package}
    records.note({b})
    assert records.pending() == {new_in_package, b}
    # The same set again is not news.
    records.record({leaf: "sib.sub.leaf", b: "nsx.b"}, [], since_ns=time.time_ns())
    assert len(heard) == 1
    records.stop()


def test_sweep_finds_an_edit_outside_the_root(tree: Path) -> None:
    records = Freshness(str(tree / "proj"), 30.0, on_quiet=lambda: None)
    leaf = os.path.realpath(tree / "lib" / "src" / "sib" / "sub" / "leaf.py")
    time.sleep(2 * FILE_CLOCK_SLACK_NS / 1e9)
    records.record({leaf: "sib.sub.leaf"}, [], since_ns=time.time_ns())
    assert records.pending() == set()
    with open(leaf, "w") as fh:
        fh.write("CHANGED = True\n")
    records.sweep()
    assert records.pending() == {leaf}
    records.stop()
