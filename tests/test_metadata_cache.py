"""The installed-package metadata a run's pytest start-up reads from memory
(warm/metadata_cache.py) equals what ``importlib.metadata`` reads from disk."""

from __future__ import annotations

import email
import importlib.metadata as md
from collections.abc import Iterator

import pytest

from pytest_fastcollect.warm import metadata_cache


@pytest.fixture
def cache() -> Iterator[None]:
    saved = metadata_cache._State.cached
    metadata_cache._State.cached = None
    metadata_cache.prepare()
    metadata_cache.install()
    try:
        yield
    finally:
        metadata_cache.uninstall()
        metadata_cache._State.cached = saved


def _plugins(dists: Iterator[md.Distribution]) -> dict[str, md.Distribution]:
    return {
        d.metadata["Name"]: d for d in dists if any(ep.group == "pytest11" for ep in d.entry_points)
    }


def test_cached_metadata_equals_the_real(cache: None) -> None:
    real = list(metadata_cache._original())
    cached = list(md.distributions())
    assert cached is not real and all(
        isinstance(d, metadata_cache.CachedDistribution) for d in cached
    )
    assert [list(d.entry_points) for d in cached] == [list(d.entry_points) for d in real]
    plugins, real_plugins = _plugins(iter(cached)), _plugins(iter(real))
    assert "pytest-fastcollect" in plugins and set(plugins) == set(real_plugins)
    for name, dist in plugins.items():
        assert dist.files == real_plugins[name].files, name


def test_a_caller_changing_the_file_list_does_not_change_the_cache(cache: None) -> None:
    dist = next(iter(_plugins(md.distributions()).values()))
    files = dist.files
    assert files
    files.clear()
    assert dist.files and dist.files == dist._dist.files  # type: ignore[attr-defined]


def test_the_cache_is_filled_in_the_warm_process(cache: None) -> None:
    """What forks inherit: the plugins' entry points and file lists already parsed."""
    cached = metadata_cache._State.cached
    assert cached is not None
    plugins = [
        d
        for d in cached
        if d._entry_points and any(ep.group == "pytest11" for ep in d._entry_points)
    ]
    assert plugins and all(d._files is not None for d in plugins)
    assert all(d._entry_points is not None for d in cached)


def test_parsed_metadata_equals_the_real_and_is_parsed_once(
    cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = {
        name: (d.metadata, d.version) for name, d in _plugins(metadata_cache._original()).items()
    }
    parses: list[str] = []
    monkeypatch.setattr(email, "message_from_string", parses.append)
    for name, dist in _plugins(md.distributions()).items():
        ours = dist.metadata
        theirs, version = real[name]
        assert type(ours) is type(theirs), name
        assert list(ours.items()) == list(theirs.items()), name
        assert ours.json == theirs.json, name
        # A caller changing what it got changes neither the cache nor the next answer.
        del ours["Name"]
        assert dist.metadata["Name"] == name
        assert dist.version == version
    assert parses == []  # parsed in the warm process (prepare), never again
