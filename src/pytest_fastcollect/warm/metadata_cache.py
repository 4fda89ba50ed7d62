"""Installed-package metadata read once in the warm process, for the runs' start-up.

Every pytest session walks ``importlib.metadata.distributions()`` twice
before any conftest is imported: to load the ``pytest11`` entry points
(pluggy) and to mark plugin modules for assertion rewriting. Each walk reads
and parses ``entry_points.txt`` of every installed distribution, and
``RECORD`` and ``METADATA`` of the plugins: tens of files per run, and a
path object for every file each plugin installed. Within one warm process
they cannot change (installing, upgrading or removing a package replaces
the warm process), so the warm process reads them once and a run's pytest
start-up gets the same answers from memory. The plugins' ``METADATA`` is
parsed once as well: the terminal header asks each plugin for its name and
version (an email-header parse each) in every session.

The cache is installed in a forked run just before pytest starts and
removed when pytest reaches ``pytest_load_initial_conftests``: conftests,
test modules and the tests themselves always see the real
``importlib.metadata``.
"""

from __future__ import annotations

import email
import email.message
import importlib.metadata as md
import os
from collections.abc import Iterator
from typing import Any

PLUGIN_FILES = ("RECORD", "METADATA", "PKG-INFO", "direct_url.json", "top_level.txt")


class CachedDistribution(md.Distribution):
    """A distribution whose metadata files are read once (then from memory)."""

    def __init__(self, dist: md.Distribution) -> None:
        self._dist = dist
        self._texts: dict[str, str | None] = {}
        # Parsed once too: both walks ask every distribution for its entry
        # points, and the plugins for their file lists (hundreds of paths).
        self._entry_points: md.EntryPoints | None = None
        self._files: tuple[list[md.PackagePath] | None] | None = None
        self._parsed: email.message.Message | None = None

    def read_text(self, filename: str) -> str | None:
        try:
            return self._texts[filename]
        except KeyError:
            text = self._texts[filename] = self._dist.read_text(filename)
            return text

    @property
    def entry_points(self) -> md.EntryPoints:
        if self._entry_points is None:
            self._entry_points = super().entry_points
        return self._entry_points

    @property
    def files(self) -> list[md.PackagePath] | None:
        if self._files is None:
            self._files = (super().files,)
        found = self._files[0]
        # A copy of the list: a caller may change it, never the cache.
        return None if found is None else list(found)

    @property
    def metadata(self) -> md.PackageMetadata:
        adapter: Any = getattr(getattr(md, "_adapters", None), "Message", None)
        if adapter is None:
            return super().metadata
        if self._parsed is None:
            text = self.read_text("METADATA") or self.read_text("PKG-INFO") or self.read_text("")
            if text is None:
                return super().metadata  # what the real one does (or raises) here
            self._parsed = email.message_from_string(text)
        # importlib.metadata's own wrapping, with headers of its own each time:
        # a caller that changes them never changes the cache.
        return adapter(self._parsed)  # type: ignore[no-any-return]

    def locate_file(self, path: str | os.PathLike[str]) -> Any:
        return self._dist.locate_file(path)

    @property
    def _path(self) -> Any:  # what pytest and pluggy report for a plugin's origin
        return getattr(self._dist, "_path", None)


_original = md.distributions


class _State:
    cached: list[CachedDistribution] | None = None


def prepare() -> None:
    """In the warm process: read what a pytest start-up reads (once: layers inherit it)."""
    if _State.cached is not None:
        return
    cached = [CachedDistribution(d) for d in _original()]
    for dist in cached:
        if any(ep.group == "pytest11" for ep in dist.entry_points):
            for name in PLUGIN_FILES:
                dist.read_text(name)
            dist.files  # noqa: B018 - parsed here, once
            dist.metadata  # noqa: B018
    _State.cached = cached


def _distributions(**kwargs: Any) -> Iterator[md.Distribution]:
    cached = _State.cached
    if kwargs or cached is None:
        return iter(_original(**kwargs))
    return iter(cached)


def install() -> None:
    """In a forked run, before pytest starts."""
    if _State.cached is not None:
        md.distributions = _distributions


def uninstall() -> None:
    """When pytest is about to import conftests: the real thing from here on."""
    md.distributions = _original
