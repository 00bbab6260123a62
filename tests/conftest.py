"""Shared fixtures. Library-internal errors are re-raised in this suite, so bugs fail tests."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

os.environ["TRACER_RAISE_INTERNAL_ERRORS"] = "1"

import tracer
from tracer import InMemoryExporter, Tracer

_TRACER_ENV = [
    name
    for name in os.environ
    if name.startswith(("TRACER_", "HH_", "OTEL_EXPORTER_OTLP_", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"))
    and name != "TRACER_RAISE_INTERNAL_ERRORS"
]
for _name in _TRACER_ENV:  # the developer's own settings must not leak into the tests
    del os.environ[_name]
# A tracer built without exporter or API key writes the local store: never the working tree's.
_SCRATCH = tempfile.mkdtemp(prefix="tracer-tests-")
os.environ["TRACER_STORE"] = os.path.join(_SCRATCH, "traces.db")
# The viewer's search indexes go to the cache directory: this run's own, not the developer's ~/.cache.
os.environ["XDG_CACHE_HOME"] = os.path.join(_SCRATCH, "cache")


class Recorder:
    """A tracer wired to an in-memory exporter, with helpers to read what it recorded."""

    def __init__(self, **options: object) -> None:
        self.exporter = InMemoryExporter()
        self.tracer = Tracer(project="test", source="test", exporter=self.exporter, **options)  # type: ignore[arg-type]

    def events(self) -> list[dict]:
        assert self.tracer.flush(5.0)
        return list(self.exporter.events)

    def by_name(self, name: str) -> dict:
        found = [e for e in self.events() if e["event_name"] == name]
        assert len(found) == 1, [e["event_name"] for e in self.events()]
        return found[0]


@pytest.fixture
def rec() -> Iterator[Recorder]:
    """Synchronous export: events are visible as soon as they end."""
    recorder = Recorder(batch=False, propagate_to_threads=True)
    yield recorder
    recorder.tracer.shutdown(1.0)


@pytest.fixture
def batch_rec() -> Iterator[Recorder]:
    """The real background pipeline."""
    recorder = Recorder(batch=True)
    yield recorder
    recorder.tracer.shutdown(2.0)


@pytest.fixture(autouse=True)
def _own_spool(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's tracers spool to a file of their own: never the working tree's, never another test's."""
    monkeypatch.setenv("TRACER_SPOOL", str(tmp_path_factory.mktemp("spool") / "spool.db"))


@pytest.fixture(autouse=True)
def _default_tracer_is_quiet(_own_spool: None) -> Iterator[None]:
    """Module-level API tests get a default tracer that records in memory, reset after each test."""
    tracer.init(exporter=InMemoryExporter(), project="test", source="test", batch=False)
    yield


from .collector import collector  # noqa: E402, F401  (the fake HoneyHive server fixture)
