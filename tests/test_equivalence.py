"""Warm runs equal cold runs: per-test outcomes, exit codes, report and cache state.

One daemon serves a copy of tests/data/equiv_project for the whole module.
Each case is a sequence of pytest invocations (``--lf`` needs a run before
it); the sequence runs cold (``--no-daemon``) from an empty ``.pytest_cache``,
then through the daemon from an empty cache, and every step must give the
same exit code, the same ``-rA`` outcome of every node id, the same report
(addresses and timings normalised) and the same cache files. A step marked
warm must also really have been served by the daemon (its ``runs`` counter
moved and it printed no notice); a step marked cold must print the one-line
notice that says why, not be served (the counter stays), and still give the
cold result. Further down: --junitxml files, opting out, interpreter options
and start-up environment variables, stdio, and ``python -m pytest``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import (
    Project,
    Result,
    daemon_metrics,
    daemon_runs,
    daemon_status,
    equiv_copy,
    standby_mode,
    wait_until,
)

NOTICE = "pytest-fastcollect:"
OUTCOME_LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.*?)(?: - .*)?$")


@dataclass(frozen=True)
class Case:
    id: str
    steps: tuple[tuple[str, ...], ...]
    # "warm": served by the daemon, no notice. "cold": the daemon declines with a
    # notice containing ``notice`` and the run happens cold.
    mode: str = "warm"
    notice: str = ""
    env: dict[str, str] = field(default_factory=dict)
    add_ra: bool = True
    cwd: str = ""  # relative to the project root


def one(args: str, **kw: object) -> Case:
    return Case(
        id=kw.pop("id", args) or "plain", steps=(tuple(args.split()) if args else (),), **kw
    )  # type: ignore[arg-type]


CASES = [
    one("", id="plain"),
    Case("k-expr", (("-k", "param or flavour"),)),
    Case("k-not", (("-k", "not fails and not error"),)),
    Case("k-nothing", (("-k", "no_such_test_anywhere"),)),
    Case("m-slow", (("-m", "slow"),)),
    Case("m-not", (("-m", "not slow and not smoke"),)),
    one("-x"),
    one("--maxfail=2"),
    Case("lf", ((), ("--lf",), ("--lf", "-k", "param"))),
    Case("lf-none-failed", (("-k", "passes"), ("--lf",))),
    Case("ff", ((), ("--ff", "-v"))),
    Case("nf", ((), ("--nf", "-v"))),
    Case("sw", (("--sw",), ("--sw",), ("--sw", "--sw-skip"))),
    one("-q"),
    one("-qq"),
    one("-v"),
    one("-vv"),
    one("-s"),
    one("--tb=short"),
    one("--tb=line"),
    one("--tb=no"),
    one("--tb=native"),
    one("-l"),
    Case("ra-only", (("-ra",),), add_ra=False),
    one("--co"),
    one("--co -q"),
    Case("W-error", (("-W", "error"),), mode="cold", notice="differs from the warm process"),
    Case(
        "W-ignore",
        (("-W", "ignore::UserWarning"),),
        mode="cold",
        notice="differs from the warm process",
    ),
    Case("importmode", (("--import-mode=importlib",),), mode="cold", notice="importmode differs"),
    one("-p no:cacheprovider"),
    Case("durations", (("--durations=3",),), env={"EQUIV_SLEEP": "1"}),
    Case("o-python_functions", (("-o", "python_functions=check_*"),)),
    Case("o-xfail_strict", (("-o", "xfail_strict=true"),)),
    Case("o-console_output_style", (("-o", "console_output_style=count"),)),
    Case("conftest-option", (("--equiv-flavour=spicy",),)),
    Case("conftest-option-separate", (("--equiv-flavour", "spicy", "-k", "flavour"),)),
    Case("node-ids", (("tests/test_basic.py::test_param", "tests/test_more.py::TestGroup"),)),
    Case("file-and-dir", (("tests/test_async.py", "tests"),)),
    Case("addopts-env", ((),), env={"PYTEST_ADDOPTS": "-p no:randomly -v --tb=line"}),
    Case(
        "scenarios-subset",
        (("scenarios/test_interactive.py::test_ok", "scenarios/test_state.py"),),
        env={"EQUIV_THREAD_FILE": "/dev/null"},
    ),
    Case("subdir", (("-q",), ("--lf", "test_basic.py")), cwd="tests"),
    one("--fixtures"),
    one("--fixtures-per-test"),
    one("--markers"),
    one("--setup-plan"),
    one("--setup-show"),
    one("--setup-only"),
    Case("cache-clear", ((), ("--cache-clear", "--lf"))),
    Case(
        "deselect",
        (("--deselect", "tests/test_basic.py::test_fails", "--deselect", "tests/test_more.py"),),
    ),
    one("--capture=sys"),
    one("--capture=tee-sys"),
    one("--log-cli-level=INFO"),
    one("-p no:warnings"),
    one("--runxfail"),
    Case("r-fE", (("-r", "fE"),), add_ra=False),
    one("--color=yes"),
    one("--code-highlight=no --color=yes"),
    one("--full-trace"),
    one("--showlocals"),
    one("--no-header --no-summary"),
    one("--show-capture=no"),
    one("--strict-markers"),
    one("--strict"),
    one("-W error::UserWarning", mode="cold", notice="differs from the warm process"),
    one("--import-mode=append", mode="cold", notice="importmode differs"),
    one("--assert=plain", mode="cold", notice="assertmode differs"),
    one("-c other.ini", mode="cold", notice="inifile differs"),
    one("--noconftest", mode="cold", notice="noconftest differs"),
    one("--confcutdir=tests"),
    one("--basetemp=.equiv-basetemp"),
    one("--maxfail=1 -v"),
    one("--exitfirst --sw"),
    one("--collect-only -k param"),
    one("--trace-config"),
    one("--debug=/dev/null"),
    # pytest runs that a test starts, in the worker's process and in a subprocess.
    one("scenarios/test_nested.py", id="nested-pytest"),
]


def normalise(text: str) -> str:
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    text = re.sub(r"^(\s+)\d{12,}(\s+: )", r"\1ID\2", text, flags=re.M)  # id() as a plugin name
    # The summary line is centred: a 10 s run pads it one "=" less than a 9 s run.
    text = re.sub(r"^=+ (.* in \d+\.\d+s( \(\d+:\d\d:\d\d\))?) =+$", r"== \1 ==", text, flags=re.M)
    text = re.sub(r" in \d+\.\d+s( \(\d+:\d\d:\d\d\))?", " in Ns", text)
    text = re.sub(r"^\d+\.\d+s (setup|call|teardown) ", r"Ns \1 ", text, flags=re.M)
    text = re.sub(r"cache from \d+:\d\d:\d\d ago", "cache from N ago", text)
    text = re.sub(r"pytest-of-([^/]+)/pytest-\d+/", r"pytest-of-\1/pytest-N/", text)
    return text


def without_notices(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(NOTICE))


def outcomes(stdout: str) -> list[tuple[str, str]]:
    found = []
    for line in stdout.splitlines():
        m = OUTCOME_LINE.match(line)
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def cache_state(root: Path) -> dict[str, object]:
    base = root / ".pytest_cache" / "v"
    if not base.is_dir():
        return {}
    state = {}
    for path in sorted(base.rglob("*")):
        if path.is_file():
            # stepwise stamps the time it wrote the file: not a difference in state.
            text = re.sub(r'"\d{4}-\d\d-\d\dT[\d:.]+"', '"DATE"', path.read_text())
            state[str(path.relative_to(base))] = json.loads(text)
    return state


def clear_cache(root: Path) -> None:
    shutil.rmtree(root / ".pytest_cache", ignore_errors=True)


@dataclass
class Step:
    result: Result
    cache: dict[str, object]
    runs_before: int
    runs_after: int
    standby: int = 0  # of the runs served, how many through a standby worker
    fresh: int = 0  # and how many forked afresh
    prepared: int = 0  # of the standby runs, how many through one prepared for the command


def run_sequence(proj: Project, case: Case, warm: bool) -> list[Step]:
    clear_cache(proj.root)
    steps = []
    for args in case.steps:
        full = [*args, "-rA"] if case.add_ra else list(args)
        before = daemon_metrics(proj)
        run = proj.pytest if warm else proj.cold
        result = run(*full, env=case.env, cwd=proj.root / case.cwd)
        after = daemon_metrics(proj)
        steps.append(
            Step(
                result,
                cache_state(proj.root),
                before["runs"],
                after["runs"],
                after["standby_runs"] - before["standby_runs"],
                after["fresh_runs"] - before["fresh_runs"],
                after["prepared_runs"] - before["prepared_runs"],
            )
        )
    return steps


def assert_path(warm: Step, where: str) -> None:
    """The standby mode the suite runs with decides how each warm run was forked."""
    mode = standby_mode()
    if mode == "always":
        assert (warm.standby, warm.fresh) == (1, 0), f"not through a standby worker: {where}"
        assert warm.prepared == 1, f"the standby was not prepared for the run: {where}"
    elif mode == "off":
        assert (warm.standby, warm.fresh) == (0, 1), f"a standby worker with it off: {where}"
    else:
        assert warm.standby + warm.fresh == 1, where


def assert_equivalent(cold: Step, warm: Step, case: Case, index: int) -> None:
    where = f"{case.id} step {index}\n--- cold ---\n{cold.result}\n--- warm ---\n{warm.result}"
    assert cold.runs_after == cold.runs_before, f"the cold run reached the daemon: {where}"
    assert NOTICE not in cold.result.stderr, where
    notices = [ln for ln in warm.result.stderr.splitlines() if ln.startswith(NOTICE)]
    if case.mode == "warm":
        assert warm.runs_after == warm.runs_before + 1, f"the daemon did not serve the run: {where}"
        assert notices == [], f"unexpected notice: {where}"
        assert_path(warm, where)
    else:
        assert warm.runs_after == warm.runs_before, f"the daemon served a declined run: {where}"
        assert len(notices) == 1 and case.notice in notices[0], (
            f"expected one notice about {case.notice!r}: {where}"
        )
        assert "running without the daemon" in notices[0], where
    assert warm.result.returncode == cold.result.returncode, where
    assert outcomes(warm.result.stdout) == outcomes(cold.result.stdout), where
    assert normalise(warm.result.stdout) == normalise(cold.result.stdout), where
    assert normalise(without_notices(warm.result.stderr)) == normalise(cold.result.stderr), where
    assert warm.cache == cold.cache, where


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_as_cold(equiv_daemon: Project, case: Case) -> None:
    cold = run_sequence(equiv_daemon, case, warm=False)
    warm = run_sequence(equiv_daemon, case, warm=True)
    for index, (c, w) in enumerate(zip(cold, warm, strict=True)):
        assert_equivalent(c, w, case, index)
    # The matrix is only meaningful if it exercised every outcome somewhere.
    if case.id == "plain":
        kinds = {kind for kind, _ in outcomes(cold[0].result.stdout)}
        assert kinds == {"PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"}, str(
            cold[0].result
        )
        assert cold[0].result.returncode == 1


def test_expected_exit_codes(equiv_daemon: Project) -> None:
    """The exit codes the matrix compares are the interesting ones, not all 1."""
    cases = {
        ("-k", "passes"): 0,
        ("-k", "fails"): 1,
        ("-k", "no_such_test_anywhere"): 5,
        ("--no-such-option",): 4,
        ("tests/no_such_file.py",): 4,
    }
    for args, expected in cases.items():
        before = daemon_runs(equiv_daemon)
        warm = equiv_daemon.pytest(*args)
        cold = equiv_daemon.cold(*args)
        assert warm.returncode == cold.returncode == expected, f"{warm}\n{cold}"
        assert normalise(warm.stderr) == normalise(cold.stderr), f"{warm}\n{cold}"
        assert daemon_runs(equiv_daemon) == before + 1


def junit_cases(path: Path) -> list[tuple[str, str, str, str]]:
    root = ET.parse(path).getroot()
    found = []
    for tc in root.iter("testcase"):
        kind = "passed"
        message = ""
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                kind = child.tag
                message = child.get("message", "")
                break
        found.append(
            (tc.get("classname", ""), tc.get("name", ""), kind, re.sub(r"0x[0-9a-f]+", "", message))
        )
    return found


def junit_suite(path: Path) -> dict[str, str]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return {k: suite.get(k, "") for k in ("name", "errors", "failures", "skipped", "tests")}


@pytest.mark.parametrize(
    "extra",
    [(), ("-o", "junit_family=xunit1", "-o", "junit_suite_name=equiv")],
    ids=["default", "xunit1"],
)
def test_junitxml(equiv_daemon: Project, tmp_path: Path, extra: tuple[str, ...]) -> None:
    xml = tmp_path / "junit.xml"
    runs: dict[str, tuple[Result, list[tuple[str, str, str, str]], dict[str, str]]] = {}
    for mode in ("cold", "warm"):
        xml.unlink(missing_ok=True)
        before = daemon_runs(equiv_daemon)
        args = (f"--junitxml={xml}", *extra)
        result = equiv_daemon.cold(*args) if mode == "cold" else equiv_daemon.pytest(*args)
        assert daemon_runs(equiv_daemon) == before + (mode == "warm"), str(result)
        assert xml.exists(), str(result)
        runs[mode] = (result, junit_cases(xml), junit_suite(xml))
    (cold, cold_cases, cold_suite), (warm, warm_cases, warm_suite) = runs["cold"], runs["warm"]
    assert NOTICE not in warm.stderr, str(warm)
    assert warm.returncode == cold.returncode == 1
    assert len(cold_cases) > 20
    assert warm_cases == cold_cases
    assert warm_suite == cold_suite
    assert normalise(warm.stdout) == normalise(cold.stdout)


@pytest.mark.parametrize(
    "args,env,served",
    [
        (("--no-daemon",), {}, False),
        ((), {"PYTEST_FASTCOLLECT_DISABLE": "1"}, False),
        ((), {"PYTEST_FASTCOLLECT_DISABLE": "true"}, False),
        ((), {"PYTEST_FASTCOLLECT_DISABLE": "0"}, True),
        ((), {"PYTEST_FASTCOLLECT_DISABLE": ""}, True),
    ],
    ids=["no-daemon", "disable-1", "disable-true", "disable-0", "disable-empty"],
)
def test_opting_out_runs_cold(
    equiv_daemon: Project, args: tuple[str, ...], env: dict[str, str], served: bool
) -> None:
    reference = equiv_daemon.cold("-q", "tests/test_basic.py")
    before = daemon_runs(equiv_daemon)
    result = equiv_daemon.pytest(*args, "-q", "tests/test_basic.py", env=env)
    assert daemon_runs(equiv_daemon) == before + served, str(result)
    assert NOTICE not in result.stderr, str(result)
    assert result.returncode == reference.returncode == 1
    assert normalise(result.stdout) == normalise(reference.stdout)


# -- how the interpreter was started ------------------------------------------------------


FLAGS_TARGET = ("-rA", "scenarios/test_flags.py")


@pytest.mark.parametrize(
    "var,value",
    [("PYTHONOPTIMIZE", "1"), ("PYTHONINTMAXSTRDIGITS", "0")],
)
def test_interpreter_env_vars_are_honoured(own_equiv_daemon: Project, var: str, value: str) -> None:
    env = {var: value}
    cold_plain = own_equiv_daemon.cold(*FLAGS_TARGET)
    cold_env = own_equiv_daemon.cold(*FLAGS_TARGET, env=env)
    # The probe is valid: the variable changes an outcome cold.
    assert outcomes(cold_plain.stdout) != outcomes(cold_env.stdout)
    for expected, run_env in ((cold_env, env), (cold_plain, {})):
        # The first run with another value goes cold (waiting for a new warm
        # process would be slower) while one warms up with the run's environment.
        first = own_equiv_daemon.pytest(*FLAGS_TARGET, env=run_env)
        notices = [ln for ln in first.stderr.splitlines() if ln.startswith(NOTICE)]
        assert len(notices) == 1 and var in notices[0] and "restarting" in notices[0], str(first)
        assert outcomes(first.stdout) == outcomes(expected.stdout), f"{expected}\n{first}"
        wait_until(lambda: daemon_status(own_equiv_daemon)["state"] == "ready", 60, "ready")
        before = daemon_runs(own_equiv_daemon)
        warm = own_equiv_daemon.pytest(*FLAGS_TARGET, env=run_env)
        assert daemon_runs(own_equiv_daemon) == before + 1, str(warm)
        assert NOTICE not in warm.stderr, str(warm)
        assert warm.returncode == expected.returncode, f"{expected}\n{warm}"
        assert outcomes(warm.stdout) == outcomes(expected.stdout), f"{expected}\n{warm}"
        assert normalise(warm.stdout) == normalise(expected.stdout)


def python_m_pytest(proj: Project, *args: str, interp: tuple[str, ...] = ()) -> Result:
    return proj.command([sys.executable, *interp, "-m", "pytest", *args])


def test_python_m_pytest_same_as_cold(tmp_path: Path) -> None:
    """A daemon started with ``python -m pytest`` serves such runs, named as cold names them."""
    proj = equiv_copy(tmp_path / "proj")
    # pytest 9.1 names the program "python -m pytest"; older ones say "__main__.py".
    import _pytest.config

    prog = "python -m pytest" if hasattr(_pytest.config, "_get_prog_name") else "__main__.py"
    expected = {
        ("--no-such-option",): f"{prog}: error: unrecognized arguments",
        ("-s", "-q", "scenarios/test_stdio.py::test_argv0"): "pytest/__main__.py",
    }
    try:
        started = python_m_pytest(proj, "--daemon-start", "tests", "scenarios")
        assert started.returncode == 0, str(started)
        for args, text in expected.items():
            before = daemon_runs(proj)
            warm = python_m_pytest(proj, *args)
            assert daemon_runs(proj) == before + 1 and NOTICE not in warm.stderr, str(warm)
            cold = python_m_pytest(proj, "--no-daemon", *args)
            assert warm.returncode == cold.returncode, f"{cold}\n{warm}"
            assert normalise(warm.stdout) == normalise(cold.stdout), f"{cold}\n{warm}"
            assert normalise(warm.stderr) == normalise(cold.stderr), f"{cold}\n{warm}"
            assert text in warm.output, str(warm)
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


@pytest.mark.parametrize(
    "interp", [("-O",), ("-X", "int_max_str_digits=0"), ("-W", "error")], ids=["O", "X", "W"]
)
def test_interpreter_options_run_cold(tmp_path: Path, interp: tuple[str, ...]) -> None:
    """``python -O -m pytest``: the warm process (started without -O) cannot honour it."""
    proj = equiv_copy(tmp_path / "proj")
    try:
        started = python_m_pytest(proj, "--daemon-start", "tests", "scenarios")
        assert started.returncode == 0, str(started)
        before = daemon_runs(proj)
        plain = python_m_pytest(proj, *FLAGS_TARGET)
        assert daemon_runs(proj) == before + 1 and NOTICE not in plain.stderr, str(plain)
        cold = python_m_pytest(proj, "--no-daemon", *FLAGS_TARGET, interp=interp)
        warm = python_m_pytest(proj, *FLAGS_TARGET, interp=interp)
        notices = [ln for ln in warm.stderr.splitlines() if ln.startswith(NOTICE)]
        assert len(notices) == 1 and "without the daemon" in notices[0], str(warm)
        assert interp[0] in notices[0], str(warm)
        assert warm.returncode == cold.returncode, f"{cold}\n{warm}"
        assert outcomes(warm.stdout) == outcomes(cold.stdout), f"{cold}\n{warm}"
        assert normalise(warm.stdout) == normalise(cold.stdout)
    finally:
        proj.cleanup()
        shutil.rmtree(proj.runtime, ignore_errors=True)


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize("extra", [("-s", "-p", "no:logging"), ("--capture=tee-sys",), ()])
def test_stdio_same_as_cold(
    equiv_daemon: Project, tmp_path: Path, extra: tuple[str, ...], unbuffered: str
) -> None:
    """stdin content (no newline translation), the streams' settings, logging's last resort."""
    stdin_file = tmp_path / "stdin.txt"
    stdin_file.write_bytes(b"line one\nline two\r\n")
    env = {"PYTHONUNBUFFERED": unbuffered}
    results = []
    for warm in (False, True):
        with stdin_file.open("rb") as stdin:
            args = (*extra, "-rA", "scenarios/test_stdio.py")
            before = daemon_runs(equiv_daemon)
            run = equiv_daemon.pytest if warm else equiv_daemon.cold
            results.append(run(*args, stdin=stdin.fileno(), env=env))
            assert daemon_runs(equiv_daemon) == before + warm
    cold, warm = results
    assert NOTICE not in warm.stderr, str(warm)
    assert warm.returncode == cold.returncode, f"{cold}\n{warm}"
    assert outcomes(warm.stdout) == outcomes(cold.stdout), f"{cold}\n{warm}"
    assert normalise(warm.stdout) == normalise(cold.stdout)
    assert normalise(warm.stderr) == normalise(cold.stderr)
    if extra and extra[0] == "-s":
        assert "STDIN: 'line one\\nline two\\r\\n'" in warm.stdout
