"""The pydantic-free run codec (wire/lite.py) stays in step with the protocol models."""

from __future__ import annotations

import pydantic
import pytest

from pytest_fastcollect.wire import protocol as p

# --- the pydantic-free run codec stays in step with the models --------------------------------


def test_lite_run_request_validates_against_the_model() -> None:
    from pytest_fastcollect.wire import lite

    raw = lite.encode_run(
        ["-q", "tests"], "/src/app", {"A": "1"}, 0o22, "/usr/bin/python3", ["/src/app"]
    )
    req = p.request_adapter().validate_json(raw)
    assert isinstance(req, p.RunRequest)
    assert (req.args, req.cwd, req.env, req.umask, req.fd_count) == (
        ["-q", "tests"],
        "/src/app",
        {"A": "1"},
        0o22,
        3,
    )
    sig = p.request_adapter().validate_json(lite.encode_signal(15))
    assert isinstance(sig, p.SignalRequest)
    assert sig.signum == 15


@pytest.mark.parametrize(
    "model",
    [
        p.Notice(message="reloading 1 module(s)"),
        p.RunRefused(reason="the warm process is not available"),
        p.RunStarted(pid=12, generation=3),
        p.RunFinished(exit_code=1),
        p.RunFinished(exit_code=130, signal=2, message="interrupted"),
        p.ErrorResponse(code=p.ErrorCode.BUSY, message="busy"),
    ],
)
def test_every_run_response_decodes_in_the_lite_codec(model: pydantic.BaseModel) -> None:
    from pytest_fastcollect.wire import lite

    decoded = lite.decode_run_response(p.dump(model))
    data = model.model_dump(mode="json")
    fields = {name: getattr(decoded, name) for name in type(decoded).__slots__}
    assert fields, "decoded into an empty object"
    for name, value in fields.items():
        assert data[name] == value, name


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"kind": "status"}',
        b'{"kind": "run_started", "pid": "1"}',
        b'{"kind": "run_finished", "exit_code": true}',
    ],
)
def test_lite_codec_refuses_what_the_models_would(raw: bytes) -> None:
    from pytest_fastcollect.wire import lite

    with pytest.raises(lite.LiteProtocolError):
        lite.decode_run_response(raw)
