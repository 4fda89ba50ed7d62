"""wire/cjson.py gives what ``json`` gives, and the client's start-up path never imports
``json``, ``re``, ``enum``, ``socket`` or ``collections`` (what it was built to spare)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

import pytest

from pytest_fastcollect.wire import cjson, lite

PAYLOADS: list[Any] = [
    {},
    [],
    "",
    0,
    -1,
    2**70,
    1.5,
    -0.0,
    1e300,
    True,
    False,
    None,
    "plain",
    'quote " backslash \\ slash / controls \b\f\n\r\t \x00 \x1f',
    "é ü 中文 🐍 \u2028 \ud800",  # a lone surrogate too, as os.environ can hold
    {"nested": [1, [2, {"x": None}], {"y": [True, False]}], "": ""},
    {"env": dict(os.environ), "args": sys.argv, "umask": 0o22},
    [float("inf"), float("-inf")],
]


@pytest.mark.parametrize("value", PAYLOADS, ids=range(len(PAYLOADS)))
def test_dumps_writes_what_json_writes_and_both_read_it_back(value: Any) -> None:
    ours = cjson.dumps(value)
    assert ours == json.dumps(value, separators=(",", ":")).encode()
    assert ours.isascii()
    assert cjson.loads(ours) == json.loads(ours) == value


def test_nan_round_trips_as_json_does() -> None:
    assert cjson.dumps(float("nan")) == b"NaN"
    assert math.isnan(cjson.loads(b"NaN"))


@pytest.mark.parametrize(
    "text",
    [
        ' {"a": [1, 2.5e3, "x"], "b": {"c": null}}\n',
        "\t[]\r\n",
        '"\\u00e9\\ud83d\\udc0d"',
        "-12",
        "1E-2",
        "[Infinity, -Infinity]",
    ],
)
def test_loads_reads_what_json_reads(text: str) -> None:
    assert cjson.loads(text) == json.loads(text)
    assert cjson.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    "bad", ["", "   ", "{", '{"a" 1}', "[1,]", "01", "nul", "1 2", '{"a": 1} x', b"\xff"]
)
def test_loads_rejects_what_json_rejects(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        cjson.loads(bad)


def test_what_json_cannot_write_raises_the_same_errors() -> None:
    for value in ({"s": {1, 2}}, {1.5: "float key"} | {(1,): "tuple key"}):
        with pytest.raises(TypeError):
            json.dumps(value)
        with pytest.raises(TypeError):
            cjson.dumps(value)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"[Cc]ircular"):
        cjson.dumps(loop)


def test_a_run_request_decodes_as_the_daemon_validates_it() -> None:
    from pytest_fastcollect.wire import protocol as p

    raw = lite.encode_run(["-q", "tests/x.py", "é"], "/tmp", {"K": "v\u2028"}, 0o22, "py", ["/a"])
    request = p.request_adapter().validate_json(raw)
    assert isinstance(request, p.RunRequest)
    assert request.args == ["-q", "tests/x.py", "é"]
    assert request.env == {"K": "v\u2028"}


def test_the_client_start_up_imports_none_of_the_costly_modules(tmp_path: Any) -> None:
    """What a run through the thin client or the start-up hook imports before it connects."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from pytest_fastcollect.client import early, handoff, route, thin, transport\n"
        "from pytest_fastcollect import fingerprint, process_exit, rootdir\n"
        "from pytest_fastcollect.wire import framing, lite\n"
        "route.route(['-q', 'tests'], sys.argv[1])\n"
        "lite.decode_run_response(lite.encode_run(['-q'], '.', {}, 0, '', []).replace("
        'b\'"command":"run"\', b\'"kind":"notice","message":"m"\'))\n'
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_FASTCOLLECT")}
    env["PYTEST_FASTCOLLECT_RUNTIME_DIR"] = str(tmp_path / "rt")
    # The first run parses pyproject.toml (tomllib) and caches what it needs; the
    # second is the steady state of the edit-test loop.
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.split()
    costly = {"json", "re", "enum", "socket", "signal", "collections", "functools", "array"}
    assert not costly & set(out), sorted(costly & set(out))
    assert "pytest_fastcollect.wire.cjson" in out  # the test looked at the real path
