"""The socket protocol against a real daemon: bad requests, limits, concurrency.

One daemon serves the module (``daemon_request_timeout = 1`` so a silent
client is dropped quickly); every test sends its own requests, checks the
typed answer and the log line, and then checks the daemon still serves.
Counters are compared as deltas, so the tests do not depend on their order.
"""

from __future__ import annotations

import json
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


def rejected(project: Project, data: bytes, code: p.ErrorCode, log_words: str) -> p.ErrorResponse:
    """Send ``data``, expect a typed error with ``code``, a log line, one more failed request."""
    before = metrics(project)
    response = raw_exchange(files_of(project).socket, data)
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
    """``[tool.pytest.ini_options]`` sets the limits; past the connection limit a client
    waits for a slot as long as the read limit, then gets a typed BUSY error."""
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

        # A run holds its connection (the only slot) for as long as it lasts.
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
        try:
            DaemonClient(sock).get_status()
        except DaemonError as exc:
            busy = str(exc)
        else:
            pytest.fail(f"served while a run held the only slot; daemon log:\n{log_text(project)}")
        waited = time.monotonic() - started
        assert busy.startswith("busy:") and "1 connections" in busy, busy
        assert 0.9 <= waited < 10, (
            f"a client past the limit waited {waited:.2f}s, not the 1 s read limit"
        )
        wait_for_log(project, r"Refused connection: 1 connections already open")

        (root / "run-may-finish").touch()
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0 and "1 passed" in out, out + err
        m = DaemonClient(sock).get_status()["metrics"]
        assert m["by_command"]["busy"] == 1, m
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
