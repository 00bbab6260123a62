"""Per-span overhead of @tracer.trace against OpenTelemetry, measured in the same process.

    python bench/overhead.py            # quick run (about a minute)
    python bench/overhead.py --calls 50000 --repeats 9

Workload (the same as ../shared/reference/peer-overhead.md): a 3-level decorated chain
outer(q, ctx) -> middle -> inner returning {"answer": q.upper(), "n": len(ctx)}, inputs and
outputs captured. Every variant runs its real pipeline: tracer's bounded queue and background
worker with an exporter that accepts and discards each batch (encoding included), and OTel's
BatchSpanProcessor with a no-op exporter. Variants are interleaved and each figure is the median
of the repeats, so machine noise hits all of them alike; compare the ratios, not the absolutes.

us/span (wall) = (time per outer call - undecorated time) / 3, on the calling thread; the
background worker shares the GIL, so its encoding shows up here too, and so does any other
process that takes this core.
thread cpu = the calling thread's own CPU time per span (time.thread_time around the loop): what
the app pays, without the worker's share of the GIL or the machine's other load.
cpu us/span counts every thread (process CPU time of the loop plus the final flush).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

Q = "what is the capital of france??"
CTX = {"a": 1, "b": "two", "c": [1, 2]}


def _chain(decorate: Callable[[Any], Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    @decorate
    def inner(q: str, ctx: dict[str, Any]) -> dict[str, Any]:
        return {"answer": q.upper(), "n": len(ctx)}

    @decorate
    def middle(q: str, ctx: dict[str, Any]) -> dict[str, Any]:
        return inner(q, ctx)

    @decorate
    def outer(q: str, ctx: dict[str, Any]) -> dict[str, Any]:
        return middle(q, ctx)

    @decorate
    async def ainner(q: str, ctx: dict[str, Any]) -> dict[str, Any]:
        return {"answer": q.upper(), "n": len(ctx)}

    @decorate
    async def amiddle(q: str, ctx: dict[str, Any]) -> dict[str, Any]:
        return await ainner(q, ctx)

    @decorate
    async def aouter(q: str, ctx: dict[str, Any]) -> dict[str, Any]:
        return await amiddle(q, ctx)

    return outer, aouter


class Variant:
    def __init__(self, name: str, decorate: Callable[[Any], Any], flush: Callable[[], Any]) -> None:
        self.name = name
        self.sync, self.async_ = _chain(decorate)
        self.flush = flush
        self.wall: list[float] = []
        self.thread_cpu: list[float] = []
        self.cpu: list[float] = []
        self.awall: list[float] = []


def make_variants(queue_size: int, otel_bridge: bool = False) -> list[Variant]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    import tracer

    class Discard(tracer.Exporter):
        def export(self, batch: tracer.Batch) -> bool:
            return True

    from tracer.exporters import OTLPExporter

    class OTLPEncodeDiscard(OTLPExporter):
        """The OTLP exporter's work on the worker (spans, protobuf, gzip), without the request."""

        def export_batches(self, batches: list[tracer.Batch], timeout: float | None = None) -> list[Any]:
            for batch in batches:
                gzip.compress(self.encode(batch), compresslevel=1)
            return [True] * len(batches)

    ours = tracer.Tracer(exporter=Discard(), session_name="bench", max_queue_size=queue_size)
    ours_otlp = tracer.Tracer(
        exporter=OTLPEncodeDiscard("http://127.0.0.1:9/v1/traces"), session_name="bench", max_queue_size=queue_size
    )
    off = tracer.Tracer(exporter=Discard(), disabled=True)

    class OtelDiscard(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class OtelOTLPDiscard(SpanExporter):
        """OTel's OTLP exporter's work (its protobuf encoder, gzip), without the request."""

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

            gzip.compress(encode_spans(spans).SerializeToString(), compresslevel=1)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OtelDiscard(), max_queue_size=queue_size))
    otlp_provider = TracerProvider()
    otlp_provider.add_span_processor(BatchSpanProcessor(OtelOTLPDiscard(), max_queue_size=queue_size))
    otel = provider.get_tracer("bench")

    def otel_io(fn: Any, otel: Any = otel) -> Any:
        """OTel with I/O capture: a span plus json.dumps of the arguments and of the result."""
        import functools
        import inspect

        name = fn.__name__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                with otel.start_as_current_span(name) as span:
                    span.set_attribute("input", json.dumps({"args": args, "kwargs": kwargs}, default=str))
                    result = await fn(*args, **kwargs)
                    span.set_attribute("output", json.dumps(result, default=str))
                    return result

            return awrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with otel.start_as_current_span(name) as span:
                span.set_attribute("input", json.dumps({"args": args, "kwargs": kwargs}, default=str))
                result = fn(*args, **kwargs)
                span.set_attribute("output", json.dumps(result, default=str))
                return result

        return wrapper

    bridged: list[Variant] = []
    if otel_bridge:
        # The bridge on (process-wide, through the default tracer): our own spans' path is the same
        # code; OpenTelemetry spans on the global provider become events through the Discard pipeline.
        from opentelemetry import trace

        default = tracer.init(exporter=Discard(), otel_bridge=True, session_name="bench", max_queue_size=queue_size)
        bridged = [
            Variant("tracer-bridge-on", tracer.trace, lambda: default.flush(60)),
            Variant(
                "otel-io-bridged",
                lambda fn: otel_io(fn, trace.get_tracer("bench")),
                lambda: default.flush(60),
            ),
        ]
    return [
        Variant("baseline", lambda fn: fn, lambda: None),
        Variant("tracer", ours.trace, lambda: ours.flush(60)),
        Variant("tracer-disabled", off.trace, lambda: None),
        Variant("otel-io", otel_io, lambda: provider.force_flush(60_000)),
        Variant("tracer-otlp", ours_otlp.trace, lambda: ours_otlp.flush(60)),
        Variant(
            "otel-io-otlp",
            lambda fn: otel_io(fn, otlp_provider.get_tracer("bench")),
            lambda: otlp_provider.force_flush(60_000),
        ),
        *bridged,
    ]


def run_sync(variant: Variant, calls: int) -> tuple[float, float, float]:
    fn = variant.sync
    gc.collect()
    cpu0 = time.process_time()
    thread0 = time.thread_time()
    start = time.perf_counter()
    for _ in range(calls):
        fn(Q, CTX)
    wall = time.perf_counter() - start
    thread_cpu = time.thread_time() - thread0
    variant.flush()
    cpu = time.process_time() - cpu0
    return wall / calls, thread_cpu / calls, cpu / calls


def run_async(variant: Variant, calls: int) -> float:
    fn = variant.async_

    async def loop() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await fn(Q, CTX)
        return time.perf_counter() - start

    wall = asyncio.run(loop())
    variant.flush()
    return wall / calls


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000, help="outer calls per repeat (3 spans each)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--queue-size", type=int, default=200_000, help="both SDKs' queue bound (no drops)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--otel-bridge",
        action="store_true",
        help="turn the OpenTelemetry bridge on (otel_bridge) and add its variants: tracer-bridge-on, otel-io-bridged",
    )
    args = parser.parse_args(argv)
    variants = make_variants(args.queue_size, args.otel_bridge)
    for variant in variants:  # warm-up
        run_sync(variant, 2000)
        run_async(variant, 2000)
    for _ in range(args.repeats):
        for variant in variants:
            wall, thread_cpu, cpu = run_sync(variant, args.calls)
            variant.wall.append(wall)
            variant.thread_cpu.append(thread_cpu)
            variant.cpu.append(cpu)
            variant.awall.append(run_async(variant, args.calls // 2))
    base = variants[0]
    base_wall, base_thread, base_cpu, base_awall = (
        statistics.median(v) for v in (base.wall, base.thread_cpu, base.cpu, base.awall)
    )
    results: dict[str, Any] = {}
    for variant in variants[1:]:
        results[variant.name] = {
            "sync_us_per_span": (statistics.median(variant.wall) - base_wall) / 3 * 1e6,
            "sync_thread_cpu_us_per_span": (statistics.median(variant.thread_cpu) - base_thread) / 3 * 1e6,
            "sync_cpu_us_per_span": (statistics.median(variant.cpu) - base_cpu) / 3 * 1e6,
            "async_us_per_span": (statistics.median(variant.awall) - base_awall) / 3 * 1e6,
        }
    otel = results["otel-io"]
    print(f"python {sys.version.split()[0]}, {args.calls} outer calls x {args.repeats} repeats, medians")
    print(
        f"{'variant':<16} {'sync us/span':>13} {'thread cpu':>11} {'cpu us/span':>12} {'async us/span':>14}"
        f" {'vs otel-io (sync)':>18}"
    )
    for name, row in results.items():
        ratio = otel["sync_us_per_span"] / row["sync_us_per_span"] if row["sync_us_per_span"] > 0 else float("inf")
        row["otel_over_this_sync"] = ratio
        print(
            f"{name:<16} {row['sync_us_per_span']:>13.2f} {row['sync_thread_cpu_us_per_span']:>11.2f}"
            f" {row['sync_cpu_us_per_span']:>12.2f}"
            f" {row['async_us_per_span']:>14.2f} {ratio:>17.1f}x"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
