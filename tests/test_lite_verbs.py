"""The quick verbs' codec (wire/lite_verbs.py) stays in step with the protocol models,
and ``--daemon-status`` / ``--daemon-health`` never import pydantic."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pydantic
import pytest

from pytest_fastcollect.client import ui
from pytest_fastcollect.wire import lite_verbs
from pytest_fastcollect.wire import protocol as p

SCHEMAS: list[tuple[lite_verbs.Schema, type[pydantic.BaseModel]]] = [
    (lite_verbs.STATUS, p.StatusResponse),
    (lite_verbs.HEALTH, p.HealthResponse),
    (lite_verbs.ERROR, p.ErrorResponse),
    (lite_verbs.METRICS, p.Metrics),
    (lite_verbs.WARMUP, p.WarmupStats),
    (lite_verbs.IMPORT_FAILURE, p.ImportFailure),
    (lite_verbs.RELOAD, p.ReloadStats),
    (lite_verbs.LAST_RELOAD, p.LastReload),
    (lite_verbs.PROCESS, p.ProcessInfo),
    (lite_verbs.VERSIONS, p.Versions),
    (lite_verbs.CHECK, p.HealthCheck),
]


@pytest.mark.parametrize("schema,model", SCHEMAS, ids=[m.__name__ for _, m in SCHEMAS])
def test_schema_has_the_models_fields(schema: lite_verbs.Schema, model: Any) -> None:
    """Same fields, in the same order, required where the model requires them."""
    assert list(schema.fields) == list(model.model_fields)
    for name, info in model.model_fields.items():
        required = schema.fields[name][1] is lite_verbs.REQUIRED
        assert required == info.is_required(), name


def status_model() -> p.StatusResponse:
    process = p.ProcessInfo(
        role="warm",
        pid=12,
        rss_bytes=1 << 20,
        pss_bytes=None,
        cpu_percent=1.5,
        cpu_seconds=0.25,
        threads=2,
        open_fds=9,
        children=1,
        zombies=0,
    )
    return p.StatusResponse(
        request_id="abc",
        pid=11,
        state=p.DaemonState.READY,
        uptime=12.5,
        root="/src/app",
        socket_path="/run/x.sock",
        log_path="/run/x.log",
        versions=p.Versions(plugin="0.1", protocol=1, python="3.11.7", pytest="9.2.0"),
        generation=4,
        warm_pid=None,
        warm_paths=["tests"],
        cached_modules=900,
        project_modules=10,
        watched_paths=["/src/app"],
        inotify_watches=3,
        metrics=p.Metrics(total_requests=5, runs=3, by_command={"run": 3}, standby_runs=2),
        warmup=p.WarmupStats(
            imported=5, total=6, seconds=2.0, failures=[p.ImportFailure(path="t.py", error="E")]
        ),
        reload=p.ReloadStats(
            reloads=1,
            last=p.LastReload(
                at=1.0, files=["a.py"], modules=2, duration_ms=3.5, action="reimport"
            ),
            mean_ms=3.5,
            replacements={"conftest": 1},
        ),
        processes=[process, process.model_copy(update={"role": "base", "pss_bytes": 4096})],
        limits={"max_connections": 10, "request_timeout": 30.0},
    )


def health_model() -> p.HealthResponse:
    return p.HealthResponse(
        status=p.HealthVerdict.DEGRADED,
        pid=11,
        generation=2,
        uptime=3.0,
        checks={
            "a": p.HealthCheck(ok=True, value=True),
            "b": p.HealthCheck(ok=False, value=0.5, display="0.50", severity="degraded"),
            "c": p.HealthCheck(ok=True, value=None, detail="d"),
            "d": p.HealthCheck(ok=True, value="inotify"),
            "e": p.HealthCheck(ok=True, value=7),
        },
    )


@pytest.mark.parametrize(
    "model,command",
    [
        (status_model(), "status"),
        (health_model(), "health"),
        (p.ErrorResponse(code=p.ErrorCode.NOT_READY, message="warming"), "status"),
    ],
    ids=["status", "health", "error"],
)
def test_model_dumped_answers_decode_to_the_models_dump(model: Any, command: str) -> None:
    _record, data = lite_verbs.decode_response(p.dump(model), command)
    expected = model.model_dump(mode="json")
    assert data == expected
    assert json.dumps(data) == json.dumps(expected)  # the same order for --daemon-json


def test_records_render_as_the_models_do() -> None:
    status = status_model()
    record, _ = lite_verbs.decode_response(p.dump(status), "status")
    assert ui.render_status(record) == ui.render_status(status)
    health = health_model()
    record, _ = lite_verbs.decode_response(p.dump(health), "health")
    assert ui.render_health(record) == ui.render_health(health)


def test_requests_validate_against_the_models() -> None:
    req = p.request_adapter().validate_json(lite_verbs.encode_request("status", full=True))
    assert isinstance(req, p.StatusRequest) and req.full
    req = p.request_adapter().validate_json(lite_verbs.encode_request("health"))
    assert isinstance(req, p.HealthRequest)


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"kind": "run_started", "pid": 1, "generation": 1}',
        json.dumps({**health_model().model_dump(mode="json"), "extra": 1}).encode(),
        json.dumps({**health_model().model_dump(mode="json"), "status": "fine"}).encode(),
        json.dumps({**health_model().model_dump(mode="json"), "pid": "11"}).encode(),
        json.dumps(
            {k: v for k, v in health_model().model_dump(mode="json").items() if k != "checks"}
        ).encode(),
    ],
    ids=["not-json", "not-object", "other-kind", "extra", "bad-enum", "bad-type", "missing"],
)
def test_what_the_models_refuse_is_refused(raw: bytes) -> None:
    with pytest.raises(lite_verbs.LiteVerbError):
        lite_verbs.decode_response(raw, "health")


def test_the_quick_verbs_import_no_pydantic() -> None:
    code = (
        "import sys\n"
        "from pytest_fastcollect.client import fastverbs, verbs\n"
        "assert 'pydantic' not in sys.modules, 'pydantic imported'\n"
        "assert 'pytest' not in sys.modules and '_pytest' not in sys.modules, 'pytest imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
