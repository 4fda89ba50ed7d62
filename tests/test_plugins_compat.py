"""Common plugins through the daemon: pytest-cov, -asyncio, -timeout, -randomly, -xdist.

Each either works through the daemon with the cold outcome, or (pytest-cov,
by design) runs cold after a one-line notice; never a wrong result.
"""

from __future__ import annotations

import re

import pytest

from helpers import Project, Result, daemon_runs

NOTICE = "pytest-fastcollect:"
OUTCOME_LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")


def outcomes(result: Result, sort: bool = False) -> list[tuple[str, str]]:
    found = [
        (m.group(1), m.group(2)) for m in map(OUTCOME_LINE.match, result.stdout.splitlines()) if m
    ]
    return sorted(found) if sort else found


def normalise(text: str) -> str:
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    return re.sub(r" in \d+\.\d+s( \(\d+:\d\d:\d\d\))?", " in Ns", text)


def warm_and_cold(
    proj: Project, *args: str, env: dict[str, str] | None = None, expect_warm: bool = True
) -> tuple[Result, Result]:
    cold = proj.cold(*args, env=env)
    before = daemon_runs(proj)
    warm = proj.pytest(*args, env=env)
    if expect_warm:
        assert daemon_runs(proj) == before + 1, str(warm)
        assert NOTICE not in warm.stderr, str(warm)
    return warm, cold


# -- pytest-cov ------------------------------------------------------------------------


def _covered_lines(data_file: str) -> dict[str, set[int]]:
    import coverage

    data = coverage.CoverageData(basename=data_file)
    data.read()
    return {f.rsplit("/", 1)[-1]: set(data.lines(f) or ()) for f in data.measured_files()}


def test_cov_runs_cold_with_a_notice_and_complete_data(equiv_daemon: Project) -> None:
    data_file = equiv_daemon.root / ".coverage"
    args = ("--cov=equivpkg", "--cov-report=term-missing", "-p", "no:randomly", "tests")
    reports = {}
    lines = {}
    for mode in ("cold", "daemon"):
        data_file.unlink(missing_ok=True)
        before = daemon_runs(equiv_daemon)
        result = equiv_daemon.cold(*args) if mode == "cold" else equiv_daemon.pytest(*args)
        # --cov is served cold: the daemon never sees the run.
        assert daemon_runs(equiv_daemon) == before, str(result)
        notices = [ln for ln in result.stderr.splitlines() if ln.startswith(NOTICE)]
        if mode == "daemon":
            assert (
                len(notices) == 1 and "--cov" in notices[0] and "without the daemon" in notices[0]
            ), str(result)
        else:
            assert notices == [], str(result)
        assert result.returncode == 1, str(result)
        assert data_file.exists(), str(result)
        reports[mode] = normalise(result.stdout)
        lines[mode] = _covered_lines(str(data_file))
    assert reports["daemon"] == reports["cold"]
    assert lines["daemon"] == lines["cold"]
    # Complete: module-level lines (run at import) are there, and the body of
    # bump(), which no test in tests/ calls, is not.
    core = lines["cold"]["core.py"]
    assert {1, 3, 4, 7, 8, 11, 17} <= core, core
    assert not {13, 14} & core, core
    assert re.search(r"equivpkg/core\.py\s+\d+\s+2\s+\d+%\s+13-14", reports["cold"]), reports[
        "cold"
    ]


# -- pytest-asyncio --------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ("-o", "asyncio_mode=auto")], ids=["strict", "auto"])
def test_asyncio(equiv_daemon: Project, extra: tuple[str, ...]) -> None:
    args = ("-rA", *extra, "tests/test_async.py", "tests/test_more.py::test_async_plain_is_not_run")
    warm, cold = warm_and_cold(equiv_daemon, *args)
    assert warm.returncode == cold.returncode == 1
    assert outcomes(warm) == outcomes(cold)
    assert ("PASSED", "tests/test_async.py::test_async_ok") in outcomes(warm)
    assert ("FAILED", "tests/test_async.py::test_async_fails") in outcomes(warm)
    # In auto mode pytest-asyncio also runs the unmarked coroutine.
    plain = ("PASSED" if extra else "FAILED", "tests/test_more.py::test_async_plain_is_not_run")
    assert plain in outcomes(warm), str(warm)
    assert normalise(warm.stdout) == normalise(cold.stdout)


# -- pytest-timeout --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_timeout(equiv_daemon: Project, method: str) -> None:
    args = ("-rA", "--timeout=1", f"--timeout-method={method}", "scenarios/test_timeout.py")
    warm, cold = warm_and_cold(equiv_daemon, *args)
    assert warm.returncode == cold.returncode == 1, f"{cold}\n{warm}"
    assert "Timeout" in cold.output and "Timeout" in warm.output
    if method == "signal":
        expected = [
            ("PASSED", "scenarios/test_timeout.py::test_quick"),
            ("FAILED", "scenarios/test_timeout.py::test_too_slow"),
        ]
        assert outcomes(cold) == outcomes(warm) == expected, f"{cold}\n{warm}"
        assert "Failed: Timeout (>1.0s) from pytest-timeout." in warm.stdout
    else:
        # The thread method dumps the stacks and ends the process with os._exit(1).
        assert "+++ Timeout +++" in cold.output and "+++ Timeout +++" in warm.output, (
            f"{cold}\n{warm}"
        )
        assert ("+++ Timeout +++" in cold.stdout) == ("+++ Timeout +++" in warm.stdout), (
            f"{cold}\n{warm}"
        )
        assert "test_too_slow" in warm.output


def test_timeout_from_ini_override(equiv_daemon: Project) -> None:
    warm, cold = warm_and_cold(equiv_daemon, "-rA", "-o", "timeout=1", "scenarios/test_timeout.py")
    assert warm.returncode == cold.returncode == 1
    assert outcomes(warm) == outcomes(cold)


# -- pytest-randomly ---------------------------------------------------------------------


def _order(result: Result) -> list[str]:
    return [
        m.group(1)
        for m in re.finditer(
            r"^(\S+::\S+) (?:PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", result.stdout, flags=re.M
        )
    ]


@pytest.mark.parametrize("seed", ["123", "4242"])
def test_randomly(equiv_daemon: Project, seed: str) -> None:
    env = {"PYTEST_ADDOPTS": f"-p randomly -p no:cacheprovider --randomly-seed={seed}"}
    warm, cold = warm_and_cold(equiv_daemon, "-v", "-rA", env=env)
    assert warm.returncode == cold.returncode == 1
    assert f"Using --randomly-seed={seed}" in warm.stdout, str(warm)
    assert _order(warm) == _order(cold)
    assert outcomes(warm) == outcomes(cold)
    assert normalise(warm.stdout) == normalise(cold.stdout)
    plain = equiv_daemon.pytest("-v", "-p", "no:cacheprovider")
    assert sorted(_order(plain)) == sorted(_order(warm))
    assert _order(plain) != _order(warm), "pytest-randomly did not reorder anything"


# -- pytest-xdist ------------------------------------------------------------------------


def test_xdist(equiv_daemon: Project) -> None:
    args = ("-n", "2", "-rA", "-p", "no:cacheprovider")
    cold = equiv_daemon.cold(*args)
    before = daemon_runs(equiv_daemon)
    warm = equiv_daemon.pytest(*args)
    notices = [ln for ln in warm.stderr.splitlines() if ln.startswith(NOTICE)]
    # Either served warm (no notice) or declined with one line saying why.
    if notices:
        assert len(notices) == 1 and "without the daemon" in notices[0], str(warm)
        assert daemon_runs(equiv_daemon) == before
    else:
        assert daemon_runs(equiv_daemon) == before + 1
    assert warm.returncode == cold.returncode == 1
    assert "2 workers" in warm.stdout and "2 workers" in cold.stdout
    assert outcomes(warm, sort=True) == outcomes(cold, sort=True), f"{cold}\n{warm}"
    assert len(outcomes(cold)) > 20
