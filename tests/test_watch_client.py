"""Watch mode's client pieces without a daemon: arguments, what runs teach, the report plugin."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pytest_fastcollect.client import watch_args as wa
from pytest_fastcollect.client.watch import Daemon, Knowledge, Plan, Watch
from pytest_fastcollect.wire import lite


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in (
        "tests/test_a.py",
        "tests/unit/test_b.py",
        "tests/unit/test_c.py",
        "other/test_d.py",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("def test_x():\n    pass\n")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "options", "paths"),
    [
        ([], [], []),
        (["-x", "tests"], ["-x"], ["tests"]),
        (["-k", "tests", "tests/unit"], ["-k", "tests"], ["tests/unit"]),
        (
            ["-ktests", "--tb=short", "tests/test_a.py::test_x"],
            ["-ktests", "--tb=short"],
            ["tests/test_a.py::test_x"],
        ),
        (
            ["-p", "no:randomly", "--maxfail", "2", "tests"],
            ["-p", "no:randomly", "--maxfail", "2"],
            ["tests"],
        ),
        # A plugin's option we do not know: its value names no path, so it stays an option.
        (["--ds", "settings.prod", "tests"], ["--ds", "settings.prod"], ["tests"]),
        (["--", "tests"], [], ["tests"]),
    ],
)
def test_split_args(tree: Path, args: list[str], options: list[str], paths: list[str]) -> None:
    assert wa.split_args(args, str(tree)) == (options, paths)


@pytest.mark.parametrize(
    ("options", "expression", "expected"),
    [
        (["-x"], None, ["-x"]),
        (["-x"], "total", ["-x", "-k", "total"]),
        (["-k", "cart", "-x"], "total", ["-x", "-k", "(cart) and (total)"]),
        (["-kcart"], "total", ["-k", "(cart) and (total)"]),
    ],
)
def test_name_filter_joins_the_users_k(
    options: list[str], expression: str | None, expected: list[str]
) -> None:
    assert wa.with_keyword(options, expression) == expected


def test_roots_narrow(tree: Path) -> None:
    real = os.path.realpath(tree)
    files = [
        os.path.join(real, r)
        for r in ("tests/test_a.py", "tests/unit/test_b.py", "other/test_d.py")
    ]
    roots = wa.Roots(["tests/unit", "tests/test_a.py::test_x"], str(tree))
    assert roots.narrow(files) == ["tests/test_a.py::test_x", "tests/unit/test_b.py"]
    assert not roots.contains(files[2])
    everything = wa.Roots([], str(tree))
    everything.set_default([os.path.join(real, "tests")])
    assert everything.narrow(files) == ["tests/test_a.py", "tests/unit/test_b.py"]


def report(root: Path, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "rootdir": str(root),
        "args": [str(root / "tests")],
        "python_files": ["test_*.py"],
        "collected": [],
        "outcomes": {},
        "errors": [],
        "exitstatus": 0,
    }
    base.update(fields)
    return base


def test_knowledge_follows_failures_across_runs(tree: Path) -> None:
    k = Knowledge()
    a, b = "tests/test_a.py::test_x", "tests/unit/test_b.py::test_x"
    k.learn(report(tree, collected=[a, b], outcomes={a: "failed", b: "passed"}), full=True)
    assert list(k.failing) == [a] and k.complete
    assert k.count([k.file_of(a), k.file_of(b)]) == 2
    # A run of b alone leaves a's failure standing.
    k.learn(
        report(tree, collected=[b], outcomes={b: "failed"}, args=[str(tree / "tests/unit")]),
        full=False,
    )
    assert list(k.failing) == [a, b]
    assert k.default_roots == [str(tree / "tests")]  # from the full run only
    # test_a.py fails to collect: its own id fails, and its test is no longer known to fail.
    k.learn(report(tree, errors=["tests/test_a.py"]), full=False)
    assert list(k.failing) == [b, "tests/test_a.py"]
    assert k.files[k.file_of(a)] == [] and k.count([k.file_of(a)]) is None
    # Fixed: it collects and passes.
    k.learn(report(tree, collected=[a], outcomes={a: "passed"}), full=False)
    assert list(k.failing) == [b]
    # Deleted: forgotten.
    os.unlink(tree / "tests/unit/test_b.py")
    k.forget_deleted()
    assert list(k.failing) == [] and k.file_of(b) not in k.files


def test_a_deselected_failure_stands(tree: Path) -> None:
    k = Knowledge()
    a = "tests/test_a.py::test_x"
    k.learn(report(tree, collected=[a], outcomes={a: "failed"}), full=True)
    k.learn(report(tree, collected=[a], outcomes={}), full=True)  # -k deselected it
    assert list(k.failing) == [a]


def watch_in(tree: Path, *args: str) -> Watch:
    w = Watch(list(args), str(tree), "pytest", lambda: Daemon("", []), ["pytest"], out=sys.stdout)
    return w


def answer(
    tree: Path, changed: list[str], files: list[str], everything: bool = False
) -> lite.Watched:
    data = {
        "epoch": "e",
        "cursor": 3,
        "changed": [str(tree / c) for c in changed],
        "generation": 2,
        "selection": {
            "everything": everything,
            "reasons": ["pyproject.toml changed (configuration)"] if everything else [],
            "test_files": [os.path.realpath(tree / f) for f in files],
        },
    }
    return lite.Watched(data)


def test_change_plans(tree: Path) -> None:
    tree = Path(os.path.realpath(tree))
    w = watch_in(tree, "-x", "tests")
    a, b, c = (
        "tests/test_a.py::test_x",
        "tests/unit/test_b.py::test_x",
        "tests/unit/test_c.py::test_x",
    )
    w.k.learn(report(tree, collected=[a, b, c], outcomes={a: "failed"}), full=True)
    plan = w.change_plan(answer(tree, ["app/b.py"], ["tests/unit/test_b.py"]))
    assert plan.label == "app/b.py changed: 1 test file, 1 test + 1 that failed"
    assert plan.args == ["-x", "tests/unit/test_b.py", "tests/test_a.py::test_x"]
    # Outside the arguments: not run.
    plan = w.change_plan(answer(tree, ["other/x.py"], ["other/test_d.py"]))
    assert plan.args == ["-x", "tests/test_a.py::test_x"]
    # The graph cannot tell: everything the arguments select.
    plan = w.change_plan(answer(tree, ["pyproject.toml"], [], everything=True))
    assert plan.full and plan.args == ["-x", "tests"]
    assert (
        plan.label == "pyproject.toml changed: all tests (pyproject.toml changed (configuration))"
    )
    # A test file no run has collected yet: everything (pytest decides what it collects).
    (tree / "tests/test_new.py").write_text("def test_n():\n    pass\n")
    plan = w.change_plan(answer(tree, ["tests/test_new.py"], ["tests/test_new.py"]))
    assert plan.full and "tests/test_new.py is new" in plan.label
    # A file filter narrows the selection and the failures.
    w.file_filter = "unit"
    plan = w.change_plan(answer(tree, ["app/b.py"], ["tests/unit/test_b.py"]))
    assert plan.args == ["-x", "tests/unit/test_b.py"]
    plan = w.change_plan(answer(tree, ["app/a.py"], []))
    assert plan.args is None and plan.label == "app/a.py changed: no test affected"


def test_key_plans(tree: Path) -> None:
    tree = Path(os.path.realpath(tree))
    w = watch_in(tree)
    a = "tests/test_a.py::test_x"
    assert w.key_plan("failed") is None  # nothing failed yet
    w.k.learn(report(tree, collected=[a], outcomes={a: "failed"}), full=True)
    failed = w.key_plan("failed")
    assert isinstance(failed, Plan) and failed.args == [a]
    w.name_filter, w.file_filter = "x", "a"
    every = w.key_plan("all")
    assert isinstance(every, Plan) and every.full and every.args == []
    assert w.name_filter is None and w.file_filter is None


def test_the_report_plugin(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_one.py").write_text(
        "import pytest\n\ndef test_ok():\n    pass\n\ndef test_bad():\n    assert 0\n\n"
        "@pytest.mark.skip\ndef test_skip():\n    pass\n\n"
        "@pytest.fixture\ndef broken():\n    raise RuntimeError\n\ndef test_err(broken):\n    pass\n"
    )
    (tmp_path / "test_two.py").write_text("def test_syntax(:\n")
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTEST_FASTCOLLECT_WATCH_REPORT"] = str(out)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "pytest_fastcollect.client.watch_report",
            "-p",
            "no:randomly",
            "--no-daemon",
            "-k",
            "not ok",
            "--continue-on-collection-errors",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["rootdir"] == str(tmp_path)
    assert data["python_files"] == ["test_*.py", "*_test.py"]
    assert data["errors"] == ["test_two.py"]
    assert data["outcomes"] == {
        "test_one.py::test_bad": "failed",
        "test_one.py::test_skip": "skipped",
        "test_one.py::test_err": "failed",
    }
    assert "test_one.py::test_ok" in data["collected"]  # deselected, but there
    assert data["exitstatus"] == 1


def test_watch_mode_imports_neither_pytest_nor_pydantic() -> None:
    """The thin client's watch runs this module: it must stay as light as the run path."""
    import subprocess

    code = (
        "import sys\n"
        "from pytest_fastcollect.client import thin, watch, watch_cli\n"
        "print(sorted(m for m in ('pytest', '_pytest', 'pydantic', 'psutil', 'watchdog') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
