"""When a new environment needs a new base process (supervisor/layers.py), without processes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_fastcollect.supervisor import layers
from pytest_fastcollect.supervisor.lifecycle import WarmState


class FakeBase:
    """A base process that is ready at once; it read PYTHONHASHSEED and LIB_MODE."""

    made: list[FakeBase] = []

    def __init__(self, spec: Any, on_death: Any = None) -> None:
        self.env = spec
        key = SimpleNamespace(env={"PYTHONHASHSEED": None, "LIB_MODE": spec.get("LIB_MODE")})
        self.ready = SimpleNamespace(key=key, cached_modules=1, seconds=0.1)
        self.state = WarmState.READY
        self.pid = 1
        self.error = None
        self.retired = False
        self.env_read = set(key.env)
        FakeBase.made.append(self)

    def alive(self) -> bool:
        return not self.retired

    def wait_ready(self, timeout: float | None = None) -> bool:
        return True

    def retire(self) -> None:
        self.retired = True


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> layers.Layers:
    FakeBase.made = []
    monkeypatch.setattr(layers, "BaseProcess", FakeBase)
    return layers.Layers(lambda env: env, lambda _progress: None, lambda: None)


def test_a_variable_only_the_project_reads_keeps_the_base(source: layers.Layers) -> None:
    first = source._ready_base({"PATH": "/bin"})
    # STALE_MODE: read by project code only, which the new layer imports afresh.
    assert source._ready_base({"PATH": "/bin", "STALE_MODE": "x"}) is first
    assert source.base_for_runs() is first and not first.retired  # type: ignore[comparison-overlap]


@pytest.mark.parametrize(
    "changed", [{"PYTHONHASHSEED": "0"}, {"LIB_MODE": "fast"}, {"LEARNED": "1"}]
)
def test_a_variable_the_base_read_renews_it(source: layers.Layers, changed: dict[str, str]) -> None:
    first = source._ready_base({"PATH": "/bin"})
    first.env_read.add("LEARNED")  # as a learned library's import reports it
    second = source._ready_base({"PATH": "/bin", **changed})
    assert second is not first and first.retired  # type: ignore[attr-defined]
