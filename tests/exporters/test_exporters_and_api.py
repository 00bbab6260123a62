"""Wire shape, the bundled exporters, the batch pipeline, tracer.testing and the public surface."""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import tracer
from tracer import Batch, ConsoleExporter, Exporter, ExportResult, InMemoryExporter, JSONLExporter, Tracer
from tracer.testing import CapturedEvents

from ..conftest import Recorder

WIRE_FIELDS = [
    "project",
    "source",
    "event_name",
    "event_type",
    "event_id",
    "session_id",
    "parent_id",
    "children_ids",
    "config",
    "inputs",
    "outputs",
    "error",
    "start_time",
    "end_time",
    "duration",
    "metadata",
    "feedback",
    "metrics",
    "user_properties",
]


def test_events_have_exactly_the_wire_shape(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="shape")
    def shape(x: int) -> int:
        return x

    shape(1)
    event = rec.by_name("shape")
    assert list(event) == WIRE_FIELDS
    for key in ("event_id", "session_id", "parent_id"):
        assert uuid.UUID(event[key]).version == 4
    for key in ("config", "inputs", "outputs", "metadata", "feedback", "metrics", "user_properties"):
        assert isinstance(event[key], dict)
    assert isinstance(event["start_time"], int) and isinstance(event["end_time"], int)
    assert isinstance(event["duration"], float)
    assert (event["project"], event["source"], event["event_type"], event["error"]) == ("test", "test", "tool", None)


def test_jsonl_exporter_to_path_and_stream(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.jsonl"
    stream = io.StringIO()
    t = Tracer(exporter=[JSONLExporter(path), JSONLExporter(stream)], batch=False)
    with t.span("a"), t.span("b"):
        pass
    t.shutdown()
    from_file = [json.loads(line) for line in path.read_text().splitlines()]
    from_stream = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event_name"] for e in from_file] == ["b", "a"]
    assert from_file == from_stream
    assert not stream.closed  # a stream it did not open is left open
    assert list(from_file[0]) == WIRE_FIELDS


def test_console_exporter_prints_an_indented_tree() -> None:
    out = io.StringIO()
    t = Tracer(exporter=ConsoleExporter(out), batch=False, session_name="demo")

    @t.trace(event_type="model", event_name="llm")
    def llm(prompt: str) -> str:
        return "Paris"

    @t.trace(event_name="lookup")
    def lookup() -> None:
        raise KeyError("missing")

    with t.span("agent"):
        llm("capital of France?")
        with contextlib.suppress(KeyError):
            lookup()
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].startswith("session demo (")
    duration = r"\d+(\.\d)? (ms|µs)"
    assert re.match(rf"└─ chain agent  {duration}$", lines[1])
    assert re.match(rf"   ├─ model llm  {duration}  → Paris$", lines[2])
    assert re.match(rf"   └─ tool  lookup  {duration}  ✗ KeyError: 'missing'$", lines[3])


def test_batch_pipeline_delivers_in_the_background(batch_rec: Recorder) -> None:
    t = batch_rec.tracer
    for i in range(1500):
        with t.span("bulk", inputs={"i": i}):
            pass
    assert t.flush(5.0)
    events = batch_rec.exporter.events
    assert sorted(e["inputs"]["i"] for e in events) == list(range(1500))
    stats = t.stats()
    assert stats["created"] == 1500 and stats["sent"] == 1500 and stats["queue_size"] == 0
    worker = [th for th in threading.enumerate() if th.name == "tracer-worker"]
    assert worker and all(th.daemon for th in worker)


def test_first_batch_arrives_quickly_without_flush(batch_rec: Recorder) -> None:
    with batch_rec.tracer.span("early"):
        pass
    deadline = time.monotonic() + 2.0
    while not batch_rec.exporter.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batch_rec.exporter.events  # sent by the ~100 ms first-flush timer


class FailingExporter(Exporter):
    def export(self, batch: Batch) -> ExportResult:
        return ExportResult(delivered=0, failed=len(batch), reason="rejected")


def test_flush_reports_losses_and_stats_say_why() -> None:
    t = Tracer(exporter=FailingExporter(), batch=True)
    with t.span("lost"):
        pass
    assert t.flush(2.0) is False
    assert t.stats()["dropped"]["rejected"] == 1
    assert t.flush(2.0) is True  # nothing new was lost since the last flush
    t.shutdown()


def test_queue_bound_drops_oldest_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    class Slow(InMemoryExporter):
        def export(self, batch: Batch) -> bool:
            gate.wait(5)
            return super().export(batch)

    slow = Slow()
    t = Tracer(exporter=slow, batch=True, max_queue_size=10, max_batch_size=5)
    for i in range(200):
        with t.span("e", inputs={"i": i}):
            pass
    gate.set()
    assert t.flush(5.0) is False
    stats = t.stats()
    assert stats["dropped"]["queue_full"] > 0
    assert stats["sent"] + stats["dropped"]["queue_full"] == 200
    kept = [e["inputs"]["i"] for e in slow.events]
    assert 199 in kept  # the newest survive
    t.shutdown()


def test_events_after_shutdown_are_counted_not_sent() -> None:
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=True)
    t.shutdown()
    with t.span("late"):
        pass
    assert memory.events == []
    assert t.stats()["dropped"]["after_shutdown"] == 1


def test_aflush_does_not_block_the_loop(batch_rec: Recorder) -> None:
    import asyncio

    async def main() -> bool:
        with batch_rec.tracer.span("async-flush"):
            pass
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        ok = await batch_rec.tracer.aflush(2.0)
        task.cancel()
        return ok

    assert asyncio.run(main())
    assert batch_rec.exporter.by_name("async-flush")


def test_testing_capture_and_fixture(tracer_events: CapturedEvents) -> None:
    @tracer.trace(event_name="under-test")
    def under_test(x: int) -> int:
        with tracer.span("step"):
            return x

    under_test(3)
    assert tracer_events.names() == ["step", "under-test"]
    parent = tracer_events.by_name("under-test")
    assert tracer_events.children_of(parent) == [tracer_events.by_name("step")]
    with tracer.testing.capture() as inner:
        under_test(4)
    assert inner.by_name("under-test")["inputs"] == {"x": 4}


def test_custom_exporter_receives_sessions_and_encoded_events() -> None:
    received: list[Any] = []

    class Collect(Exporter):
        def export(self, batch: Batch) -> None:
            received.append((list(batch.session_ids), dict(batch.sessions), [json.loads(b) for b in batch.encoded]))

    t = Tracer(exporter=Collect(), batch=False, session_name="custom")
    with t.span("x") as span:
        pass
    session_ids, sessions, events = received[0]
    assert session_ids == [span.session_id]
    assert sessions[span.session_id]["session_name"] == "custom"
    assert events[0]["event_id"] == span.event_id


def test_public_all_is_sorted_and_complete() -> None:
    assert tracer.__all__ == sorted(tracer.__all__)
    import types

    public = {
        name
        for name, obj in vars(tracer).items()
        if not name.startswith(("_", "@"))
        and not isinstance(obj, types.ModuleType)
        and str(getattr(obj, "__module__", "")).startswith("tracer")
    }
    assert public <= set(tracer.__all__)
    for name in tracer.__all__:
        assert hasattr(tracer, name)
    assert tracer.exporters.__all__ == sorted(tracer.exporters.__all__)


def test_readme_configuration_table_lists_every_setting() -> None:
    from tracer._config import SETTINGS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for setting in SETTINGS:
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{setting.name}` |")), None)
        assert row is not None, f"README configuration table lacks {setting.name}"
        for env in setting.env:
            assert f"`{env}`" in row, (setting.name, env)


@pytest.mark.parametrize("outcome", ["false", "raise"])
def test_late_updates_an_exporter_failed_are_not_counted_as_sent(outcome: str) -> None:
    class Failing(Exporter):
        def export(self, batch: Batch) -> bool:
            if outcome == "raise":
                raise OSError("disk full")
            return False

    t = Tracer(project="test", source="test", exporter=Failing(), batch=False)
    try:
        with t.span("step") as span:
            pass
        span.update(metadata={"late": True})
        stats = t.stats()
        assert (stats["sent"], stats["updates_sent"]) == (0, 0)
    finally:
        t.shutdown(1.0)
