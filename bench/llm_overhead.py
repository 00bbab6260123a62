"""What auto-instrumentation adds to an OpenAI / Anthropic call, excluding the network.

    python bench/llm_overhead.py                 # quick run (under a minute)
    python bench/llm_overhead.py --calls 1000 --rounds 20

The real SDKs (openai 3.x, anthropic 2.x) talk to an in-process ``httpx2.MockTransport`` that
returns canned JSON / SSE bytes, so the figures are the SDK's own work plus ours, no sockets. Each
case runs instrumented and uninstrumented (``tracer.integrations.instrument()`` /
``uninstrument()``) in adjacent pairs; each figure is the median of the paired differences. The
tracer runs its real pipeline (bounded queue, background worker, an exporter that discards batches),
with the worker held back during each timed run and flushed after it: ``caller`` is the time added
on the calling thread (what the budgets are about); ``cpu`` is the extra process CPU time, which
also includes the worker encoding the events off the calling thread.

* per call  = instrumented - uninstrumented time of one call (non-streamed response); for streams,
  the overhead of a 10-chunk stream minus 10 x the per-chunk figure
* per chunk = slope over stream length: (overhead with N + 10 chunks - overhead with 10 chunks) / N

Budgets (issue 4): < 50 µs per call, < 3 µs per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai

import tracer
import tracer.integrations

USER = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the capital of France?"}]
BUDGET_CALL_US = 50.0
BUDGET_CHUNK_US = 3.0


# -- canned responses ----------------------------------------------------------------------------------------


def chat_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-x",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": "Paris.", "refusal": None},
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
        }
    ).encode()


def chat_sse(chunks: int) -> bytes:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-x"}
    lines = []
    for index in range(chunks):
        delta = {"role": "assistant", "content": ""} if index == 0 else {"content": "tok "}
        lines.append({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    lines.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(line).encode() + b"\n\n" for line in lines) + b"data: [DONE]\n\n"


def message_body() -> bytes:
    return json.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "text", "text": "Paris."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 2},
        }
    ).encode()


def message_sse(chunks: int) -> bytes:
    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 1},
    }
    parts = [event("message_start", message=message)]
    parts.append(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
    parts += [event("content_block_delta", index=0, delta={"type": "text_delta", "text": "tok "})] * (chunks - 4)
    parts.append(event("content_block_stop", index=0))
    parts.append(
        event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": 9})
    )
    parts.append(event("message_stop"))
    return b"".join(parts)


def transport(streams: dict[tuple[int, int], bytes]) -> httpx2.MockTransport:
    """JSON for plain requests; SSE of the length named by the request's max_tokens for streams."""
    chat, message = chat_body(), message_body()

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        anthropic_api = request.url.path.endswith("/messages")
        if body.get("stream"):
            content = streams[(1 if anthropic_api else 0, body["max_tokens"])]
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=content)
        return httpx2.Response(
            200, headers={"content-type": "application/json"}, content=message if anthropic_api else chat
        )

    return httpx2.MockTransport(handler)


# -- measurement --------------------------------------------------------------------------------------------


class Case:
    def __init__(self, name: str, run: Callable[[int], None], per: str, calls: int) -> None:
        self.name = name
        self.run = run
        self.per = per  # "call": a plain call; "short"/"long": a stream pair (per-call and per-chunk parts)
        self.calls = calls
        self.wall: list[tuple[float, float]] = []  # (instrumented, plain) µs per call, one pair per round
        self.cpu: list[tuple[float, float]] = []

    def overhead(self, kind: str) -> float:
        """Median of the paired differences: adjacent runs share the machine's state, so drift cancels."""
        pairs = self.wall if kind == "wall" else self.cpu
        return statistics.median(on - off for on, off in pairs)

    def plain(self) -> float:
        return statistics.median(off for _, off in self.wall)


def timed(run: Callable[[int], None], calls: int) -> tuple[float, float]:
    """(wall µs per call on the calling thread, process CPU µs per call incl. the tracer's worker)."""
    gc.collect()
    cpu0 = time.process_time()
    start = time.perf_counter()
    run(calls)
    wall = time.perf_counter() - start
    tracer.flush(60)  # the background encoding of this run's events counts as CPU
    cpu = time.process_time() - cpu0
    return wall / calls * 1e6, cpu / calls * 1e6


def measure(case: Case) -> None:
    order = (True, False) if len(case.wall) % 2 == 0 else (False, True)
    got: dict[bool, tuple[float, float]] = {}
    for enabled in order:
        (tracer.integrations.instrument if enabled else tracer.integrations.uninstrument)()
        got[enabled] = timed(case.run, case.calls)
    case.wall.append((got[True][0], got[False][0]))
    case.cpu.append((got[True][1], got[False][1]))


def make_cases(lengths: tuple[int, int], calls: int) -> list[Case]:
    short, long = lengths
    streams = {(api, n): (message_sse(n) if api else chat_sse(n)) for api in (0, 1) for n in lengths}
    oai = openai.OpenAI(api_key="x", http_client=httpx2.Client(transport=transport(streams)))  # type: ignore[arg-type]
    aoai = openai.AsyncOpenAI(api_key="x", http_client=httpx2.AsyncClient(transport=transport(streams)))  # type: ignore[arg-type]
    claude = anthropic.Anthropic(api_key="x", http_client=httpx2.Client(transport=transport(streams)))  # type: ignore[arg-type]

    def chat(calls: int) -> None:
        for _ in range(calls):
            oai.chat.completions.create(model="gpt-x", messages=USER, temperature=0.2, max_tokens=64)

    def message(calls: int) -> None:
        for _ in range(calls):
            claude.messages.create(model="claude-x", max_tokens=64, messages=USER[1:], system=USER[0]["content"])

    def chat_stream(n: int) -> Callable[[int], None]:
        def run(calls: int) -> None:
            for _ in range(calls):
                for _chunk in oai.chat.completions.create(model="gpt-x", messages=USER, stream=True, max_tokens=n):
                    pass

        return run

    def achat_stream(n: int) -> Callable[[int], None]:
        async def loop(calls: int) -> None:
            for _ in range(calls):
                stream = await aoai.chat.completions.create(model="gpt-x", messages=USER, stream=True, max_tokens=n)
                async for _chunk in stream:
                    pass

        return lambda calls: asyncio.run(loop(calls))

    def message_stream(n: int) -> Callable[[int], None]:
        def run(calls: int) -> None:
            for _ in range(calls):
                with claude.messages.stream(model="claude-x", max_tokens=n, messages=USER[1:]) as stream:
                    for _text in stream.text_stream:
                        pass

        return run

    few, fewer = max(calls // 4, 10), max(calls // 40, 3)
    return [
        Case("openai chat.completions.create", chat, "call", calls),
        Case("anthropic messages.create", message, "call", calls),
        Case(f"openai chat stream, {short} chunks", chat_stream(short), "short", few),
        Case(f"openai chat stream, {long} chunks", chat_stream(long), "long", fewer),
        Case(f"openai async chat stream, {short} chunks", achat_stream(short), "short", few),
        Case(f"openai async chat stream, {long} chunks", achat_stream(long), "long", fewer),
        Case(f"anthropic messages.stream, {short} chunks", message_stream(short), "short", few),
        Case(f"anthropic messages.stream, {long} chunks", message_stream(long), "long", fewer),
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400, help="plain calls per run (streams: fewer)")
    parser.add_argument("--rounds", type=int, default=12, help="instrumented/plain pairs per case")
    parser.add_argument("--chunks", type=int, default=300, help="extra chunks of the long streams")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    class Discard(tracer.Exporter):
        def export(self, batch: tracer.Batch) -> bool:
            batch.events()  # decode, as a real exporter reads the encoded events
            return True

    # The worker is parked during each timed run (it wakes for a full batch or after flush_interval,
    # both out of reach) so "caller" is the calling thread's own added time; the flush after each
    # run then encodes and exports the run's events, which the "cpu" column includes.
    tracer.init(
        exporter=Discard(),
        session_name="bench",
        max_queue_size=200_000,
        max_queue_bytes=2**31,
        max_batch_size=100_000,
        max_batch_bytes=2**31,
        flush_interval=3600,
        first_flush_interval=3600,
    )
    cases = make_cases((10, 10 + args.chunks), args.calls)
    for case in cases:  # warm-up, both ways
        for enabled in (True, False):
            (tracer.integrations.instrument if enabled else tracer.integrations.uninstrument)()
            case.run(5)
    for _ in range(args.rounds):
        for case in cases:
            measure(case)
    tracer.integrations.instrument()

    results: dict[str, Any] = {}
    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, anthropic {anthropic.__version__}")
    print(f"{args.rounds} paired rounds; medians of (instrumented - plain) µs")
    print("caller = time added on the calling thread; cpu = process CPU, incl. the worker encoding the events")
    print("streams: per chunk = slope between the short and the long stream; per call = the rest")
    print(f"{'case':<40} {'plain µs':>10} {'caller':>8} {'cpu':>8}  {'unit':<9} {'budget (caller)':>15}")

    def row(name: str, plain: float, wall: float, cpu: float, per: str) -> None:
        budget = BUDGET_CALL_US if per == "call" else BUDGET_CHUNK_US
        ok = wall < budget
        unit = f"µs/{per}"
        print(
            f"{name:<40} {plain:>10.1f} {wall:>8.2f} {cpu:>8.2f}  {unit:<9} < {budget:>4.0f} {'ok' if ok else 'OVER'}"
        )
        results[name] = {"plain_us": plain, "caller_us": wall, "cpu_us": cpu, "unit": unit, "ok": ok}

    short_n = 10
    index = 0
    while index < len(cases):
        case = cases[index]
        if case.per == "call":
            row(case.name, case.plain(), case.overhead("wall"), case.overhead("cpu"), "call")
            index += 1
            continue
        long_case = cases[index + 1]
        name = case.name.rsplit(",", 1)[0]
        slope = {k: (long_case.overhead(k) - case.overhead(k)) / args.chunks for k in ("wall", "cpu")}
        fixed = {k: case.overhead(k) - short_n * slope[k] for k in ("wall", "cpu")}
        row(f"{name}: per call", case.plain(), fixed["wall"], fixed["cpu"], "call")
        row(f"{name}: per chunk", long_case.plain() / (short_n + args.chunks), slope["wall"], slope["cpu"], "chunk")
        index += 2
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
