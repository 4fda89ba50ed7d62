"""rootdir.py chooses the rootdir, ini file and arguments pytest itself chooses.

Each case builds a small tree in a temporary directory; pytest's own answer
comes from the installed pytest (``get_config`` + ``Config.parse``, as the
``pytest`` command does, in a child process so nothing leaks into this one);
rootdir.determine must give the same rootdir, ini file, argument list and
``pythonpath``, or be Undecided where the case says so (and wherever pytest
fails before it has a rootdir). Run under pytest 8 and 9 (nox runs both).
The option table in pytest_cli.py is checked against the real parser, plugin
by plugin, and the argument splitting against pytest's parser on generated
command lines.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_fastcollect import cmdline, pytest_cli, rootdir

VERSION = rootdir.installed_pytest_version()
assert VERSION is not None
PYTEST9 = VERSION >= (9, 0)

TOOL_INI = '[tool.pytest.ini_options]\naddopts = "-q"\n'
PYTEST_INI = "[pytest]\n"


class Case:
    def __init__(
        self,
        id: str,
        files: dict[str, str],
        args: list[str],
        cwd: str = ".",
        env: dict[str, str] | None = None,
        undecided: bool = False,
        when: bool = True,
    ) -> None:
        self.id = id
        self.files = files
        self.args = args
        self.cwd = cwd
        self.env = env or {}
        self.undecided = undecided
        self.when = when


CASES = [
    Case("ini-in-cwd", {"pytest.ini": PYTEST_INI, "t/test_a.py": ""}, ["-q"]),
    Case("ini-in-parent-of-cwd", {"pytest.ini": PYTEST_INI, "t/d/test_a.py": ""}, [], cwd="t/d"),
    Case(
        "pyproject-one-level-down-via-args",
        {"pkg/pyproject.toml": TOOL_INI, "pkg/tests/test_x.py": ""},
        ["-q", "pkg/tests/test_x.py"],
    ),
    Case(
        "node-id",
        {"pkg/pytest.ini": PYTEST_INI, "pkg/tests/test_x.py": ""},
        ["pkg/tests/test_x.py::test_a", "pkg/tests/test_x.py::C::test_b[1-2]"],
    ),
    Case(
        "nonexistent-args",
        {"pytest.ini": PYTEST_INI, "pkg/pytest.ini": PYTEST_INI},
        ["pkg/nope.py", "gone/"],
    ),
    Case(
        "common-ancestor-of-several-args",
        {"tox.ini": "[pytest]\n", "a/tests/t.py": "", "b/tests/t.py": "", "a/setup.cfg": ""},
        ["a/tests/t.py", "b/tests"],
    ),
    Case(
        "config-file-c",
        {"pytest.ini": PYTEST_INI, "other/custom.ini": "[pytest]\naddopts = -x\n"},
        ["-c", "other/custom.ini"],
    ),
    Case(
        "config-file-long-equals",
        {"pytest.ini": PYTEST_INI, "other/custom.cfg": "[tool:pytest]\naddopts = -x\n"},
        ["--config-file=other/custom.cfg", "-q"],
    ),
    Case(
        "config-file-toml",
        {"other/custom.toml": "[tool.pytest.ini_options]\naddopts = '-x'\n"},
        ["-c", "other/custom.toml"],
    ),
    Case(
        "config-file-unknown-suffix",
        {"pytest.ini": PYTEST_INI, "other/conf.txt": "hello\n"},
        ["-c", "other/conf.txt"],
        undecided=VERSION >= (9, 2),
    ),
    Case("config-file-dev-null", {"pytest.ini": PYTEST_INI, "t/x.py": ""}, ["-c", "/dev/null"]),
    Case(
        "config-file-missing",
        {"pytest.ini": PYTEST_INI},
        ["-c", "missing.ini"],
        undecided=True,
    ),
    Case("rootdir-option", {"pytest.ini": PYTEST_INI, "sub/x": ""}, ["--rootdir=sub"]),
    Case("rootdir-option-separate", {"pytest.ini": PYTEST_INI, "sub/x": ""}, ["--rootdir", "sub"]),
    Case(
        "rootdir-env-var",
        {"pytest.ini": PYTEST_INI, "sub/x": ""},
        ["--rootdir=$MYROOT/sub"],
        env={"MYROOT": "{root}"},
    ),
    Case("rootdir-missing", {"pytest.ini": PYTEST_INI}, ["--rootdir=nope"], undecided=True),
    Case(
        "rootdir-in-PYTEST_ADDOPTS",
        {"pytest.ini": PYTEST_INI, "sub/x": ""},
        ["-q"],
        env={"PYTEST_ADDOPTS": "--rootdir sub -x"},
    ),
    Case(
        "paths-in-PYTEST_ADDOPTS",
        {"pkg/pytest.ini": PYTEST_INI, "pkg/t.py": ""},
        [],
        env={"PYTEST_ADDOPTS": "'pkg/t.py'"},
    ),
    Case(
        "pyproject-without-pytest-section",
        {"pkg/pyproject.toml": "[project]\nname = 'x'\n", "pkg/tests/t.py": ""},
        ["pkg/tests"],
    ),
    Case(
        "pyproject-without-section-under-an-ini",
        {"tox.ini": "[pytest]\n", "pkg/pyproject.toml": "[project]\nname = 'x'\n", "pkg/t.py": ""},
        ["pkg/t.py"],
    ),
    Case(
        "setup-cfg",
        {"setup.cfg": "[metadata]\nname = x\n\n[tool:pytest]\naddopts = -rA\n", "t/x.py": ""},
        ["t"],
    ),
    Case("setup-cfg-without-section", {"setup.cfg": "[metadata]\nname = x\n", "t/x.py": ""}, ["t"]),
    Case(
        "setup-cfg-pytest-section",
        {"setup.cfg": "[pytest]\naddopts = -x\n", "t/x.py": ""},
        ["t"],
        undecided=True,
    ),
    Case("tox-ini", {"tox.ini": "[tox]\n\n[pytest]\naddopts = -v\n", "t/x.py": ""}, ["t/x.py"]),
    Case("tox-ini-without-section", {"tox.ini": "[tox]\nenvlist = py\n", "t/x.py": ""}, ["t/x.py"]),
    Case("setup-py-fallback", {"setup.py": "", "pkg/t/x.py": ""}, ["pkg/t/x.py"]),
    Case("no-config-at-all", {"pkg/t/x.py": ""}, ["pkg/t/x.py"]),
    Case("hidden-pytest-ini-empty", {".pytest.ini": "", "t/x.py": ""}, ["t"]),
    Case("hidden-pytest-ini", {".pytest.ini": "[pytest]\naddopts = -q\n", "t/x.py": ""}, ["t"]),
    Case(
        "pytest-toml",
        {"pytest.toml": '[pytest]\naddopts = ["-q"]\n', "pytest.ini": "", "t/x.py": ""},
        ["t"],
    ),
    Case(
        "pyproject-native-toml",
        {"pyproject.toml": '[tool.pytest]\naddopts = ["-q", "-x"]\n', "t/x.py": ""},
        ["t"],
    ),
    Case(
        "pythonpath-ini",
        {"pytest.ini": "[pytest]\npythonpath = src . ../up\n", "t/x.py": ""},
        ["t"],
    ),
    Case(
        "pythonpath-pyproject",
        {"pkg/pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['src', '.']\n"},
        ["pkg"],
    ),
    Case(
        "value-looks-like-a-path-k",
        {"pytest.ini": PYTEST_INI, "tests/pytest.ini": PYTEST_INI},
        ["-k", "tests"],
    ),
    Case(
        "value-looks-like-a-path-junitxml",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI, "sub/out.xml": ""},
        ["--junitxml", "sub/out.xml"],
    ),
    Case(
        "value-looks-like-a-path-m-p-W",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["-m", "sub", "-W", "sub", "-p", "sub", "-o", "sub=1"],
    ),
    Case(
        "short-option-with-attached-value",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["-ksub", "-rA", "sub"],
    ),
    Case(
        "short-cluster-ending-in-a-value-option",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["-vxk", "sub"],
    ),
    Case(
        "optional-value-debug",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["--debug", "sub"],
    ),
    Case(
        "unknown-option-value-counts-as-path",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["--cov", "sub", "--some-plugin-flag"],
    ),
    Case(
        "blocked-plugin-options-become-unknown",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["-p", "no:cacheprovider", "--lfnf", "sub"],
    ),
    Case(
        "blocked-plugin-breaks-a-cluster",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["-pno:terminal", "-vk", "sub"],
    ),
    Case(
        "blocking-in-PYTEST_ADDOPTS-does-not-count",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["--lfnf", "all", "sub/x"],
        env={"PYTEST_ADDOPTS": "-p no:cacheprovider"},
    ),
    Case(
        "addopts-from-the-ini",
        {"pytest.ini": "[pytest]\naddopts = -p no:cacheprovider --tb=short 'a b'\n"},
        ["-q"],
        env={"PYTEST_ADDOPTS": "-x"},
    ),
    Case("essential-plugin-blocked", {"pytest.ini": PYTEST_INI}, ["-p", "no:main"], undecided=True),
    Case("value-missing", {"pytest.ini": PYTEST_INI}, ["-q", "-k"], undecided=True),
    Case("flag-with-value", {"pytest.ini": PYTEST_INI}, ["--exitfirst=1"], undecided=True),
    Case("bad-cluster", {"pytest.ini": PYTEST_INI}, ["-qZ"], undecided=True),
    Case("negative-number-as-value", {"pytest.ini": PYTEST_INI}, ["-k", "-1", "--maxfail", "-2"]),
    Case(
        "double-dash",
        {"pytest.ini": PYTEST_INI, "sub/pytest.ini": PYTEST_INI},
        ["--", "sub"],
        undecided=True,
    ),
    Case(
        "args-file",
        {"pytest.ini": PYTEST_INI, "args.txt": "-q\n"},
        ["@args.txt"],
        undecided=VERSION >= (8, 2),
    ),
    Case("short-option-equals", {"pytest.ini": PYTEST_INI}, ["-k=foo"], undecided=True),
    Case(
        "override-addopts",
        {"pytest.ini": "[pytest]\naddopts = -x\n"},
        ["-o", "addopts=-v"],
        undecided=True,
    ),
    Case("bad-ini", {"pytest.ini": "no section\n"}, [], undecided=True),
    Case("bad-toml", {"pyproject.toml": "[tool.pytest.ini_options\n"}, [], undecided=True),
    Case(
        "bad-PYTEST_ADDOPTS", {"pytest.ini": ""}, [], env={"PYTEST_ADDOPTS": "-k"}, undecided=True
    ),
]

DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from _pytest.config import get_config

    out = []
    for case in json.loads(sys.stdin.read()):
        os.chdir(case["cwd"])
        saved_env, saved_path = dict(os.environ), list(sys.path)
        os.environ.update(case["env"])
        result = {}
        try:
            args = list(case["args"])
            config = get_config(list(args))
            try:
                config.parse(args)
            except BaseException as exc:  # unknown plugin options fail after the rootdir
                result["error"] = type(exc).__name__
            if getattr(config, "_rootpath", None) is not None:
                result["rootdir"] = str(config.rootpath)
                result["inifile"] = str(config.inipath) if config.inipath else None
                result["args"] = args
                result["pythonpath"] = [str(p) for p in config.getini("pythonpath")]
        except BaseException as exc:
            result["error"] = type(exc).__name__
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            sys.path[:] = saved_path
        out.append(result)
    print(json.dumps(out))
    """
)


Answers = dict[str, tuple[Case, Path, dict[str, Any]]]


def _expand(text: str, root: Path) -> str:
    return text.replace("{root}", str(root))


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Answers:
    """Each case's tree, and pytest's own answer for it (one child process for all)."""
    built = []
    for case in CASES:
        root = tmp_path_factory.mktemp(case.id)
        for rel, text in case.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        built.append((case, root))
    payload = [
        {
            "cwd": str(root / case.cwd),
            "args": case.args,
            "env": {k: _expand(v, root) for k, v in case.env.items()},
        }
        for case, root in built
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {case.id: (case, root, res) for (case, root), res in zip(built, results, strict=True)}


@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.when])
def test_same_as_pytest(
    answers: Answers,
    case_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case, root, theirs = answers[case_id]
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, _expand(value, root))
    ours = rootdir.determine(case.args, cwd=str(root / case.cwd))
    if case.undecided:
        assert isinstance(ours, rootdir.Undecided), (ours, theirs)
        return
    if "rootdir" not in theirs:
        # pytest failed before it had a rootdir: a run it refuses must stay its own.
        assert isinstance(ours, rootdir.Undecided), (ours, theirs)
        return
    assert isinstance(ours, rootdir.Setup), (ours, theirs)
    assert ours.rootdir == theirs["rootdir"]
    assert ours.inifile == theirs["inifile"]
    assert ours.args == theirs["args"]
    assert ours.pythonpath == theirs["pythonpath"]


def test_the_table_has_cases_that_decide_and_cases_that_do_not() -> None:
    assert sum(c.undecided for c in CASES) >= 10
    assert sum(not c.undecided for c in CASES) >= 30


def test_the_pkg_case_is_rooted_in_pkg(answers: Answers) -> None:
    _, root, theirs = answers["pyproject-one-level-down-via-args"]
    assert theirs["rootdir"] == str(root / "pkg")


def test_unknown_option_values_count_as_paths_for_pytest_too(
    answers: Answers,
) -> None:
    """The finding the module relies on: before plugins load, ``--cov sub`` names a path."""
    _, root, theirs = answers["unknown-option-value-counts-as-path"]
    assert theirs["rootdir"] == str(root / "sub")
    _, root, theirs = answers["value-looks-like-a-path-k"]
    assert theirs["rootdir"] == str(root)


# --- the option table ------------------------------------------------------------------


def _real_options(args: list[str]) -> dict[str, int]:
    """Option string -> arity from the installed pytest's parser after ``get_config(args)``."""
    import argparse

    from _pytest.config import get_config

    config = get_config(list(args))
    parser = config._parser
    optparser = parser._getparser() if hasattr(parser, "_getparser") else parser.optparser
    found = {}
    for action in optparser._actions:
        if not action.option_strings:
            continue
        if action.nargs == 0:
            arity = pytest_cli.FLAG
        elif action.nargs is None:
            arity = pytest_cli.VALUE
        else:
            assert action.nargs == argparse.OPTIONAL, action
            arity = pytest_cli.OPTIONAL
        for option in action.option_strings:
            found[option] = arity
    return found


def test_option_table_matches_the_installed_pytest() -> None:
    assert VERSION is not None
    assert pytest_cli.known_options(VERSION) == _real_options([])


def _default_plugins() -> list[str]:
    from _pytest.config import default_plugins, essential_plugins

    return [p for p in default_plugins if p not in essential_plugins]


@pytest.mark.parametrize("plugin", _default_plugins())
def test_option_table_knows_which_plugin_owns_each_option(plugin: str) -> None:
    assert VERSION is not None
    blocked = cmdline.blocked_plugins(["-p", f"no:{plugin}"])
    assert pytest_cli.known_options(VERSION, blocked) == _real_options(["-p", f"no:{plugin}"])


def test_essential_plugins_are_the_installed_ones() -> None:
    from _pytest.config import essential_plugins

    assert set(essential_plugins) == pytest_cli.ESSENTIAL


# --- argument splitting against pytest's own parser ----------------------------------------

VOCABULARY = [
    *("-q", "-v", "-x", "-s", "-l", "-vx", "-qs", "-vk", "-xk", "-rA", "-ra", "-kfoo", "-mslow"),
    *("-k", "-m", "-r", "-p", "-c", "-o", "-W", "--tb", "--junitxml", "--rootdir", "--debug"),
    *("--cache-show", "--lfnf", "--maxfail", "--durations", "--basetemp", "--confcutdir"),
    *("--tb=short", "--debug=x.log", "--co", "--lf", "--pdb", "--strict-markers", "--sw"),
    *("--cov", "--cov=src", "-n", "--reruns", "--foo", "-Z", "--no-daemon", "--daemon-start"),
    *("tests", "sub", "a b", "x.py::t", "-1", "-2.5", "-", "no:cacheprovider", "no:terminal"),
    *("-pno:cacheprovider", "-p=no:x", "--exitfirst=1", "-qZ", "-x-v", "--config-file=c.ini"),
]
# Given up on purpose: '--', a short option with '=', and short-option
# clusters with an unknown letter, which Python 3.13 splits and older ones reject.
UNDECIDED_SHAPES = ("--", "-p=no:x", "-1x", "-qZ", "-x-v")
# Values pytest's parser rejects by type or choice: rootdir.py does not check
# values (such a run, handed off, fails in the daemon with the same message).
VALUE_ERRORS = ("invalid choice", "invalid int value", "invalid float value", "must be a")


class _ValueError(Exception):
    pass


_PARSERS: dict[tuple[str, ...], object] = {}


def _pytest_split(args: list[str]) -> tuple[list[str], dict[str, object]] | None:
    """Paths (arguments not starting with "-") and values as pytest's first parse sees them."""
    from _pytest.config import UsageError, get_config

    try:
        # get_config applies the -p no:NAME arguments; one parser per set of them.
        blocking = tuple(sorted(a for a in cmdline.plugin_args(args) if a.startswith("no:")))
        if blocking not in _PARSERS:
            _PARSERS[blocking] = get_config(list(args))._parser
        parser = _PARSERS[blocking]
        ns, unknown = parser.parse_known_and_unknown_args(list(args))  # type: ignore[attr-defined]
    except UsageError as exc:
        if any(text in str(exc) for text in VALUE_ERRORS):
            raise _ValueError(str(exc)) from exc
        return None
    positionals = [p for p in [*ns.file_or_dir, *unknown] if not p.startswith("-")]
    # pytest 9's --strict* flags also append to override_ini, which does not matter here.
    overrides = [o for o in ns.override_ini or () if not o.startswith("strict")] or None
    values = {"inifile": ns.inifilename, "rootdir": ns.rootdir, "override_ini": overrides}
    return sorted(positionals), values


def _generated_command_lines(count: int) -> Iterator[list[str]]:
    rng = random.Random(12)
    for _ in range(count):
        yield [rng.choice(VOCABULARY) for _ in range(rng.randint(1, 7))]


def test_argument_splitting_matches_pytests_parser() -> None:
    assert VERSION is not None
    mismatches = []
    decided = 0
    for args in _generated_command_lines(4000):
        try:
            theirs = _pytest_split(args)
        except _ValueError:
            continue
        try:
            known = pytest_cli.known_options(VERSION, cmdline.blocked_plugins(args))
            parsed = cmdline.parse(args, known, VERSION)
        except rootdir._GiveUp:
            if theirs is not None and not any(
                a in UNDECIDED_SHAPES or a.startswith("-p=") for a in args
            ):
                mismatches.append((args, "we gave up", theirs))
            continue
        if theirs is None:
            mismatches.append((args, "pytest fails", sorted(parsed.positionals)))
            continue
        decided += 1
        ours = (
            sorted(p for p in parsed.positionals if not p.startswith("-")),
            {
                "inifile": cmdline.last(parsed.values, "inifile"),
                "rootdir": cmdline.last(parsed.values, "rootdir"),
                "override_ini": parsed.values.get("override_ini"),
            },
        )
        if ours != theirs:
            mismatches.append((args, ours, theirs))
    assert not mismatches, "\n".join(map(str, mismatches[:20]))
    assert decided > 1000


# --- cost ---------------------------------------------------------------------------


def test_importing_it_imports_nothing_heavy() -> None:
    code = (
        "import sys; before = set(sys.modules)\n"
        "from pytest_fastcollect import rootdir\n"
        "rootdir.determine(['-q'])\n"
        "print(sorted(set(sys.modules) - before))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    added = set(eval(proc.stdout))
    heavy = {"pathlib", "typing", "dataclasses", "re", "shlex", "tomllib", "_pytest", "pytest"}
    assert not (added & heavy), added & heavy


# --- the TOML cache --------------------------------------------------------------------


def _same(a: rootdir.Setup | rootdir.Undecided, b: rootdir.Setup | rootdir.Undecided) -> bool:
    if isinstance(a, rootdir.Undecided) or isinstance(b, rootdir.Undecided):
        return type(a) is type(b)
    return (a.rootdir, a.inifile, a.args, a.pythonpath, a.options) == (
        b.rootdir,
        b.inifile,
        b.args,
        b.pythonpath,
        b.options,
    )


def test_cached_toml_gives_the_same_answers(
    answers: Answers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    for case_id, (case, root, _) in answers.items():
        monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
        for key, value in case.env.items():
            monkeypatch.setenv(key, _expand(value, root))
        cwd = str(root / case.cwd)
        plain = rootdir.determine(case.args, cwd=cwd)
        first = rootdir.determine(case.args, cwd=cwd, cache_dir=str(cache))
        again = rootdir.determine(case.args, cwd=cwd, cache_dir=str(cache))
        assert _same(plain, first) and _same(plain, again), case_id
        for key in case.env:
            monkeypatch.delenv(key, raising=False)
    assert list(cache.glob("toml-*.cache")), "no TOML file was cached"


def _cached_pyproject(tmp_path: Path, text: str) -> tuple[Path, Path]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(text)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    return root, cache


def test_the_cache_is_read_and_a_changed_file_is_parsed_again(tmp_path: Path) -> None:
    root, cache = _cached_pyproject(tmp_path, '[tool.pytest.ini_options]\naddopts = "-x"\n')
    setup = rootdir.determine([], cwd=str(root), cache_dir=str(cache))
    assert isinstance(setup, rootdir.Setup) and setup.args == ["-x"]
    (entry,) = cache.glob("toml-*.cache")
    # The cache is what is read: doctor it and the answer follows ...
    entry.write_text(entry.read_text().replace('"-x"', '"-v"'))
    setup = rootdir.determine([], cwd=str(root), cache_dir=str(cache))
    assert isinstance(setup, rootdir.Setup) and setup.args == ["-v"]
    # ... until the file changes, even to the same size and modification time.
    pyproject = root / "pyproject.toml"
    before = pyproject.stat()
    pyproject.write_text('[tool.pytest.ini_options]\naddopts = "-q"\n')
    os.utime(pyproject, ns=(before.st_atime_ns, before.st_mtime_ns))
    setup = rootdir.determine([], cwd=str(root), cache_dir=str(cache))
    assert isinstance(setup, rootdir.Setup) and setup.args == ["-q"]


def test_values_json_cannot_hold_are_not_cached(tmp_path: Path) -> None:
    root, cache = _cached_pyproject(
        tmp_path, '[tool.pytest.ini_options]\naddopts = "-x"\nwhen = 2024-01-01\n'
    )
    for _ in range(2):
        setup = rootdir.determine([], cwd=str(root), cache_dir=str(cache))
        assert isinstance(setup, rootdir.Setup) and setup.args == ["-x"]
    assert not list(cache.iterdir())


def test_without_a_cache_directory_nothing_is_written(tmp_path: Path) -> None:
    root, cache = _cached_pyproject(tmp_path, '[tool.pytest.ini_options]\naddopts = "-x"\n')
    assert isinstance(rootdir.determine([], cwd=str(root)), rootdir.Setup)
    assert not list(cache.iterdir())
