"""The socket protocol against a real daemon: bad requests, limits, concurrency.

One daemon serves the module (``daemon_request_timeout = 1`` so a silent
client is dropped quickly); every test sends its own requests, checks the
typed answer and the log line, and then checks the daemon still serves.
Counters are compared as deltas, so the tests do not depend on their order.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_fastcollect.daemon_client import DaemonClient, DaemonError
from pytest_fastcollect.wire import protocol as p

from helpers import (
    Project,
    RawConnection,
    command_pytest,
    files_of,
    frame,
    log_text,
    make_project,
    raw_exchange,
    wait_for_log,
    wait_until,
)

REQUEST_TIMEOUT = 1.0
# A run request that passes validation (without its descriptors it is refused after).
_RUN: dict[str, Any] = {
    "command": "run",
    "args": ["-q"],
    "cwd": "/tmp",
    "env": {"PATH": "/bin"},
    "umask": 0o22,
    "python": "/usr/bin/python3",
    "sys_path": ["/x"],
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("protocol") / "proj"
    root.mkdir()
    project = make_project(root)
    project.write(
        {
            "pytest.ini": f"""\
            [pytest]
            asyncio_default_fixture_loop_scope = function
            daemon_request_timeout = {REQUEST_TIMEOUT:g}
        """,
            "tests/test_accounts.py": """\
            def test_user_create():
                pass

            def test_user_delete():
                pass

            def test_other():
                pass
        """,
        }
    )
    try:
        result = project.start("tests")
        assert result.returncode == 0, str(result)
        yield project
    finally:
        project.cleanup()
        shutil.rmtree(project.runtime, ignore_errors=True)


def client(project: Project) -> DaemonClient:
    return DaemonClient(files_of(project).socket)


def metrics(project: Project) -> dict[str, Any]:
    m: dict[str, Any] = client(project).get_status()["metrics"]
    return m


def assert_counters_add_up(m: dict[str, Any]) -> None:
    assert m["total_requests"] == m["successful_requests"] + m["failed_requests"], m
    assert sum(m["by_command"].values()) == m["total_requests"], m
    assert 0.0 <= m["error_rate"] <= 1.0, m
    if m["total_requests"]:
        assert m["error_rate"] == pytest.approx(
            m["failed_requests"] / m["total_requests"], abs=1e-4
        ), m


def assert_still_serving(project: Project) -> None:
    status = client(project).get_status()
    assert status["state"] == "ready"
    assert_counters_add_up(status["metrics"])


def _exchange_with_stdio(socket_path: Path, data: bytes) -> Any:
    """Send ``data`` with three descriptors attached, as a run's client does."""
    from pytest_fastcollect.wire.framing import send_frame

    null = os.open(os.devnull, os.O_RDWR)
    try:
        with RawConnection(socket_path) as conn:
            send_frame(conn.sock, data[4:], fds=(null, null, null))
            return conn.read_response()
    finally:
        os.close(null)


def rejected(
    project: Project, data: bytes, code: p.ErrorCode, log_words: str, stdio: bool = False
) -> p.ErrorResponse:
    """Send ``data``, expect a typed error with ``code``, a log line, one more failed request.

    ``stdio``: attach three descriptors, as a run's client does.
    """
    before = metrics(project)
    sock = files_of(project).socket
    response = _exchange_with_stdio(sock, data) if stdio else raw_exchange(sock, data)
    assert isinstance(response, p.ErrorResponse), response
    assert response.code is code, response
    wait_for_log(project, rf"Request \[[^\]]*\] rejected: {code.value}: .*{log_words}")
    after = metrics(project)
    # +1 for the failed request, +1 for the status request that read `before`.
    assert after["failed_requests"] == before["failed_requests"] + 1, (before, after)
    assert after["total_requests"] == before["total_requests"] + 2, (before, after)
    assert_still_serving(project)
    return response


# --- bad requests -----------------------------------------------------------------------------


def test_malformed_json(daemon: Project) -> None:
    response = rejected(
        daemon, frame(b'{"command": "status",'), p.ErrorCode.BAD_REQUEST, "Invalid JSON"
    )
    assert "Invalid JSON" in response.message


@pytest.mark.parametrize("body", [b"[]", b"null", b'"status"', b"\xff\xfe\x00"])
def test_json_that_is_not_a_request_object(daemon: Project, body: bytes) -> None:
    rejected(daemon, frame(body), p.ErrorCode.BAD_REQUEST, "")


def test_unknown_command(daemon: Project) -> None:
    response = rejected(
        daemon, frame(b'{"command": "frobnicate"}'), p.ErrorCode.UNKNOWN_COMMAND, "frobnicate"
    )
    assert "frobnicate" in response.message


def test_extra_field(daemon: Project) -> None:
    response = rejected(
        daemon,
        frame(b'{"command": "status", "bogus": 1}'),
        p.ErrorCode.BAD_REQUEST,
        "Extra inputs are not permitted",
    )
    assert "bogus" in response.message


def test_wrong_protocol_version(daemon: Project) -> None:
    body = json.dumps(
        {
            "command": "health",
            "protocol_version": p.PROTOCOL_VERSION + 1,
            "request_id": "from-the-future",
        }
    ).encode()
    response = rejected(daemon, frame(body), p.ErrorCode.VERSION_MISMATCH, "restart")
    assert response.request_id == "from-the-future"


@pytest.mark.parametrize(
    "request_id",
    ["with\x00nul", "two\nlines", "", "-leading-dash", "a" * 65, "with space", "caf\u00e9"],
)
def test_request_ids_are_a_strict_pattern(daemon: Project, request_id: str) -> None:
    # An id becomes a log line (and once became a file name): nothing but the pattern.
    body = json.dumps({"command": "status", "request_id": request_id}).encode()
    response = rejected(daemon, frame(body), p.ErrorCode.BAD_REQUEST, "request_id")
    assert "should match pattern" in response.message


def _pids(project: Project) -> tuple[int, int]:
    status = client(project).get_status()
    return status["pid"], status["warm_pid"]


@pytest.mark.parametrize(
    "body",
    [
        {"command": "collect", "root": "/tmp/x\x00y"},
        {"command": "collect", "root": ".", "filters": {"paths": ["tests\x00"]}},
        {"command": "collect", "root": ".", "filters": {"-k": "a\x00b"}},
        *(
            {**_RUN, field: value}
            for field, value in [
                ("cwd", "/tmp\x00"),
                ("cwd", "relative/dir"),
                ("args", ["-q", "te\x00sts"]),
                ("env", {"A": "b\x00c"}),
                ("env", {"A\x00B": "c"}),
                ("env", {"A=B": "c"}),
                ("env", {"": "c"}),
                ("python", "/usr/bin/py\x00thon"),
                ("sys_path", ["/x\x00"]),
                ("argv0", "pytest\x00"),
            ]
        ),
    ],
)
def test_fields_that_become_paths_or_environment_refuse_nul(
    daemon: Project, body: dict[str, Any]
) -> None:
    """Never ``internal`` (a ValueError deep in os), and the processes stay up."""
    before = _pids(daemon)
    stdio = body["command"] == "run"
    rejected(daemon, frame(json.dumps(body).encode()), p.ErrorCode.BAD_REQUEST, "", stdio=stdio)
    assert _pids(daemon) == before


def test_log_lines_cannot_be_forged(daemon: Project) -> None:
    forged = "2020-01-01 00:00:00,000 INFO pytest_fastcollect.daemon [1]: forged"
    body = json.dumps({"command": "status", f"x\n{forged}": 1}).encode()
    rejected(daemon, frame(body), p.ErrorCode.BAD_REQUEST, "Extra inputs")
    log = log_text(daemon)
    assert f"x\\n{forged}" in log
    assert not any(line.startswith(forged) for line in log.splitlines())


def test_eleven_megabyte_frame_header_is_refused_at_once(daemon: Project) -> None:
    started = time.monotonic()
    response = rejected(
        daemon, struct.pack(">I", 11 * 1024 * 1024), p.ErrorCode.TOO_LARGE, "exceeds the limit"
    )
    assert "11534336" in response.message and "10485760" in response.message
    # Refused on the header, not after waiting for a body that never comes.
    assert time.monotonic() - started < REQUEST_TIMEOUT + 5


def test_eleven_megabyte_frame_with_its_body(daemon: Project) -> None:
    before = metrics(daemon)
    body = b"x" * (11 * 1024 * 1024)
    with RawConnection(files_of(daemon).socket) as conn:
        sender = threading.Thread(target=_send_ignoring_reset, args=(conn.sock, frame(body)))
        sender.start()
        response = conn.read_response()
        sender.join(30)
    assert isinstance(response, p.ErrorResponse) and response.code is p.ErrorCode.TOO_LARGE, (
        response
    )
    assert metrics(daemon)["failed_requests"] == before["failed_requests"] + 1
    assert_still_serving(daemon)


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the daemon answered and closed after the header, as it should


def test_client_that_sends_nothing_gets_a_timeout(daemon: Project) -> None:
    before = metrics(daemon)
    with RawConnection(files_of(daemon).socket, timeout=REQUEST_TIMEOUT + 10) as silent:
        started = time.monotonic()
        # While the silent client holds its connection, everyone else is served.
        assert client(daemon).get_health()["status"] in ("healthy", "degraded")
        response = silent.read_response()
        waited = time.monotonic() - started
    assert isinstance(response, p.ErrorResponse) and response.code is p.ErrorCode.TIMEOUT, response
    assert f"within {REQUEST_TIMEOUT:g}s" in response.message
    assert REQUEST_TIMEOUT - 0.1 <= waited < REQUEST_TIMEOUT + 5, waited
    wait_for_log(daemon, r"rejected: timeout: no complete request within")
    after = metrics(daemon)
    assert after["failed_requests"] == before["failed_requests"] + 1
    assert_still_serving(daemon)


def test_client_that_stalls_mid_frame_gets_a_timeout(daemon: Project) -> None:
    with RawConnection(files_of(daemon).socket, timeout=REQUEST_TIMEOUT + 10) as conn:
        conn.send(struct.pack(">I", 100) + b'{"command"')
        response = conn.read_response()
    assert isinstance(response, p.ErrorResponse) and response.code is p.ErrorCode.TIMEOUT, response
    assert_still_serving(daemon)


def test_client_that_disconnects_mid_frame(daemon: Project) -> None:
    before = metrics(daemon)
    marks = log_text(daemon).count("client disconnected mid-frame")
    with RawConnection(files_of(daemon).socket) as conn:
        conn.send(struct.pack(">I", 100) + b'{"command": "sta')
    wait_until(
        lambda: log_text(daemon).count("client disconnected mid-frame") == marks + 1,
        what="the log line for a client gone mid-frame",
    )
    after = metrics(daemon)
    assert after["failed_requests"] == before["failed_requests"] + 1
    assert_still_serving(daemon)


def test_client_that_connects_and_leaves_costs_nothing(daemon: Project) -> None:
    before = metrics(daemon)
    RawConnection(files_of(daemon).socket).close()
    assert_still_serving(daemon)
    after = metrics(daemon)
    assert after["failed_requests"] == before["failed_requests"]


def test_signal_outside_a_run(daemon: Project) -> None:
    response = raw_exchange(files_of(daemon).socket, frame(p.dump(p.SignalRequest(signum=2))))
    assert isinstance(response, p.ErrorResponse) and response.code is p.ErrorCode.BAD_REQUEST, (
        response
    )
    assert "only valid during a run" in response.message
    assert_still_serving(daemon)


# --- good requests over a raw socket ----------------------------------------------------------


@pytest.mark.parametrize(
    ("request_model", "kind"),
    [
        (p.StatusRequest(request_id="raw-status"), p.StatusResponse),
        (p.HealthRequest(request_id="raw-health"), p.HealthResponse),
        (p.CollectRequest(request_id="raw-collect", root="."), p.CollectResponse),
    ],
)
def test_each_request_gets_its_model_and_its_id_back(
    daemon: Project, request_model: Any, kind: type
) -> None:
    if isinstance(request_model, p.CollectRequest):
        request_model = request_model.model_copy(update={"root": str(daemon.root)})
    response = raw_exchange(files_of(daemon).socket, frame(p.dump(request_model)))
    assert isinstance(response, kind), response
    assert response.request_id == request_model.request_id
    log = log_text(daemon)
    assert f"Processing request [{request_model.request_id}] {request_model.command}" in log
    wait_for_log(daemon, rf"Request \[{request_model.request_id}\] completed in \d+\.\d+s: success")


def test_collect_through_the_socket_matches_pytest(daemon: Project) -> None:
    response = client(daemon).collect(str(daemon.root), filters={"-k": "user"})
    assert response["node_ids"] == [
        "tests/test_accounts.py::test_user_create",
        "tests/test_accounts.py::test_user_delete",
    ]
    assert response["count"] == 2
    assert response["exit_code"] == 0
    assert response["errors"] == []
    assert response["collection_time"] > 0


# --- limits and concurrency -------------------------------------------------------------------


def test_limits_are_reported(daemon: Project) -> None:
    limits = client(daemon).get_status()["limits"]
    assert limits == {
        "max_connections": 10,
        "max_request_bytes": 10 * 1024 * 1024,
        "request_timeout": REQUEST_TIMEOUT,
    }


def test_twenty_concurrent_status_requests(daemon: Project) -> None:
    before = metrics(daemon)
    barrier = threading.Barrier(20)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def ask() -> None:
        barrier.wait(10)
        try:
            status = client(daemon).get_status()
        except Exception as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            results.append(status)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [], f"{len(errors)} of 20 concurrent status requests failed: {errors[:3]}"
    assert len(results) == 20
    assert len({r["request_id"] for r in results}) == 20
    after = metrics(daemon)
    assert_counters_add_up(after)
    assert after["total_requests"] == before["total_requests"] + 21
    assert after["successful_requests"] == before["successful_requests"] + 21
    assert after["failed_requests"] == before["failed_requests"]
    assert after["by_command"]["status"] == before["by_command"]["status"] + 21
    for r in results:
        assert_counters_add_up(r["metrics"])


SLOW_TEST = """\
    import os
    import time

    def test_holds_the_connection():
        open("run-started", "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists("run-may-finish"):
            assert time.monotonic() < deadline, "never released"
            time.sleep(0.01)
"""


def test_limits_from_pyproject_and_a_busy_daemon(tmp_path: Path) -> None:
    """``[tool.pytest.ini_options]`` sets the limits. Past the run limit, a run is told
    busy within the short bounded wait and runs cold with a notice, while status is
    answered at once: it needs no slot."""
    root = tmp_path / "proj"
    root.mkdir()
    project = make_project(root)
    project.write(
        {
            "pyproject.toml": """\
            [tool.pytest.ini_options]
            asyncio_default_fixture_loop_scope = "function"
            daemon_max_connections = "1"
            daemon_max_request_bytes = "100000"
            daemon_request_timeout = "1"
        """,
            "tests/test_slow.py": SLOW_TEST,
        }
    )
    run = None
    try:
        result = project.start("tests")
        assert result.returncode == 0, str(result)
        sock = files_of(project).socket
        assert DaemonClient(sock).get_status()["limits"] == {
            "max_connections": 1,
            "max_request_bytes": 100_000,
            "request_timeout": 1.0,
        }

        too_big = raw_exchange(sock, frame(b"x" * 100_001))
        assert isinstance(too_big, p.ErrorResponse) and too_big.code is p.ErrorCode.TOO_LARGE, (
            too_big
        )
        assert "limit of 100000 bytes" in too_big.message

        # A run holds the only slot for as long as it lasts.
        run = subprocess.Popen(
            [*command_pytest(), "-q", "tests"],
            cwd=root,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        wait_until(
            lambda: (root / "run-started").exists() or run.poll() is not None,
            timeout=60,
            what="the run to start",
        )
        assert run.poll() is None, run.communicate()
        started = time.monotonic()
        status = DaemonClient(sock).get_status()
        assert time.monotonic() - started < 1.0, "status waited for a slot"
        assert status["connections"]["running"] == 1, status["connections"]
        started = time.monotonic()
        with pytest.raises(DaemonError, match="the daemon is busy: 1 runs"):
            DaemonClient(sock).collect(str(root))
        waited = time.monotonic() - started
        assert waited < 10, f"a busy collect took {waited:.2f}s to be told"
        wait_for_log(project, r"Request \[\S+\] answered busy: the daemon is busy: 1 runs")

        (root / "run-may-finish").touch()
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0 and "1 passed" in out, out + err
        m = DaemonClient(sock).get_status()["metrics"]
        assert m["by_command"]["busy"] >= 1, m
        assert m["runs"] == 1, m
        assert_counters_add_up(m)
    finally:
        if run is not None and run.poll() is None:
            (root / "run-may-finish").touch()
            run.communicate(timeout=60)
        project.cleanup()
        shutil.rmtree(project.runtime, ignore_errors=True)


def test_degraded_by_errors_and_error_rate_never_above_one(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    project = make_project(root)
    project.write(
        {
            "pytest.ini": "[pytest]\nasyncio_default_fixture_loop_scope = function\n",
            "tests/test_a.py": "def test_a():\n    pass\n",
        }
    )
    try:
        assert project.start("tests").returncode == 0
        sock = files_of(project).socket
        healthy = project.pytest("--daemon-health")
        assert healthy.returncode == 0, str(healthy)
        for _ in range(12):
            response = raw_exchange(sock, frame(b"{not json"))
            assert isinstance(response, p.ErrorResponse)
        for conn in [RawConnection(sock) for _ in range(3)]:
            conn.send(b"\x00\x00")
            conn.close()
        wait_until(
            lambda: log_text(project).count("client disconnected mid-frame") == 3,
            what="three mid-frame disconnects logged",
        )
        health = json.loads(project.pytest("--daemon-health", "--daemon-json").stdout)
        assert health["status"] == "degraded", health
        check = health["checks"]["request_error_rate"]
        assert check["ok"] is False
        assert 0.1 < check["value"] <= 1.0
        m = DaemonClient(sock).get_status()["metrics"]
        assert_counters_add_up(m)
        assert m["failed_requests"] == 15
        assert m["error_rate"] <= 1.0
        human = project.pytest("--daemon-health")
        assert human.returncode == 7, str(human)
        assert "Status: degraded" in human.stdout
    finally:
        project.cleanup()
        shutil.rmtree(project.runtime, ignore_errors=True)


def test_collect_with_unsupported_filters_is_a_client_error(daemon: Project) -> None:
    with pytest.raises(ValueError, match="unsupported collect filters"):
        client(daemon).collect(str(daemon.root), filters={"--lf": True})
    with pytest.raises(DaemonError, match="outside_root"):
        client(daemon).collect("/")
