"""The exporter interface as the pipeline uses it: an exporter sees only batches (and, optionally, a
time limit) and reports in its ``ExportResult`` everything it wants counted; the pipeline counts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import tracer
from tracer import Batch, Exporter, ExportResult, Tracer
from tracer.exporters import HoneyHiveExporter

from ..collector import Collector
from .test_honeyhive_exporter import make_batch


def _wait_for(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- exporters written against the documented interface keep working --------------------------------


def test_a_readme_style_exporter_still_works_in_the_background(capsys: pytest.CaptureFixture[str]) -> None:
    class PrintIds(tracer.Exporter):  # README, "Write your own": a one-argument export(batch)
        def export(self, batch: tracer.Batch) -> bool:
            for event in batch.events():
                print(event["event_id"], event["event_name"])
            return True

    t = Tracer(project="test", source="test", exporter=PrintIds(), batch=True, instrument=False)
    try:
        with t.span("step") as span:
            pass
        assert t.flush(5.0)
        assert f"{span.event_id} step" in capsys.readouterr().out
        assert (t.stats()["sent"], t.stats()["dropped_total"], t.stats()["last_error"]) == (1, 0, None)
    finally:
        t.shutdown(1.0)


def test_an_exporter_overriding_export_batches_without_a_timeout_still_works() -> None:
    got: list[int] = []

    class Several(Exporter):
        max_in_flight = 4

        def export_batches(self, batches: list[Batch]) -> list[ExportResult | bool | None]:  # type: ignore[override]
            got.extend(len(batch) for batch in batches)
            return [True for _ in batches]

    t = Tracer(project="test", source="test", exporter=Several(), batch=True, instrument=False)
    try:
        for index in range(10):
            with t.span(f"s{index}"):
                pass
        assert t.flush(5.0)
        assert sum(got) == 10 and t.stats()["sent"] == 10
    finally:
        t.shutdown(1.0)


def test_a_spooled_exporter_written_before_the_timeout_argument_is_called_without_it(
    collector: Collector, tmp_path: Path
) -> None:
    class OldStyle(HoneyHiveExporter):
        def export_batches(self, batches: list[Batch]) -> list[ExportResult | bool | None]:  # type: ignore[override]
            return super().export_batches(batches)

    exporter = OldStyle("k", collector.url)
    t = Tracer(project="test", source="test", exporter=exporter, spool=str(tmp_path / "s.db"), instrument=False)
    try:
        with t.span("old-style"):
            pass
        assert t.flush(5.0)
        stats = t.stats()
        assert (stats["sent"], stats["dropped_total"], stats["last_error"]) == (1, 0, None)
        assert collector.by_name("old-style")
    finally:
        t.shutdown(1.0)


# -- the pipeline counts what exporters report ------------------------------------------------------


def test_the_pipeline_counts_requests_errors_and_lost_updates_an_exporter_reports() -> None:
    class Reporting(Exporter):
        def export(self, batch: Batch) -> ExportResult:
            if not batch.updates:
                return ExportResult(delivered=len(batch), retried_requests=2, failed_requests=1, last_error="first")
            return ExportResult(
                delivered=len(batch),
                updates_failed=len(batch.updates),
                updates_rejected=1,
                retried_requests=1,
                last_error="an update was refused",
            )

    t = Tracer(project="test", source="test", exporter=Reporting(), batch=False, instrument=False)
    try:
        with t.span("a") as first, t.span("b") as second:
            pass
        first.update(metadata={"late": 1})  # refused (rejected)
        second.update(metadata={"late": 2})  # not delivered (export_failed)
        stats = t.stats()
        assert (stats["sent"], stats["updates_sent"]) == (2, 0)
        assert (stats["retried_requests"], stats["failed_requests"]) == (2 * 2 + 2 * 1, 2 * 1)
        assert stats["last_error"] == "an update was refused"
        # One update per batch (batch=False): each batch reports its one update failed and "1 refused".
        assert (stats["dropped"]["rejected"], stats["dropped"]["export_failed"]) == (2, 0)
    finally:
        t.shutdown(1.0)


def test_updates_failed_without_a_reason_count_as_export_failed() -> None:
    class Failing(Exporter):
        def export(self, batch: Batch) -> bool:
            return not batch.updates  # README: returning False counts the batch as lost, its updates included

    t = Tracer(project="test", source="test", exporter=Failing(), batch=False, instrument=False)
    try:
        with t.span("step") as span:
            pass
        span.update(metadata={"late": True})
        stats = t.stats()
        assert (stats["sent"], stats["updates_sent"], stats["dropped"]["export_failed"]) == (1, 0, 1)
        assert t.flush(1.0) is False
    finally:
        t.shutdown(1.0)


# -- a time limit, passed as an argument --------------------------------------------------------------


def test_honeyhive_export_batches_keeps_within_the_timeout_it_is_given(collector: Collector) -> None:
    collector.outage(503)
    exporter = HoneyHiveExporter("k", collector.url, base_delay=0.01, max_delay=0.05, max_attempts=1000)
    try:
        started = time.monotonic()
        (result,) = exporter.export_batches([make_batch(2)], timeout=0.3)
        assert time.monotonic() - started < 2.0  # export_timeout (30 s) would still be retrying
        assert isinstance(result, ExportResult)
        assert (result.failed, result.reason, result.retry_events) == (2, "export_failed", (0, 1))
        assert result.failed_requests == 1 and result.retried_requests >= 1
        assert exporter.export_timeout == 30.0  # the exporter's own setting is left alone
    finally:
        collector.recover()
        exporter.shutdown()


def test_the_pipeline_bounds_a_spooled_exporters_retries_by_argument(
    collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pipeline's limit for an exporter with a spool (5 s), shortened for the test; the exporter's
    # own export_timeout (30 s) is far longer: the batch is spooled once the pipeline's limit is up.
    monkeypatch.setattr(tracer._pipeline, "_SPOOLED_EXPORT_TIMEOUT", 0.3)
    collector.outage(503)
    exporter = HoneyHiveExporter("k", collector.url, base_delay=0.01, max_delay=0.05, max_attempts=1000)
    t = Tracer(project="test", source="test", exporter=exporter, spool=str(tmp_path / "s.db"), instrument=False)
    try:
        with t.span("bounded"):
            pass
        assert _wait_for(lambda: t.stats()["spooled"] == 1, timeout=5.0), t.stats()
        stats = t.stats()
        assert stats["dropped_total"] == 0 and stats["failed_requests"] >= 1
        assert stats["last_error"] is not None
        assert exporter.export_timeout == 30.0
    finally:
        collector.recover()
        t.shutdown(2.0)
