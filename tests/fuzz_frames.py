"""Hostile frames against a live daemon: it never crashes, never loses its warm process.

Importable (tests/test_fuzz_frames.py runs a few hundred frames in the suite)
and a command line for the full size (``nox -s hostile``)::

    python tests/fuzz_frames.py --frames 10000 --seed 1

It copies examples/basic, starts a daemon, and sends seeded frames built
from valid requests of every command by mutating them: every field of
every request (ids, roots, filters, paths, arguments, environment, sizes,
versions) replaced by hostile values (NUL, newlines, huge, wrong types,
nesting, lone surrogates), fields dropped or added, and the frame itself
broken (a length header that lies, a body cut short, bytes flipped, invalid
UTF-8, several frames at once, a run without its descriptors). Runs are
sent with descriptors and safe arguments (no path that could make pytest
collect or delete outside the project). A valid ``stop`` or ``reload`` is
never sent: it would end or replace what is being checked.

Every answer must be a response the protocol models accept, and never an
``internal`` error (a handler that crashed). After every batch the
supervisor pid and the warm pid are unchanged and a status answers; its
latency is recorded (p50, p95, max).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pydantic

from pytest_fastcollect.daemon_client import DaemonClient
from pytest_fastcollect.wire import protocol as p
from pytest_fastcollect.wire.framing import send_frame

from helpers import EXAMPLES, Project, make_project

BATCH = 50
READ_TIMEOUT = 60.0
HOSTILE_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "\n",
    "two\nlines",
    "\r\n2020-01-01 00:00:00,000 INFO forged",
    "\ud800",
    "é🐍",
    " ",
    "x" * 70,
    "x" * 20000,
    "%s%n%x",
    "${HOME}",
    "\\",
    "::",
    "tests::",
    "-",
    "--",
    "\t",
    "\x1b[2J",
]
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**64,
    -(2**63),
    1.5,
    1e308,
    [],
    {},
    [None],
    {"": ""},
    ["x"] * 50,
    {"-k": {"-k": "x"}},
]
# Arguments a fuzzed run may get: none names a path outside the project or
# takes one as its value (pytest --basetemp deletes its directory).
RUN_ARGS = [
    "-q",
    "-v",
    "--co",
    "-x",
    "-k",
    "money",
    "-k",
    "not (",
    "-m",
    "slow",
    "-rA",
    "--tb=short",
    "--tb=bogus",
    "--bogus-option",
    "-p",
    "no:randomly",
    "tests/test_money.py",
    "tests/test_money.py::nothing",
    "missing_dir/",
    "-W",
    "error",
    "--import-mode=append",
    "--maxfail=1",
    "-s",
    "--no-header",
    "--help",
    "\n",
    "--",
    "é🐍",
]


@dataclass
class Report:
    frames: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    status_ms: list[float] = field(default_factory=list)

    def summary(self) -> str:
        ms = sorted(self.status_ms)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))] if ms else 0.0
        lines = [
            f"{self.frames} frames; answers: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items())),
            f"status during the flood: {len(ms)} requests, p50 "
            f"{statistics.median(ms) if ms else 0:.1f} ms, p95 {p95:.1f} ms, max "
            f"{max(ms) if ms else 0:.1f} ms",
            f"problems: {len(self.problems)}",
            *(f"  {x}" for x in self.problems[:20]),
        ]
        return "\n".join(lines)


class Fuzzer:
    def __init__(self, project: Project, rng: random.Random) -> None:
        self.project = project
        self.rng = rng
        record = project.record()
        assert record is not None
        self.socket_path = str(record["socket_path"])
        self.root = str(project.root)
        status = DaemonClient(self.socket_path).get_status()
        self.pids = (status["pid"], status["warm_pid"])
        self.run_python, self.run_sys_path = _client_identity(project)
        self.env = dict(project.env)

    # -- valid requests to start from ------------------------------------------------------

    def base(self) -> dict[str, Any]:
        command = self.rng.choice(
            ["status", "health", "collect", "collect", "run", "signal", "reload", "stop"]
        )
        req: dict[str, Any] = {"command": command, "protocol_version": p.PROTOCOL_VERSION}
        if self.rng.random() < 0.7:
            req["request_id"] = f"fz-{self.rng.getrandbits(40):x}"
        if command == "collect":
            req["root"] = self.rng.choice([self.root, ".", "tests", self.root + "/tests"])
            filters: dict[str, Any] = {}
            if self.rng.random() < 0.5:
                filters["-k"] = self.rng.choice(["money", "not cart", "(", "and", ""])
            if self.rng.random() < 0.3:
                filters["-m"] = self.rng.choice(["slow", "not slow", "(("])
            if self.rng.random() < 0.4:
                filters["paths"] = self.rng.sample(
                    ["tests/test_money.py", "tests", "missing.py", "tests/test_cart.py::x"], 2
                )
            req["filters"] = filters
        elif command == "run":
            req.update(
                args=[*self.rng.sample(RUN_ARGS, self.rng.randint(0, 4)), "tests/test_money.py"],
                cwd=self.root,
                env=dict(self.env, FUZZ_EXTRA=str(self.rng.random())),
                umask=0o22,
                python=self.run_python,
                sys_path=list(self.run_sys_path),
                argv0="pytest",
                fd_count=3,
            )
        elif command == "signal":
            req["signum"] = self.rng.randint(1, 64)
        return req

    # -- mutations ------------------------------------------------------------------------

    def hostile(self) -> Any:
        if self.rng.random() < 0.6:
            return self.rng.choice(HOSTILE_STRINGS)
        return self.rng.choice(HOSTILE_VALUES)

    def mutate(self, req: dict[str, Any]) -> dict[str, Any]:
        for _ in range(self.rng.randint(1, 3)):
            target, key = self._pick(req)
            choice = self.rng.random()
            if choice < 0.6:
                target[key] = self.hostile()
            elif choice < 0.75:
                target.pop(key, None)
            elif choice < 0.9:
                target[self.rng.choice(HOSTILE_STRINGS[:8]) or "extra"] = self.hostile()
            else:
                target[key] = _nested(self.rng.randint(10, 400))
        return req

    def _pick(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """A random (container, key) inside the request, nested dicts included."""
        target = req
        key = self.rng.choice(list(target) or ["command"])
        while isinstance(target.get(key), dict) and target[key] and self.rng.random() < 0.6:
            target = target[key]
            key = self.rng.choice(list(target))
        return target, key

    def frame(self) -> tuple[bytes, bool]:
        """(bytes to send, attach three descriptors)."""
        req = self.base()
        if self.rng.random() < 0.8:
            req = self.mutate(req)
        body = json.dumps(req).encode(errors="surrogatepass")
        if _forbidden(body):
            req = {"command": "status", "request_id": "fz-safe"}
            body = json.dumps(req).encode()
        fds = req.get("command") == "run" and self.rng.random() < 0.8
        roll = self.rng.random()
        if roll < 0.08:
            body = _flip(body, self.rng)
        elif roll < 0.12:
            body = body + b"\xff\xfe"
        elif roll < 0.14:
            body = self.rng.randbytes(self.rng.randint(0, 200))
        header = struct.pack(">I", len(body))
        roll = self.rng.random()
        if roll < 0.04:
            header = struct.pack(">I", len(body) + self.rng.randint(1, 100))  # lies: longer
        elif roll < 0.06:
            header = struct.pack(">I", self.rng.choice([11 * 1024 * 1024, 2**32 - 1]))
        elif roll < 0.08:
            return header + body[: len(body) // 2], False  # cut short, then closed
        elif roll < 0.10:
            return (header + body) * 2, fds  # two frames at once
        return header + body, fds

    # -- sending --------------------------------------------------------------------------

    def send(self, data: bytes, with_fds: bool, report: Report) -> None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(READ_TIMEOUT)
        null = os.open(os.devnull, os.O_RDWR)
        try:
            conn.connect(self.socket_path)
            if with_fds:
                send_frame(conn, data[4:], fds=(null, null, null))
                if len(data) > 4 + struct.unpack(">I", data[:4])[0]:
                    conn.sendall(data[4 + struct.unpack(">I", data[:4])[0] :])
            else:
                conn.sendall(data)
            self._answers(conn, report)
        except OSError as exc:
            report.kinds[f"connection {type(exc).__name__}"] += 1
        finally:
            os.close(null)
            conn.close()

    def _answers(self, conn: socket.socket, report: Report) -> None:
        while True:
            header = _recv_exact(conn, 4)
            if header is None:
                report.kinds["closed"] += 1
                return
            body = _recv_exact(conn, struct.unpack(">I", header)[0])
            try:
                answer = p.response_adapter().validate_json(body or b"")
            except pydantic.ValidationError as exc:
                report.problems.append(f"an answer the models refuse: {body!r:.200} ({exc})")
                return
            kind = answer.kind if not isinstance(answer, p.ErrorResponse) else answer.code.value
            report.kinds[kind] += 1
            if isinstance(answer, p.ErrorResponse) and answer.code is p.ErrorCode.INTERNAL:
                report.problems.append(f"internal error: {answer.message}")
            if kind not in ("notice", "run_started"):
                return

    def check(self, report: Report) -> None:
        started = time.perf_counter()
        try:
            status = DaemonClient(self.socket_path).get_status()
        except Exception as exc:
            report.problems.append(f"status failed: {type(exc).__name__}: {exc}")
            return
        report.status_ms.append((time.perf_counter() - started) * 1000)
        pids = (status["pid"], status["warm_pid"])
        if pids != self.pids:
            report.problems.append(f"pids changed: supervisor, warm {self.pids} -> {pids}")
            self.pids = pids


def _client_identity(project: Project) -> tuple[str, list[str]]:
    """The interpreter and sys.path a `pytest` run of this project sends."""
    from helpers import command_pytest

    cmd = command_pytest()
    python = Path(cmd[0]).read_text().splitlines()[0][2:].strip() if len(cmd) == 1 else cmd[0]
    script = "import json, sys; print(json.dumps([sys.executable, sys.path]))"
    exe, sys_path = json.loads(project.command([python, "-c", script]).stdout)
    # A `pytest` script puts its own directory first on sys.path, `python -m` the cwd.
    first = os.path.dirname(cmd[0]) if len(cmd) == 1 else str(project.root)
    return str(exe), [first, *sys_path[1:]]


def _forbidden(body: bytes) -> bool:
    """A valid stop or reload would end or replace what is checked: never sent."""
    try:
        req = p.request_adapter().validate_json(body)
    except (pydantic.ValidationError, ValueError):
        return False
    return req.command in ("stop", "reload")


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def _flip(body: bytes, rng: random.Random) -> bytes:
    if not body:
        return body
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def start_project(where: Path) -> Project:
    dest = where / "basic"
    shutil.copytree(
        EXAMPLES / "basic", dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
    )
    project = make_project(dest)
    # A client that stalls is dropped quickly; the fuzzer's cut frames close at once.
    with open(dest / "pytest.ini", "a") as fh:
        fh.write("daemon_request_timeout = 2\n")
    result = project.start("tests")
    assert result.returncode == 0, str(result)
    return project


def fuzz(project: Project, seed: int, frames: int, workers: int = 4) -> Report:
    report = Report()
    fuzzer = Fuzzer(project, random.Random(seed))
    lock = threading.Lock()
    for start in range(0, frames, BATCH):
        batch = [fuzzer.frame() for _ in range(min(BATCH, frames - start))]
        parts = [batch[i::workers] for i in range(workers)]
        local = [Report() for _ in parts]

        def send_all(items: list[tuple[bytes, bool]], into: Report) -> None:
            for data, fds in items:
                fuzzer.send(data, fds, into)

        threads = [
            threading.Thread(target=send_all, args=(part, rep))
            for part, rep in zip(parts, local, strict=True)
        ]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            fuzzer.check(report)  # status latency while the batch floods the daemon
            time.sleep(0.05)
        for t in threads:
            t.join()
        with lock:
            for rep in local:
                report.kinds.update(rep.kinds)
                report.problems.extend(rep.problems)
            report.frames += len(batch)
        fuzzer.check(report)
    return report


def main(argv: list[str] | None = None) -> int:
    # A SIGTERM (nox interrupted, a CI timeout) still stops the daemon in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args(argv)
    where = Path(tempfile.mkdtemp(prefix="fc-hostile-"))
    project = start_project(where)
    started = time.monotonic()
    try:
        report = fuzz(project, ns.seed, ns.frames)
    finally:
        project.cleanup()
        shutil.rmtree(project.runtime, ignore_errors=True)
        shutil.rmtree(where, ignore_errors=True)
    print(report.summary())
    print(f"seed {ns.seed}, {time.monotonic() - started:.0f}s", flush=True)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
