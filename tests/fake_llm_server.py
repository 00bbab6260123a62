"""A fake OpenAI + Anthropic API on 127.0.0.1 for offline tests and examples.

Speaks the JSON and SSE formats the real SDKs parse (``openai`` 3.x, ``anthropic`` 2.x), over a
real socket (``ThreadingHTTPServer``, HTTP/1.1, chunked SSE), so the whole client transport runs.

Routes (matched by path suffix, so Azure-style ``/openai/deployments/<d>/chat/completions`` works):
``/chat/completions``, ``/responses``, ``/embeddings``, ``/completions`` (OpenAI, under ``/v1``) and
``/v1/messages`` (Anthropic); ``/api/chat``, ``/api/generate`` (Ollama, NDJSON streams); Groq's
``/openai/v1/chat/completions`` streams add ``x_groq.usage`` to the last chunk. ``"stream": true``
in the body selects SSE.
A model named ``mistral…`` on ``/v1/chat/completions`` or ``/v1/embeddings`` gets Mistral's formats
(whole tool calls in one chunk, usage in the last chunk); ``mistral…thinking`` answers with a
thinking content chunk first and counts cached prompt tokens.
Cohere v2: ``/v2/chat`` (SSE with ``event:`` lines when streamed) and ``/v2/embed``.
Google Gen AI (Gemini API): ``/v1[beta]/models/<model>:generateContent``, ``:streamGenerateContent``
(SSE) and ``:batchEmbedContents``; the model is the one in the path.
Bedrock Runtime's ``/model/{modelId}/…`` routes are answered by ``tests/fake_bedrock.py`` (AWS
event streams).

The request's ``model`` picks a scenario:

* contains ``tools``, or the request forces a tool (OpenAI ``tool_choice="required"``, Anthropic
  ``tool_choice={"type": "any"}``): the answer is a tool call (``get_weather`` with ``{"city": "Paris"}``)
* ``error-429`` / ``error-500``: that HTTP error, in the provider's error format
* ``midstream-error``: a stream that sends two chunks, then an error event
* ``long``: a stream of 20 text chunks; ``slow``: 20 chunks 50 ms apart
* anything else: the answer ``Hello!``

Usage: ``with FakeLLMServer() as server: OpenAI(base_url=server.openai_url, api_key="x")`` /
``Anthropic(base_url=server.url, api_key="x")``. ``server.requests`` lists (path, JSON body).
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import fake_bedrock

__all__ = ["FakeLLMServer"]

CREATED = 1_700_000_000
LONG_CHUNKS = 20


def _wants_tool(body: dict[str, Any]) -> bool:
    choice = body.get("tool_choice")
    forced = choice == "required" or (isinstance(choice, dict) and choice.get("type") in ("any", "tool"))
    return "tools" in str(body.get("model", "")) or (forced and bool(body.get("tools")))


def _words(model: str) -> list[str]:
    if "long" in model or "slow" in model:
        return [f"tok{i} " for i in range(LONG_CHUNKS)]
    return ["Hel", "lo!"]


def _delay(model: str) -> float:
    return 0.05 if "slow" in model else 0.0


# -- OpenAI chat completions ---------------------------------------------------------------------------


def chat_json(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "gpt-x")
    if _wants_tool(body):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        }
        finish = "tool_calls"
    else:
        content = "".join(_words(model))
        if body.get("response_format", {}).get("type") == "json_schema":
            content = '{"city": "Paris", "country": "France"}'
        message = {"role": "assistant", "content": content, "refusal": None}
        finish = "stop"
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "finish_reason": finish, "logprobs": None, "message": message}],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 2,
            "total_tokens": 13,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def chat_sse(body: dict[str, Any]) -> Iterator[bytes | float]:
    model = body.get("model", "gpt-x")
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": CREATED, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {**head, "usage": None, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    delay = _delay(model)
    if _wants_tool(body):
        yield chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            }
        )
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]})
        yield chunk({}, "tool_calls")
    else:
        yield chunk({"role": "assistant", "content": ""})
        for index, word in enumerate(_words(model)):
            if delay:
                yield delay
            yield chunk({"content": word})
            if "midstream-error" in model and index == 0:
                error = {"error": {"message": "The server had an error", "type": "server_error", "code": None}}
                yield b"data: " + json.dumps(error).encode() + b"\n\n"
                return
        yield chunk({}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
        yield b"data: " + json.dumps({**head, "choices": [], "usage": usage}).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


# -- OpenAI Responses ------------------------------------------------------------------------------------


def _response(model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


_RESPONSES_USAGE = {
    "input_tokens": 9,
    "output_tokens": 2,
    "total_tokens": 11,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens_details": {"reasoning_tokens": 0},
}


def _responses_output(model: str, text: str) -> list[dict[str, Any]]:
    if "tools" in model:
        return [
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
                "status": "completed",
            }
        ]
    return [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
    ]


def responses_json(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "gpt-x")
    output = _responses_output(model if not _wants_tool(body) else "tools", "".join(_words(model)))
    return _response(model, "completed", output, _RESPONSES_USAGE)


def responses_sse(body: dict[str, Any]) -> Iterator[bytes | float]:
    model = body.get("model", "gpt-x")
    sequence = 0

    def event(kind: str, **data: Any) -> bytes:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **data}
        sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()

    yield event("response.created", response=_response(model, "in_progress", [], None))
    words = _words(model)
    text = "".join(words)
    item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
    yield event("response.output_item.added", output_index=0, item=item)
    part = {"type": "output_text", "text": "", "annotations": []}
    yield event("response.content_part.added", item_id="msg_1", output_index=0, content_index=0, part=part)
    for word in words:
        if _delay(model):
            yield _delay(model)
        yield event(
            "response.output_text.delta", item_id="msg_1", output_index=0, content_index=0, delta=word, logprobs=[]
        )
    done = _responses_output(model, text)[0]
    yield event("response.output_item.done", output_index=0, item=done)
    yield event("response.completed", response=_response(model, "completed", [done], _RESPONSES_USAGE))


# -- OpenAI embeddings and legacy completions ------------------------------------------------------------


def embeddings_json(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    vector = [0.1, 0.2, 0.3]
    data = []
    for index in range(count):
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack("<3f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "emb-x"),
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }


def completions_json(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "gpt-x")
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "text": "".join(_words(model)), "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def completions_sse(body: dict[str, Any]) -> Iterator[bytes | float]:
    model = body.get("model", "gpt-x")
    head = {"id": "cmpl-1", "object": "text_completion", "created": CREATED, "model": model}
    words = _words(model)
    for index, word in enumerate(words):
        finish = "stop" if index == len(words) - 1 else None
        choice = {"index": 0, "text": word, "finish_reason": finish, "logprobs": None}
        yield b"data: " + json.dumps({**head, "choices": [choice]}).encode() + b"\n\n"
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        yield b"data: " + json.dumps({**head, "choices": [], "usage": usage}).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


# -- Anthropic messages --------------------------------------------------------------------------------------

_ANTHROPIC_USAGE = {
    "input_tokens": 10,
    "output_tokens": 7,
    "cache_read_input_tokens": 4,
    "cache_creation_input_tokens": 0,
}


def messages_json(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "claude-x")
    text = "".join(_words(model))
    if (body.get("output_config") or {}).get("format"):
        text = '{"city": "Paris", "country": "France"}'
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    stop = "end_turn"
    if _wants_tool(body):
        content.append({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}})
        stop = "tool_use"
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _ANTHROPIC_USAGE,
    }


def messages_sse(body: dict[str, Any]) -> Iterator[bytes | float]:
    model = body.get("model", "claude-x")

    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    start_usage = {
        "input_tokens": 10,
        "output_tokens": 1,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 0,
    }
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    yield event("message_start", message=message)
    yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
    yield event("ping")
    for index, word in enumerate(_words(model)):
        if _delay(model):
            yield _delay(model)
        yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": word})
        if "midstream-error" in model and index == 0:
            yield event("error", error={"type": "overloaded_error", "message": "Overloaded"})
            return
    yield event("content_block_stop", index=0)
    stop = "end_turn"
    if _wants_tool(body):
        tool = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        yield event("content_block_start", index=1, content_block=tool)
        yield event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"city": '})
        yield event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '"Paris"}'})
        yield event("content_block_stop", index=1)
        stop = "tool_use"
    yield event("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage={"output_tokens": 7})
    yield event("message_stop")


# -- Ollama (/api/chat, /api/generate: NDJSON streams) ----------------------------------------------------------

_OLLAMA_COUNTS = {"prompt_eval_count": 8, "eval_count": 2, "total_duration": 5_000_000, "eval_duration": 2_000_000}


def _ollama_message(body: dict[str, Any], content: str) -> dict[str, Any]:
    if _wants_tool(body) or body.get("tools"):
        call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    return {"role": "assistant", "content": content}


def ollama_chat_json(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "llama3")
    message = _ollama_message(body, "".join(_words(model)))
    return {"model": model, "created_at": "2026-01-01T00:00:00Z", "message": message, "done": True,
            "done_reason": "stop", **_OLLAMA_COUNTS}  # fmt: skip


def ollama_chat_ndjson(body: dict[str, Any]) -> Iterator[bytes | float]:
    model = body.get("model", "llama3")
    head = {"model": model, "created_at": "2026-01-01T00:00:00Z"}
    for index, word in enumerate(_words(model)):
        if _delay(model):
            yield _delay(model)
        yield json.dumps({**head, "message": {"role": "assistant", "content": word}, "done": False}).encode() + b"\n"
        if "midstream-error" in model and index == 0:
            yield json.dumps({"error": "model crashed"}).encode() + b"\n"
            return
    last = {**head, "message": _ollama_message(body, ""), "done": True, "done_reason": "stop", **_OLLAMA_COUNTS}
    yield json.dumps(last).encode() + b"\n"


def ollama_generate_json(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "llama3")
    return {"model": model, "created_at": "2026-01-01T00:00:00Z", "response": "".join(_words(model)), "done": True,
            "done_reason": "stop", "context": [1, 2], **_OLLAMA_COUNTS}  # fmt: skip


def ollama_generate_ndjson(body: dict[str, Any]) -> Iterator[bytes | float]:
    model = body.get("model", "llama3")
    head = {"model": model, "created_at": "2026-01-01T00:00:00Z"}
    for word in _words(model):
        yield json.dumps({**head, "response": word, "done": False}).encode() + b"\n"
    yield json.dumps({**head, "response": "", "done": True, "done_reason": "stop", **_OLLAMA_COUNTS}).encode() + b"\n"


# -- Mistral ----------------------------------------------------------------------------------------------

_MISTRAL_USAGE = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
# A reasoning model (``mistral…thinking``): its thoughts come first as a "thinking" content chunk,
# and its usage counts cached prompt tokens.
_MISTRAL_THOUGHT = {"type": "thinking", "thinking": [{"type": "text", "text": "The user greets me."}]}
_MISTRAL_CACHED_USAGE = {**_MISTRAL_USAGE, "prompt_tokens_details": {"cached_tokens": 5}}
_MISTRAL_TOOL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    "index": 0,
}


def mistral_json(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "mistral-x")
    if _wants_tool(body):
        message: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [_MISTRAL_TOOL]}
        finish = "tool_calls"
    elif "thinking" in model:
        content = [_MISTRAL_THOUGHT, {"type": "text", "text": "".join(_words(model))}]
        message = {"role": "assistant", "content": content, "tool_calls": None}
        finish = "stop"
    else:
        message = {"role": "assistant", "content": "".join(_words(model)), "tool_calls": None}
        finish = "stop"
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": model,
        "created": CREATED,
        "usage": _MISTRAL_CACHED_USAGE if "thinking" in model else _MISTRAL_USAGE,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


def mistral_sse(body: dict[str, Any]) -> Iterator[bytes | float]:
    model = body.get("model", "mistral-x")
    head = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": CREATED, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
        data: dict[str, Any] = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            data["usage"] = usage
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    if "thinking" in model:
        yield chunk({"content": [_MISTRAL_THOUGHT]})
    for word in _words(model):
        if _delay(model):
            yield _delay(model)
        yield chunk({"content": word})
    finish = "stop"
    if _wants_tool(body):
        yield chunk({"tool_calls": [_MISTRAL_TOOL]})
        finish = "tool_calls"
    yield chunk({"content": ""}, finish, _MISTRAL_CACHED_USAGE if "thinking" in model else _MISTRAL_USAGE)
    yield b"data: [DONE]\n\n"


def mistral_embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    return {
        "id": "emb-1",
        "object": "list",
        "model": body.get("model"),
        "usage": {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4},
        "data": [{"object": "embedding", "embedding": [0.1, 0.2, 0.3], "index": i} for i in range(count)],
    }


# -- Cohere v2 ----------------------------------------------------------------------------------------------

_COHERE_USAGE = {
    "billed_units": {"input_tokens": 9, "output_tokens": 2},
    "tokens": {"input_tokens": 11, "output_tokens": 2},
    "cached_tokens": 4,
}
_COHERE_TOOL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def cohere_chat(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "command-x")
    message: dict[str, Any] = {"role": "assistant"}
    if _wants_tool(body):
        message["tool_plan"] = "I will look it up."
        message["tool_calls"] = [_COHERE_TOOL]
        finish = "TOOL_CALL"
    else:
        message["content"] = [{"type": "text", "text": "".join(_words(model))}]
        finish = "COMPLETE"
    return {"id": "chat_1", "finish_reason": finish, "message": message, "usage": _COHERE_USAGE}


def cohere_chat_sse(body: dict[str, Any]) -> Iterator[bytes | float]:
    model = body.get("model", "command-x")

    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    yield event("message-start", id="chat_1", delta={"message": {"role": "assistant"}})
    finish = "COMPLETE"
    if _wants_tool(body):
        yield event("tool-plan-delta", delta={"message": {"tool_plan": "I will look it up."}})
        start = {**_COHERE_TOOL, "function": {"name": "get_weather", "arguments": ""}}
        yield event("tool-call-start", index=0, delta={"message": {"tool_calls": start}})
        for part in ('{"city": ', '"Paris"}'):
            yield event(
                "tool-call-delta", index=0, delta={"message": {"tool_calls": {"function": {"arguments": part}}}}
            )
        yield event("tool-call-end", index=0)
        finish = "TOOL_CALL"
    else:
        yield event("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}})
        for index, word in enumerate(_words(model)):
            if _delay(model):
                yield _delay(model)
            yield event("content-delta", index=0, delta={"message": {"content": {"text": word}}})
            if "midstream-error" in model and index == 0:
                yield event("message-end", delta={"error": "Overloaded", "finish_reason": "ERROR"})
                return
        yield event("content-end", index=0)
    yield event("message-end", delta={"finish_reason": finish, "usage": _COHERE_USAGE})


def cohere_embed(body: dict[str, Any]) -> dict[str, Any]:
    count = len(body.get("texts") or body.get("inputs") or [])
    return {
        "id": "embed_1",
        "response_type": "embeddings_by_type",
        "embeddings": {"float": [[0.1, 0.2, 0.3] for _ in range(count)]},
        "texts": body.get("texts"),
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 4}},
    }


# -- Google Gen AI (Gemini API) ---------------------------------------------------------------------------

_GEMINI_USAGE = {
    "promptTokenCount": 11,
    "candidatesTokenCount": 2,
    "thoughtsTokenCount": 3,
    "cachedContentTokenCount": 4,
    "totalTokenCount": 16,
}


def _gemini_chunk(model: str, parts: list[dict[str, Any]], finish: str | None, usage: dict[str, Any]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": f"{model}-001", "responseId": "resp_1"}


def _gemini_tool(body: dict[str, Any], model: str) -> bool:
    config = body.get("toolConfig", {}).get("functionCallingConfig", {})
    return "tools" in model or (config.get("mode") == "ANY" and bool(body.get("tools")))


def gemini_json(body: dict[str, Any], model: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": "Thinking it over.", "thought": True}]
    if _gemini_tool(body, model):
        parts.append({"functionCall": {"id": "fc_1", "name": "get_weather", "args": {"city": "Paris"}}})
    else:
        parts.append({"text": "".join(_words(model))})
    return _gemini_chunk(model, parts, "STOP", _GEMINI_USAGE)


def gemini_sse(body: dict[str, Any], model: str) -> Iterator[bytes | float]:
    def chunk(data: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"

    running = {"promptTokenCount": 11, "totalTokenCount": 11}  # usage so far: no candidates counted yet
    yield chunk(_gemini_chunk(model, [{"text": "Thinking it over.", "thought": True}], None, running))
    for index, word in enumerate(_words(model)):
        if _delay(model):
            yield _delay(model)
        yield chunk(_gemini_chunk(model, [{"text": word}], None, running))
        if "midstream-error" in model and index == 0:
            yield chunk({"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}})
            return
    last: list[dict[str, Any]] = []
    if _gemini_tool(body, model):
        last = [{"functionCall": {"id": "fc_1", "name": "get_weather", "args": {"city": "Paris"}}}]
    yield chunk(_gemini_chunk(model, last, "STOP", _GEMINI_USAGE))


def gemini_embed(body: dict[str, Any], model: str) -> dict[str, Any]:
    return {"embeddings": [{"values": [0.1, 0.2, 0.3]} for _ in body.get("requests", [])]}


def _gemini_route(path: str) -> tuple[str, str] | None:
    """(model, method) of a Gemini API path ``/v1beta/models/<model>:<method>``."""
    name = path.rsplit("/", 1)[-1]
    if "/models/" not in path or ":" not in name:
        return None
    model, _, method = name.partition(":")
    return model, method


# -- the server ----------------------------------------------------------------------------------------------


def _error(path: str, status: int, model: str = "") -> dict[str, Any]:
    if path.startswith("/v2/"):  # Cohere
        return {"id": "err_1", "message": "rate limited" if status == 429 else "boom"}
    if model.startswith("mistral"):
        message = "rate limited" if status == 429 else "boom"
        return {"object": "error", "message": message, "type": "rate_limited" if status == 429 else "api_error"}
    if _gemini_route(path) is not None:
        kind = "RESOURCE_EXHAUSTED" if status == 429 else "INTERNAL"
        return {"error": {"code": status, "message": "rate limited" if status == 429 else "boom", "status": kind}}
    if path.startswith("/api/"):  # Ollama
        return {"error": "rate limited" if status == 429 else "boom"}
    if path.endswith("/messages"):
        kind = "rate_limit_error" if status == 429 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": "rate limited" if status == 429 else "boom"}}
    kind = "rate_limit_error" if status == 429 else "server_error"
    message = "rate limited" if status == 429 else "boom"
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _with_x_groq(events: Iterator[bytes | float]) -> Iterator[bytes | float]:
    """Groq's chat stream: the chunk before ``[DONE]`` carries the usage in ``x_groq``."""
    previous: bytes | None = None
    for item in events:
        if isinstance(item, float):
            yield item
            continue
        if item.startswith(b"data: [DONE]") and previous is not None:
            data = json.loads(previous[len(b"data: ") :])
            usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
            data["x_groq"] = {"id": "req_groq_1", "usage": usage}
            previous = b"data: " + json.dumps(data).encode() + b"\n\n"
        if previous is not None:
            yield previous
        previous = item
    if previous is not None:
        yield previous


_ROUTES = (
    ("/chat/completions", chat_json, chat_sse),
    ("/responses", responses_json, responses_sse),
    ("/embeddings", embeddings_json, None),
    ("/completions", completions_json, completions_sse),
    ("/messages", messages_json, messages_sse),
    ("/api/chat", ollama_chat_json, ollama_chat_ndjson),
    ("/api/generate", ollama_generate_json, ollama_generate_ndjson),
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        path = self.path.split("?", 1)[0]
        self.server.owner.requests.append((path, body))
        bedrock = fake_bedrock.answer(path, body)
        if bedrock is not None:
            self._bedrock(*bedrock)
            return
        gemini = _gemini_route(path)
        model = str(body.get("model", "")) if gemini is None else gemini[0]
        for status in (429, 500):
            if f"error-{status}" in model:
                self._json(status, _error(path, status, model), {"x-should-retry": "false"})
                return
        if gemini is not None:
            self._gemini(body, *gemini)
            return
        if model.startswith("mistral") and path.endswith("/chat/completions"):
            if body.get("stream"):
                self._sse(mistral_sse(body))
            else:
                self._json(200, mistral_json(body))
            return
        if path == "/v2/chat":
            if body.get("stream"):
                self._sse(cohere_chat_sse(body))
            else:
                self._json(200, cohere_chat(body))
            return
        if path == "/v2/embed":
            self._json(200, cohere_embed(body))
            return
        if model.startswith("mistral") and path.endswith("/embeddings"):
            self._json(200, mistral_embeddings(body))
            return
        for suffix, as_json, as_sse in _ROUTES:
            if path.endswith(suffix):
                if body.get("stream") and as_sse is not None:
                    if path.startswith("/openai/v1/") and as_sse is chat_sse:  # Groq's path
                        self._sse(_with_x_groq(as_sse(body)))
                        return
                    self._sse(as_sse(body))
                else:
                    self._json(200, as_json(body))
                return
        self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _gemini(self, body: dict[str, Any], model: str, method: str) -> None:
        if method == "streamGenerateContent":
            self._sse(gemini_sse(body, model))
        elif method == "generateContent":
            self._json(200, gemini_json(body, model))
        elif method == "batchEmbedContents":
            self._json(200, gemini_embed(body, model))
        else:
            self._json(404, {"error": {"code": 404, "message": f"no method {method}", "status": "NOT_FOUND"}})

    def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-request-id", "req_fake_1")
        self.send_header("request-id", "req_fake_1")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _bedrock(self, status: int, headers: dict[str, str], payload: bytes | Iterator[bytes]) -> None:
        if isinstance(payload, bytes):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if "content-length" not in headers:
                self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = "content-length" in headers  # a truncated body: hang up
            return
        self._sse(iter(payload), headers)

    def _sse(self, events: Iterator[bytes | float], headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        if headers is not None:  # Bedrock's event stream (its own content type and request id)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self._chunks(events)
            return
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", "req_fake_1")
        self.send_header("request-id", "req_fake_1")
        self.end_headers()
        self._chunks(events)

    def _chunks(self, events: Iterator[bytes | float]) -> None:
        try:
            for item in events:
                if isinstance(item, float):
                    time.sleep(item)
                    continue
                self.wfile.write(f"{len(item):x}\r\n".encode() + item + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading early
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early (closed or cancelled streams) are part of the tests


class FakeLLMServer:
    """The fake API on 127.0.0.1:<free port>, served from a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> FakeLLMServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
