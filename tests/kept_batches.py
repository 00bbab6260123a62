"""An exporter for tests that keeps the batches the pipeline hands it."""

from __future__ import annotations

from tracer import Batch, Exporter


class KeepBatches(Exporter):
    """Keeps every batch; with *pieces* (the default) it writes from the events' pieces as the OTLP
    exporter does (``uses_event_parts``), so the pipeline fills ``Batch.parts`` for it."""

    def __init__(self, pieces: bool = True) -> None:
        self.uses_event_parts = pieces
        self.batches: list[Batch] = []

    def export(self, batch: Batch) -> bool:
        self.batches.append(batch)
        return True
