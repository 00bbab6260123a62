"""The worker hands the GIL back to the app while it encodes a calm queue (see _pipeline._drain)."""

from __future__ import annotations

from typing import Any

import tracer
from tracer._encode import _PAUSE_EVERY
from tracer.exporters import InMemoryExporter


def _traced_events(t: tracer.Tracer, count: int) -> None:
    @t.trace
    def leaf(n: int) -> dict[str, int]:
        return {"n": n}

    for n in range(count):
        leaf(n)


def _recording_encoder(t: tracer.Tracer) -> list[tuple[int, bool, int]]:
    """Wrap the processor's encoder: (events in the batch, pause given, pauses made) per call."""
    processor = t._processor  # type: ignore[attr-defined]
    encoder = processor.encoder
    real_encode = encoder.encode
    calls: list[tuple[int, bool, int]] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(encoder, name)

        def encode(self, items: Any, registry: Any, pause: Any = None) -> Any:
            made = [0]

            def counted() -> None:
                made[0] += 1
                pause()

            batch = real_encode(items, registry, counted if pause is not None else None)
            calls.append((len(items), pause is not None, made[0]))
            return batch

    processor.encoder = Recording()
    return calls


def test_the_encoder_pauses_between_runs_and_encodes_the_same() -> None:
    exporter = InMemoryExporter()
    t = tracer.Tracer(exporter=exporter, project="p", max_batch_size=1000, flush_interval=600, first_flush_interval=600)
    calls = _recording_encoder(t)
    _traced_events(t, 1000)
    assert t.flush(10)
    assert sum(n for n, _, _ in calls) == 1000
    for events, paced, pauses in calls:
        assert paced  # a calm queue: the worker asked for pauses
        assert pauses == (events - 1) // _PAUSE_EVERY  # between runs of 128, none after the last
    assert [event["inputs"] for event in exporter.events] == [{"n": n} for n in range(1000)]


def test_a_queue_past_its_wake_threshold_is_encoded_without_pauses() -> None:
    exporter = InMemoryExporter()
    # 400 events of ~500 bytes each are over half of 300 KiB: past the calm threshold
    # (max_queue_bytes / 2) when flush() hands the queue to the worker.
    t = tracer.Tracer(
        exporter=exporter,
        project="p",
        max_queue_bytes=300 * 1024,
        max_batch_size=1000,
        flush_interval=600,
        first_flush_interval=600,
        spool=False,
    )
    calls = _recording_encoder(t)
    _traced_events(t, 400)
    assert t.flush(10)
    assert calls and not calls[0][1]  # the first batch was taken from a full queue: no pauses
    assert len(exporter.events) == 400
