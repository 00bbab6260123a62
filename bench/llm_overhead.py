"""What auto-instrumentation adds to an LLM client call on the calling thread, excluding the network.

    python bench/llm_overhead.py                     # 3 processes per variant, about 3 minutes
    python bench/llm_overhead.py --no-peer           # ours only, about 1.5 minutes
    python bench/llm_overhead.py --processes 5 --pairs 3000 --json llm.json
    python bench/llm_overhead.py --no-peer --only groq ollama   # some cases only
    python bench/llm_overhead.py --no-peer --only mistral --batch 16  # also with the recorder's BATCH set so

The real SDKs (openai 3.x, anthropic 2.x, google-genai 3.x, mistralai 3.x; groq, ollama and cohere
7.x on httpx) talk to an in-process ``httpx2.MockTransport`` (``httpx.MockTransport``) that returns
canned JSON / SSE / NDJSON bytes, so the figures are the SDK's own work plus ours, no sockets. The
tracer runs its real pipeline (bounded queue, background worker, an exporter that decodes and
discards batches); the worker is held back while calls are timed and flushed in between.

How: calls are timed one at a time, instrumented and plain alternately (the patched methods are
swapped on their classes between calls, outside the timing), and each figure is the median of the
paired differences. Adjacent calls share the machine's state, so drift and other processes' load
cancel out; what remains is a per-process bias (memory layout, hash seeds) of a few µs, so the
whole measurement runs in several fresh processes and the table shows their mean and range.

* per call  = added time of a call with a plain (non-streamed) response; for streams, the added
  time of a short stream (5 chunks: 4 text chunks, or 1 text delta and anthropic's framing
  events) minus 5 x the per-chunk figure
* per chunk = slope over stream length: (added time with 5 + N chunks - added time with 5) / N
* own       = the median time of a traced call outside the client's own work: the call's time less
  the time inside the original method under our patch and, for streams, inside the SDK's chunk
  source our recorder reads (both timed by shims put in place for this measurement only, after the
  paired runs); split into per call and per chunk like the paired figure. Our code on the calling
  thread, without the client's run-to-run variation, which for the slower SDKs (mistralai,
  litellm: 2-8 ms a call) is larger than the budget. It leaves out what our presence costs the
  client indirectly (caches, memory not reused while the worker holds a response): the paired
  figure has that. Not measured for the async client (the shims time no coroutines).
* --batch N = for the openai, google and mistral stream cases, two more rows each: traced with the
  stream recorder's default ``BATCH`` (chunks taken together) and with N, each against plain calls
  timed in the same loop (the three in turn, every order in rotation)
* worker    = CPU the background worker spends per event afterwards: shaping the event's fields
  from the saved request and response (see tracer/_deferred.py), encoding, and the exporter's
  decoding; off the calling thread, so not in the budgets

The peer, in the same kind of processes, interleaved with ours: OpenTelemetry's own OpenAI
instrumentation (``opentelemetry-instrumentation-openai-v2``) with message content captured on the
span, through a ``BatchSpanProcessor`` that discards the spans (openai calls only: it has no
anthropic support). ``otel÷us`` = its added time per call over ours.

Budgets (issue 4): < 50 µs per call, < 3 µs per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import importlib.metadata
import inspect
import json
import os
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

# litellm reads its model price map from the internet at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The long streams repeat one chunk, which litellm takes for a model stuck in a loop past 100.
os.environ.setdefault("REPEATED_STREAMING_CHUNK_LIMIT", "1000000")

import anthropic
import boto3
import cohere
import groq
import httpx
import httpx2
import litellm
import ollama
import openai
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.config import Config
from google import genai
from litellm.rust_bridge.dispatch import PublicDispatch
from mistralai.client import Mistral

import tracer
import tracer.integrations
from tracer.integrations import _stream

USER = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the capital of France?"}]
BUDGET_CALL_US = 50.0
BUDGET_CHUNK_US = 3.0
SHORT = 5  # chunks of a short stream


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


def gemini_body() -> bytes:
    return json.dumps(gemini_chunk("Paris.", "STOP")).encode()


def gemini_chunk(text: str, finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 20, "candidatesTokenCount": 2, "totalTokenCount": 22}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-x-001", "responseId": "r1"}


def gemini_sse(chunks: int) -> bytes:
    lines = [gemini_chunk("tok ", None) for _ in range(chunks - 1)] + [gemini_chunk("", "STOP")]
    return b"".join(b"data: " + json.dumps(line).encode() + b"\r\n\r\n" for line in lines)


GOOGLE = 2  # the streams' key for the Gemini API (0: openai, 1: anthropic)
MISTRAL = 3


def mistral_body() -> bytes:
    return json.dumps(
        {
            "id": "cmpl-1",
            "object": "chat.completion",
            "model": "mistral-x",
            "created": 1700000000,
            "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris.", "tool_calls": None},
                    "finish_reason": "stop",
                }
            ],
        }
    ).encode()


def mistral_sse(chunks: int) -> bytes:
    head = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "mistral-x"}
    lines = []
    for index in range(chunks):
        delta = {"role": "assistant", "content": ""} if index == 0 else {"content": "tok "}
        lines.append({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    usage = {"prompt_tokens": 20, "completion_tokens": chunks, "total_tokens": 20 + chunks}
    lines.append({**head, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}], "usage": usage})
    return b"".join(b"data: " + json.dumps(line).encode() + b"\n\n" for line in lines) + b"data: [DONE]\n\n"


def mistral_transport(streams: dict[tuple[int, int], bytes]) -> httpx2.MockTransport:
    plain = mistral_body()

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if body.get("stream"):
            content = streams[(MISTRAL, body["max_tokens"])]
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=content)
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=plain)

    return httpx2.MockTransport(handler)


def gemini_transport(streams: dict[tuple[int, int], bytes]) -> httpx2.MockTransport:
    """The Gemini API: the stream's length is the request's maxOutputTokens."""
    plain = gemini_body()

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith(":streamGenerateContent"):
            length = json.loads(request.content)["generationConfig"]["maxOutputTokens"]
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=streams[(GOOGLE, length)]
            )
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=plain)

    return httpx2.MockTransport(handler)


COHERE = 4
_COHERE_USAGE = {
    "billed_units": {"input_tokens": 20, "output_tokens": 2},
    "tokens": {"input_tokens": 20, "output_tokens": 2},
}


def cohere_body() -> bytes:
    message = {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]}
    return json.dumps({"id": "c1", "finish_reason": "COMPLETE", "message": message, "usage": _COHERE_USAGE}).encode()


def cohere_sse(chunks: int) -> bytes:
    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    parts = [event("message-start", id="c1", delta={"message": {"role": "assistant"}})]
    parts.append(event("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}))
    parts += [event("content-delta", index=0, delta={"message": {"content": {"text": "tok "}}})] * (chunks - 3)
    parts.append(event("message-end", delta={"finish_reason": "COMPLETE", "usage": _COHERE_USAGE}))
    return b"".join(parts)


def cohere_transport(streams: dict[tuple[int, int], bytes]) -> httpx.MockTransport:
    """Cohere's SDK is on httpx (not httpx2)."""
    plain = cohere_body()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("stream"):
            content = streams[(COHERE, body["max_tokens"])]
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)
        return httpx.Response(200, headers={"content-type": "application/json"}, content=plain)

    return httpx.MockTransport(handler)


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    """One AWS event-stream message (as tests/fake_bedrock.py builds them)."""
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers.items()
    )
    payload = json.dumps(data).encode()
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def converse_body() -> bytes:
    return json.dumps(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "Paris."}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 20, "outputTokens": 2, "totalTokens": 22},
            "metrics": {"latencyMs": 40},
        }
    ).encode()


def converse_stream_body(chunks: int) -> bytes:
    """messageStart, text deltas, messageStop and metadata: *chunks* events in all."""
    parts = [_frame("messageStart", {"role": "assistant"})]
    parts += [_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "tok "}})] * (chunks - 3)
    parts.append(_frame("messageStop", {"stopReason": "end_turn"}))
    usage = {"inputTokens": 20, "outputTokens": chunks, "totalTokens": 20 + chunks}
    parts.append(_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 40}}))
    return b"".join(parts)


class _Raw:
    """What botocore reads an HTTP response body from (``stream()``), held in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return iter((self.data,))

    def close(self) -> None:
        pass


def bedrock_client(streams: dict[int, bytes]) -> Any:
    """A real bedrock-runtime client whose requests are answered in process, before they are sent
    (botocore's ``before-send`` event): its own serializing, signing and parsing all run."""
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCHBENCHBENCH",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}),
    )
    plain = converse_body()

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        if request.url.endswith("/converse-stream"):
            body = json.loads(request.body)
            data = streams[body["inferenceConfig"]["maxTokens"]]
            headers = {"content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": "r1"}
            return AWSResponse(request.url, 200, headers, _Raw(data))
        headers = {"content-type": "application/json", "x-amzn-requestid": "r1"}
        return AWSResponse(request.url, 200, headers, _Raw(plain))

    client.meta.events.register("before-send.bedrock-runtime.*", answer)
    return client


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


def ollama_body() -> bytes:
    return json.dumps(
        {
            "model": "llama3",
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": "Paris."},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 20,
            "eval_count": 2,
            "total_duration": 5_000_000,
        }
    ).encode()


def ollama_ndjson(chunks: int) -> bytes:
    head = {"model": "llama3", "created_at": "2026-01-01T00:00:00Z"}
    lines = [{**head, "message": {"role": "assistant", "content": "tok "}, "done": False}] * (chunks - 1)
    lines.append({**head, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"})
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def httpx_transport(streams: dict[tuple[int, int], bytes]) -> httpx.MockTransport:
    """The same for the clients on httpx (groq: OpenAI's format; ollama: /api/chat, NDJSON streams
    as long as ``options.num_predict`` says)."""
    chat, reply = chat_body(), ollama_body()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/api/chat":
            if body.get("stream"):
                content = ollama_ndjson(body["options"]["num_predict"])
                return httpx.Response(200, headers={"content-type": "application/x-ndjson"}, content=content)
            return httpx.Response(200, headers={"content-type": "application/json"}, content=reply)
        if body.get("stream"):
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=streams[(0, body["max_tokens"])]
            )
        return httpx.Response(200, headers={"content-type": "application/json"}, content=chat)

    return httpx.MockTransport(handler)


# -- one process: paired measurement ---------------------------------------------------------------


class Case:
    """One kind of call; *once* makes one call and reads a stream to its end."""

    def __init__(self, name: str, once: Callable[[], None], kind: str, pairs: int, aio: bool = False) -> None:
        self.name = name
        self.once = once
        self.kind = kind  # "call", or "short"/"long": the two lengths of one stream kind
        self.pairs = pairs
        self.aio = aio  # an async client's call: InsideTimer does not time coroutines, so no `own`


def make_cases(chunks: int, pairs: int) -> list[Case]:
    long = SHORT + chunks
    streams = {(api, n): (message_sse(n) if api else chat_sse(n)) for api in (0, 1) for n in (SHORT, long)}
    streams.update({(GOOGLE, n): gemini_sse(n) for n in (SHORT, long)})
    streams.update({(MISTRAL, n): mistral_sse(n) for n in (SHORT, long)})
    streams.update({(COHERE, n): cohere_sse(n) for n in (SHORT, long)})
    oai = openai.OpenAI(api_key="x", http_client=httpx2.Client(transport=transport(streams)))  # type: ignore[arg-type]
    aoai = openai.AsyncOpenAI(api_key="x", http_client=httpx2.AsyncClient(transport=transport(streams)))  # type: ignore[arg-type]
    claude = anthropic.Anthropic(api_key="x", http_client=httpx2.Client(transport=transport(streams)))  # type: ignore[arg-type]
    gemini = genai.Client(
        api_key="x", http_options={"httpx_client": httpx2.Client(transport=gemini_transport(streams))}
    )
    mistral = Mistral(api_key="x", client=httpx2.Client(transport=mistral_transport(streams)))
    # Made before instrumenting, the client binds its chat (argument checks): measured through the
    # raw client's chat, patched for such clients; no experimental-kwarg wrapper on chat_stream.
    co = cohere.ClientV2(
        api_key="x",
        httpx_client=httpx.Client(transport=cohere_transport(streams)),
        log_warning_experimental_features=False,
    )
    bedrock = bedrock_client({n: converse_stream_body(n) for n in (SHORT, long)})
    runner = asyncio.Runner()
    fast = groq.Groq(api_key="x", http_client=httpx.Client(transport=httpx_transport(streams)))
    local = ollama.Client(host="http://127.0.0.1:11434", transport=httpx_transport(streams))

    def chat() -> None:
        oai.chat.completions.create(model="gpt-x", messages=USER, temperature=0.2, max_tokens=64)

    def message() -> None:
        claude.messages.create(model="claude-x", max_tokens=64, messages=USER[1:], system=USER[0]["content"])

    def chat_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            for _chunk in oai.chat.completions.create(model="gpt-x", messages=USER, stream=True, max_tokens=n):
                pass

        return once

    def achat_stream(n: int) -> Callable[[], None]:
        async def read() -> None:
            stream = await aoai.chat.completions.create(model="gpt-x", messages=USER, stream=True, max_tokens=n)
            async for _chunk in stream:
                pass

        return lambda: runner.run(read())

    def message_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            with claude.messages.stream(model="claude-x", max_tokens=n, messages=USER[1:]) as stream:
                for _text in stream.text_stream:
                    pass

        return once

    def groq_chat() -> None:
        fast.chat.completions.create(model="llama-x", messages=USER, temperature=0.2, max_tokens=64)

    def groq_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            for _chunk in fast.chat.completions.create(model="llama-x", messages=USER, stream=True, max_tokens=n):
                pass

        return once

    def generate() -> None:
        gemini.models.generate_content(
            model="gemini-x", contents=USER[1]["content"], config={"system_instruction": USER[0]["content"]}
        )

    def generate_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            config = {"system_instruction": USER[0]["content"], "max_output_tokens": n}
            for _chunk in gemini.models.generate_content_stream(model="gemini-x", contents="hi", config=config):
                pass

        return once

    def ollama_chat() -> None:
        local.chat(model="llama3", messages=USER, options={"temperature": 0.2})

    def ollama_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            for _part in local.chat(model="llama3", messages=USER, stream=True, options={"num_predict": n}):
                pass

        return once

    def mistral_complete() -> None:
        mistral.chat.complete(model="mistral-x", messages=USER, temperature=0.2, max_tokens=64)

    def mistral_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            for _event in mistral.chat.stream(model="mistral-x", messages=USER, max_tokens=n):
                pass

        return once

    def cohere_chat() -> None:
        co.chat(model="command-x", messages=USER, temperature=0.2, max_tokens=64)

    def cohere_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            for _event in co.chat_stream(model="command-x", messages=USER, max_tokens=n):
                pass

        return once

    def gateway() -> None:
        litellm.completion(model="openai/gpt-x", messages=USER, temperature=0.2, max_tokens=64, client=oai)

    def gateway_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            for _chunk in litellm.completion(
                model="openai/gpt-x", messages=USER, stream=True, max_tokens=n, client=oai
            ):
                pass

        return once

    bedrock_messages = [{"role": "user", "content": [{"text": USER[1]["content"]}]}]

    def converse() -> None:
        bedrock.converse(modelId="anthropic.claude-x", messages=bedrock_messages, inferenceConfig={"maxTokens": 64})

    def converse_stream(n: int) -> Callable[[], None]:
        def once() -> None:
            response = bedrock.converse_stream(
                modelId="anthropic.claude-x", messages=bedrock_messages, inferenceConfig={"maxTokens": n}
            )
            for _event in response["stream"]:
                pass

        return once

    few = max(pairs // 30, 20)  # long streams: ~60x the work of a short one
    return [
        Case("openai chat.completions.create", chat, "call", pairs),
        Case("anthropic messages.create", message, "call", pairs),
        Case("openai chat stream", chat_stream(SHORT), "short", pairs),
        Case("openai chat stream", chat_stream(long), "long", few),
        Case("openai async chat stream", achat_stream(SHORT), "short", pairs, aio=True),
        Case("openai async chat stream", achat_stream(long), "long", few, aio=True),
        Case("anthropic messages.stream", message_stream(SHORT), "short", pairs),
        Case("anthropic messages.stream", message_stream(long), "long", few),
        Case("groq chat.completions.create", groq_chat, "call", pairs),
        Case("groq chat stream", groq_stream(SHORT), "short", pairs),
        Case("groq chat stream", groq_stream(long), "long", few),
        Case("ollama chat", ollama_chat, "call", pairs),
        Case("ollama chat stream", ollama_stream(SHORT), "short", pairs),
        Case("ollama chat stream", ollama_stream(long), "long", few),
        Case("google generate_content", generate, "call", pairs),
        Case("google generate_content_stream", generate_stream(SHORT), "short", pairs),
        Case("google generate_content_stream", generate_stream(long), "long", few),
        Case("mistral chat.complete", mistral_complete, "call", pairs),
        Case("mistral chat.stream", mistral_stream(SHORT), "short", pairs),
        Case("mistral chat.stream", mistral_stream(long), "long", few),
        Case("cohere chat", cohere_chat, "call", pairs),
        Case("cohere chat_stream", cohere_stream(SHORT), "short", pairs),
        Case("cohere chat_stream", cohere_stream(long), "long", few),
        Case("litellm completion (openai)", gateway, "call", pairs),
        Case("litellm completion stream", gateway_stream(SHORT), "short", pairs),
        Case("litellm completion stream", gateway_stream(long), "long", few),
        Case("bedrock converse", converse, "call", pairs),
        Case("bedrock converse_stream", converse_stream(SHORT), "short", pairs),
        Case("bedrock converse_stream", converse_stream(long), "long", few),
    ]


class Switch:
    """Puts the patched methods (instrumented) or the originals (plain) back on their classes: one
    setattr per method, so a call can be timed each way in turn. Built from the difference between
    the client classes before and after *instrument* ran, so it serves any instrumentation."""

    def __init__(self, instrument: Callable[[], None]) -> None:
        owners = _client_classes()
        before = {owner: dict(vars(owner)) for owner in owners}
        instrument()
        self.swaps: list[tuple[Any, str, Any, Any]] = []
        for owner in owners:
            for attribute, patched in vars(owner).items():
                original = before[owner].get(attribute)
                if original is not None and patched is not original:
                    self.swaps.append((owner, attribute, patched, original))

    def __call__(self, instrumented: bool) -> None:
        for owner, attribute, patched, original in self.swaps:
            setattr(owner, attribute, patched if instrumented else original)


def _client_classes() -> list[type]:
    from anthropic.resources.messages import messages as anthropic_messages
    from cohere.v2 import client as cohere_v2
    from cohere.v2 import raw_client as cohere_raw
    from google.genai import models as google_models
    from groq.resources.chat import completions as groq_completions
    from mistralai.client import chat as mistral_chat
    from openai.resources.chat.completions import completions as chat_completions

    return [
        chat_completions.Completions,
        chat_completions.AsyncCompletions,
        anthropic_messages.Messages,
        anthropic_messages.AsyncMessages,
        groq_completions.Completions,
        importlib.import_module("ollama._client").Client,  # `from ollama import _client`: the default client
        google_models.Models,
        google_models.AsyncModels,
        mistral_chat.Chat,
        cohere_v2.V2Client,
        cohere_raw.RawV2Client,
        BaseClient,
        PublicDispatch,
    ]


def flush() -> None:
    """Deliver what is queued (the tracer's or OpenTelemetry's batch processor)."""
    if _otel_provider:
        _otel_provider[0].force_flush()
    else:
        tracer.flush(60)


_otel_provider: list[Any] = []


def _otel_openai() -> Callable[[], None]:
    """OpenTelemetry's own OpenAI instrumentation (opentelemetry-instrumentation-openai-v2), content
    captured on the span like ours, through a BatchSpanProcessor whose exporter discards the spans."""
    os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    # Like our worker: nothing leaves before a flush (schedule delay and batch size out of reach).
    provider.add_span_processor(
        BatchSpanProcessor(
            Discard(), max_queue_size=200_000, schedule_delay_millis=3_600_000, max_export_batch_size=100_000
        )
    )
    _otel_provider.append(provider)
    return lambda: OpenAIInstrumentor().instrument(tracer_provider=provider)


def measure(case: Case, switch: Switch, worker_cpu: list[float]) -> dict[str, float]:
    """Median added µs (wall and thread CPU) over the case's pairs, and the plain call's median µs."""
    return measure_settings(case, switch, (True,), worker_cpu)[True]


def balanced_orders(items: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Orders to time *items* in, round after round: each rotation of them, forward and reversed, so
    that every item takes every place equally often (all orders for three items). Every permutation
    in turn would not do for more: with seven items the first 720 all start with the same one,
    which then always ran first in a round (``stream_levels.py`` before 2026-12-07 evening)."""
    forward = [items[start:] + items[:start] for start in range(len(items))]
    return forward + [order[::-1] for order in forward]


def measure_settings(
    case: Case, apply: Callable[[Any], None], settings: tuple[Any, ...], worker_cpu: list[float]
) -> dict[Any, dict[str, float]]:
    """``measure`` for each traced setting: *apply* puts a setting in place (None: plain), and the
    settings and a plain call are timed in turn, in ``balanced_orders``, so that drift hits all alike."""
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    orders = balanced_orders((*settings, None))
    added = {setting: ([], []) for setting in settings}  # wall, cpu
    plain: list[float] = []
    traced = 0
    for index in range(case.pairs):
        timing = {}
        for setting in orders[index % len(orders)]:
            apply(setting)
            cpu0, wall0 = cpu_clock(), clock()
            case.once()
            wall1, cpu1 = clock(), cpu_clock()
            timing[setting] = (wall1 - wall0, cpu1 - cpu0)
        for setting, (walls, cpus) in added.items():
            walls.append((timing[setting][0] - timing[None][0]) / 1000)
            cpus.append((timing[setting][1] - timing[None][1]) / 1000)
        plain.append(timing[None][0] / 1000)
        traced += len(settings)
        if traced >= 200 or index == case.pairs - 1:  # the worker's turn, outside the timing
            process0 = time.process_time()
            flush()
            worker_cpu.append((time.process_time() - process0) / traced * 1e6)
            traced = 0
    return {
        setting: {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "plain": statistics.median(plain)}
        for setting, (walls, cpus) in added.items()
    }


class InsideTimer:
    """Times the client's own work inside our patch, adding the wall time spent in it to ``inside``:

    - each patched method's wrapped function (the client's original) is replaced by a timing shim;
    - a stream's chunk source (the SDK generator our recorder chains in, or the ``__next__`` it pulls
      from) is read through a timing generator, so each chunk's parsing by the SDK counts as the
      client's. That generator's own step (a resume and a yield) counts as ours: our per-chunk
      figure errs high, never low;
    - the few client functions that run outside both (``_client_work``) get the method's shim.
    What else of the client's runs above our generator (its stream class's ``__next__``, a helper's
    text iterator) counts as ours too.

    Only the outermost shim counts (litellm calls the patched openai client, cohere's client its
    patched raw client): what runs under it, our nested wrappers included, counts as the client's.
    Installed only while ``own`` is measured, so the paired figures never pay for the shims."""

    def __init__(self, switch: Switch) -> None:
        self.inside = 0
        self._depth = 0
        self._swaps: list[tuple[Any, Any]] = [
            (patched, original)
            for _owner, _attribute, patched, original in switch.swaps
            if getattr(patched, "__wrapped__", None) is original and not inspect.iscoroutinefunction(original)
        ]
        self._recorder_wrap = _stream.StreamRecorder._wrap
        self._puller = _stream._puller
        # The client's work that runs outside both (anthropic's stream helper: the request in the
        # manager's __enter__, the message accumulated from each event above our generator).
        from anthropic.lib.streaming import _messages as anthropic_stream

        self._client_work: list[tuple[Any, str, Any]] = [
            (owner, name, getattr(owner, name))
            for owner, name in (
                (anthropic_stream.MessageStreamManager, "__enter__"),
                (anthropic_stream, "accumulate_event"),
                (anthropic_stream, "build_events"),
            )
        ]

    def _timed_chunks(self, source: Iterator[Any]) -> Iterator[Any]:
        """*source*'s chunks, each one's ``next()`` timed by the method shim."""
        step = self._shim(iter(source).__next__)
        while True:
            try:
                item = step()
            except StopIteration:
                return
            yield item

    def _shim(self, original: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter_ns

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.inside += clock() - start

        return timed

    def __enter__(self) -> InsideTimer:
        for patched, original in self._swaps:
            patched.__wrapped__ = self._shim(original)
        wrap, puller = self._recorder_wrap, self._puller

        def timed_wrap(recorder: Any, source: Iterator[Any], sends_request: bool = False) -> Iterator[Any]:
            return wrap(recorder, self._timed_chunks(source), sends_request)

        def timed_puller(wrapped: Any, aio: bool) -> Callable[[], Any]:
            step = puller(wrapped, aio)
            return step if aio else self._shim(step)

        _stream.StreamRecorder._wrap = timed_wrap  # type: ignore[method-assign]
        _stream._puller = timed_puller
        for owner, name, original in self._client_work:
            setattr(owner, name, self._shim(original))
        return self

    def __exit__(self, *exc: object) -> None:
        for patched, original in self._swaps:
            patched.__wrapped__ = original
        _stream.StreamRecorder._wrap = self._recorder_wrap  # type: ignore[method-assign]
        _stream._puller = self._puller
        for owner, name, original in self._client_work:
            setattr(owner, name, original)


def measure_own(case: Case, switch: Switch, timer: InsideTimer) -> float:
    """Median µs of a traced call spent outside the client's own method and chunk source: our code
    on the calling thread (starting the event, saving the request, each chunk's step through our
    recorder, holding the response for the worker)."""
    clock = time.perf_counter_ns
    own: list[float] = []
    switch(True)
    for index in range(case.pairs):
        timer.inside = 0
        start = clock()
        case.once()
        own.append((clock() - start - timer.inside) / 1000)
        if index % 200 == 199:
            flush()
    flush()
    return statistics.median(own)


# The recorder class of each stream case that ``--batch`` can set (module in tracer.integrations, class).
RECORDERS = {
    "openai chat stream": ("openai", "ChatStream"),
    "google generate_content_stream": ("google_genai", "ContentStream"),
    "mistral chat.stream": ("mistralai", "ChatStream"),
}


def with_batch(case: Case, batch: int, switch: Switch, worker_cpu: list[float]) -> list[tuple[Case, dict[str, float]]]:
    """*case* measured again, in this process, traced with its recorder's default BATCH and with
    *batch*, against plain calls timed in the same loop (see ``measure_settings``)."""
    module, name = RECORDERS[case.name]
    recorder = getattr(importlib.import_module(f"tracer.integrations.{module}"), name)
    default = recorder.BATCH
    if batch == default:
        return []

    def apply(setting: int | None) -> None:
        switch(setting is not None)
        if setting is not None:
            recorder.BATCH = setting  # read by each stream as it starts

    try:
        got = measure_settings(case, apply, (default, batch), worker_cpu)
    finally:
        recorder.BATCH = default
    return [
        (
            Case(f"{case.name} [BATCH {setting}{' (default)' if setting == default else ''}]", case.once, case.kind, 0),
            figures,
        )
        for setting, figures in got.items()
    ]


def init_tracer(exporter: tracer.Exporter) -> None:
    """The tracer as the LLM benches run it: the worker wakes only when flushed (a full batch or
    flush_interval are out of reach), so that it never runs during a timed call."""
    tracer.init(
        exporter=exporter,
        session_name="bench",
        instrument=False,
        max_queue_size=200_000,
        max_queue_bytes=2**31,
        max_batch_size=100_000,
        max_batch_bytes=2**31,
        flush_interval=3600,
        first_flush_interval=3600,
    )


def child(chunks: int, pairs: int, peer: str, only: list[str], batch: int | None = None) -> dict[str, Any]:
    """One process's figures: {row name: {"added": µs, "cpu": µs, "plain": µs}}, plus the worker's µs/event."""
    if peer == "otel":
        instrument = _otel_openai()
    else:

        class Discard(tracer.Exporter):
            def export(self, batch: tracer.Batch) -> bool:
                batch.events()  # decode, as a real exporter reads the encoded events
                return True

        init_tracer(Discard())
        instrument = tracer.integrations.instrument
    cases = make_cases(chunks, pairs)
    if only:
        cases = [case for case in cases if any(case.name.startswith(prefix) for prefix in only)]
    if peer == "otel":  # OpenTelemetry's instrumentation covers openai only
        cases = [case for case in cases if case.name.startswith("openai")]
    for case in cases:  # import and warm every path first
        case.once()
    switch = Switch(instrument)
    switch(True)
    for case in cases:
        case.once()
    worker_cpu: list[float] = []
    measured = [(case, measure(case, switch, worker_cpu)) for case in cases]
    if batch is not None and peer != "otel":
        compared = [with_batch(case, batch, switch, worker_cpu) for case in cases if case.name in RECORDERS]
        compared = [runs for runs in compared if runs]
        for pick in (0, 1):  # the default's rows, then the other setting's (a short stream, then its long one)
            measured += [runs[pick] for runs in compared]
    own: dict[tuple[str, str], float] = {}
    if peer != "otel":
        with InsideTimer(switch) as timer:
            own = {(case.name, case.kind): measure_own(case, switch, timer) for case in cases if not case.aio}
    switch(True)
    rows: dict[str, Any] = {}
    index = 0
    while index < len(measured):
        case, got = measured[index]
        if case.kind == "call":
            rows[f"{case.name}: per call"] = {"added": got["wall"], "cpu": got["cpu"], "plain": got["plain"]}
            if (case.name, "call") in own:
                rows[f"{case.name}: per call"]["own"] = own[case.name, "call"]
            index += 1
            continue
        _, long_got = measured[index + 1]
        slope = {key: (long_got[key] - got[key]) / chunks for key in ("wall", "cpu")}
        rows[f"{case.name}: per call"] = {
            "added": got["wall"] - SHORT * slope["wall"],
            "cpu": got["cpu"] - SHORT * slope["cpu"],
            "plain": got["plain"],
        }
        rows[f"{case.name}: per chunk"] = {
            "added": slope["wall"],
            "cpu": slope["cpu"],
            "plain": long_got["plain"] / (SHORT + chunks + 1),
        }
        if (case.name, "short") in own:  # the same split of the short and long streams' own time
            own_slope = (own[case.name, "long"] - own[case.name, "short"]) / chunks
            rows[f"{case.name}: per call"]["own"] = own[case.name, "short"] - SHORT * own_slope
            rows[f"{case.name}: per chunk"]["own"] = own_slope
        index += 2
    return {"rows": rows, "worker_us_per_event": statistics.median(worker_cpu) if worker_cpu else 0.0}


# -- the parent: several processes, one table ------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=3, help="fresh processes to average over, per variant")
    parser.add_argument(
        "--pairs", type=int, default=1500, help="instrumented/plain pairs per case (long streams: 1/30)"
    )
    parser.add_argument("--chunks", type=int, default=300, help="extra chunks of the long streams")
    parser.add_argument("--no-peer", action="store_true", help="skip OpenTelemetry's openai instrumentation")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--only", nargs="*", default=[], help="cases whose name starts so (e.g. groq ollama google)")
    parser.add_argument(
        "--batch",
        type=int,
        help="also measure the openai, google and mistral stream cases with their recorder's BATCH set so"
        " (chunks taken together) and at its default, both against plain calls timed in one loop",
    )
    parser.add_argument("--child", choices=("tracer", "otel"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("processes", "pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch must be at least 1 (chunks taken together), got {args.batch}")
    if args.child:
        print(json.dumps(child(args.chunks, args.pairs, args.child, args.only, args.batch)))
        return {}

    variants = ("tracer",) if args.no_peer else ("tracer", "otel")
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for number in range(args.processes):  # interleaved, so that drift hits both alike
        for variant in variants:
            command = [sys.executable, __file__, "--child", variant, "--pairs", str(args.pairs)]
            command += ["--chunks", str(args.chunks), "--only", *args.only]
            if args.batch is not None:
                command += ["--batch", str(args.batch)]
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
            runs[variant].append(json.loads(output.strip().splitlines()[-1]))
        print(f"round {number + 1}/{args.processes} done", file=sys.stderr)

    def mean_of(variant: str, name: str, key: str) -> list[float]:
        return [run["rows"][name][key] for run in runs[variant] if key in run["rows"].get(name, {})]

    if not runs["tracer"][0]["rows"]:
        raise SystemExit(f"no case selected: no case name starts with any of {args.only}")
    print(
        f"python {sys.version.split()[0]}, openai {openai.__version__}, anthropic {anthropic.__version__},"
        f" google-genai {genai.__version__}, mistralai {importlib.metadata.version('mistralai')},"
        f" cohere {importlib.metadata.version('cohere')}, groq {groq.__version__},"
        f" ollama {importlib.metadata.version('ollama')}"
    )
    print(f"{args.processes} processes x {args.pairs} paired calls per case; µs added on the calling thread")
    print("added = mean over the processes of each one's median (range in brackets); cpu = the same in thread CPU")
    if "otel" in runs:
        print("otel = the same for opentelemetry-instrumentation-openai-v2 (content on the span, batch processor)")
    print(
        "own = our code's own time in a traced call: the call's time less the time inside the client's"
        " method and its stream's chunk source (median; not for async clients)"
    )
    print(
        f"{'case':<42} {'plain µs':>9} {'added':>7} {'range':>15} {'cpu':>7} {'own':>6}  {'unit':<9} {'budget':>10}"
        + (f" {'otel':>8} {'otel÷us':>8}" if "otel" in runs else "")
    )
    results: dict[str, Any] = {}
    for name in runs["tracer"][0]["rows"]:
        added = mean_of("tracer", name, "added")
        mean = statistics.fmean(added)
        cpu = statistics.fmean(mean_of("tracer", name, "cpu"))
        plain = statistics.fmean(mean_of("tracer", name, "plain"))
        per = "chunk" if name.endswith("chunk") else "call"
        budget = BUDGET_CHUNK_US if per == "chunk" else BUDGET_CALL_US
        ok = mean < budget
        spread = f"[{min(added):.1f}, {max(added):.1f}]"
        owns = mean_of("tracer", name, "own")
        own = f"{statistics.fmean(owns):>6.1f}" if owns else f"{'—':>6}"
        line = f"{name:<42} {plain:>9.1f} {mean:>7.2f} {spread:>15} {cpu:>7.2f} {own}  µs/{per:<6} < {budget:>3.0f} "
        line += f"{'ok  ' if ok else 'OVER'}"
        results[name] = {"plain_us": plain, "added_us": mean, "range_us": [min(added), max(added)], "cpu_us": cpu}
        results[name]["ok"] = ok
        if owns:
            results[name]["own_us"] = statistics.fmean(owns)
            results[name]["own_range_us"] = [min(owns), max(owns)]
        peer = mean_of("otel", name, "added") if "otel" in runs else []
        if peer:
            peer_mean = statistics.fmean(peer)
            line += f" {peer_mean:>8.2f} {peer_mean / mean:>7.1f}x" if per == "call" else f" {peer_mean:>8.2f}"
            results[name]["otel_added_us"] = peer_mean
        print(line)
    worker = statistics.fmean(run["worker_us_per_event"] for run in runs["tracer"])
    print(f"worker: {worker:.1f} µs of CPU per LLM event, off the calling thread (shaping, encoding, export)")
    results["worker_us_per_event"] = worker
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
