"""The Amazon Bedrock Runtime part of ``tests/fake_llm_server.py``: JSON and AWS event-stream answers.

Routes (``POST /model/{modelId}/...``, as botocore sends them with ``endpoint_url=`` the fake):
``converse``, ``converse-stream``, ``invoke``, ``invoke-with-response-stream``. Streams are in the
binary event-stream encoding (``application/vnd.amazon.eventstream``): each message a prelude
(total and headers length, CRC32), string headers (``:event-type``, ``:message-type``…), a JSON
payload and a CRC32 of the whole message, which botocore checks as it parses.

The model id picks the body format of ``invoke``: ``anthropic.*`` (Messages), ``meta.*`` (Llama),
``amazon.titan-text*`` (Titan text), ``amazon.titan-embed*`` (Titan embeddings), ``amazon.nova*``
(Nova), ``mistral.*`` (Mistral text completions; ``mistral.mistral-large-2407*``: chat choices,
streamed as a choice per chunk).
And a scenario, as for the other APIs: ``tools`` (a tool call), ``error-429`` (ThrottlingException),
``midstream-error`` (a stream that fails after its first text), ``long`` (20 text chunks),
``truncated-body`` (an ``invoke`` answer whose body ends before its ``content-length``).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

__all__ = ["EVENT_STREAM", "answer", "frame"]

EVENT_STREAM = "application/vnd.amazon.eventstream"
REQUEST_ID = "req-bedrock-1"
USAGE = {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15}


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message (string headers only: value type 7)."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, data: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, json.dumps(data).encode())


def exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, json.dumps({"message": message}).encode())


def _words(model: str) -> list[str]:
    return [f"tok{i} " for i in range(20)] if "long" in model else ["Hel", "lo!"]


# -- Converse ---------------------------------------------------------------------------------------------


def converse_json(model: str, body: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": "".join(_words(model))}]
    stop = "end_turn"
    if "tools" in model:
        content.append({"toolUse": {"toolUseId": "tool_1", "name": "get_weather", "input": {"city": "Paris"}}})
        stop = "tool_use"
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {**USAGE, "cacheReadInputTokens": 4, "cacheWriteInputTokens": 0},
        "metrics": {"latencyMs": 42},
    }


def converse_stream(model: str, body: dict[str, Any]) -> Iterator[bytes]:
    yield event("messageStart", {"role": "assistant"})
    for index, word in enumerate(_words(model)):
        yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word}})
        if "midstream-error" in model and index == 0:
            yield exception("modelStreamErrorException", "The model stream failed")
            return
    yield event("contentBlockStop", {"contentBlockIndex": 0})
    stop = "end_turn"
    if "tools" in model:
        start = {"toolUse": {"toolUseId": "tool_1", "name": "get_weather"}}
        yield event("contentBlockStart", {"contentBlockIndex": 1, "start": start})
        for part in ('{"city": ', '"Paris"}'):
            yield event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": part}}})
        yield event("contentBlockStop", {"contentBlockIndex": 1})
        stop = "tool_use"
    yield event("messageStop", {"stopReason": stop})
    yield event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 42}})


# -- InvokeModel: one body format per model family ---------------------------------------------------------


def invoke_json(model: str, body: dict[str, Any]) -> dict[str, Any]:
    text = "".join(_words(model))
    if model.startswith("anthropic."):
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if "tools" in model:
            content.append({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}})
        return {
            "id": "msg_bdrk_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": content,
            "stop_reason": "tool_use" if "tools" in model else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 2},
        }
    if model.startswith("meta."):
        return {"generation": text, "prompt_token_count": 9, "generation_token_count": 3, "stop_reason": "stop"}
    if model.startswith("amazon.titan-embed"):
        return {"embedding": [0.1, 0.2, 0.3, 0.4], "inputTextTokenCount": 5}
    if model.startswith("amazon.titan"):
        return {
            "inputTextTokenCount": 8,
            "results": [{"tokenCount": 3, "outputText": text, "completionReason": "FINISH"}],
        }
    if model.startswith("amazon.nova"):
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10},
        }
    if model.startswith("mistral.mistral-large-2407"):
        message = {"role": "assistant", "content": text}
        return {"id": "cmpl-m1", "choices": [{"index": 0, "message": message, "stop_reason": "stop"}]}
    if model.startswith("mistral."):
        return {"outputs": [{"text": text, "stop_reason": "stop"}]}
    return {"unknown": True}


def _metrics(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": input_tokens,
            "outputTokenCount": output_tokens,
            "invocationLatency": 40,
            "firstByteLatency": 10,
        }
    }


def invoke_chunks(model: str) -> Iterator[dict[str, Any]]:
    """The JSON objects a streamed InvokeModel sends, one per chunk, in the model's own format."""
    words = _words(model)
    if model.startswith("anthropic."):
        message = {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude-x", "content": []}
        message["usage"] = {"input_tokens": 10, "output_tokens": 1}
        yield {"type": "message_start", "message": message}
        yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        for word in words:
            yield {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}
        yield {"type": "content_block_stop", "index": 0}
        yield {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}
        yield {"type": "message_stop", **_metrics(10, 3)}
    elif model.startswith("meta."):
        for index, word in enumerate(words):
            last = index == len(words) - 1
            chunk: dict[str, Any] = {"generation": word, "generation_token_count": index + 1}
            chunk["prompt_token_count"] = 9 if index == 0 else None
            chunk["stop_reason"] = "stop" if last else None
            yield {**chunk, **(_metrics(9, len(words)) if last else {})}
    elif model.startswith("amazon.titan"):
        for index, word in enumerate(words):
            last = index == len(words) - 1
            chunk = {"outputText": word, "index": 0, "totalOutputTextTokenCount": index + 1}
            chunk["completionReason"] = "FINISH" if last else None
            chunk["inputTextTokenCount"] = 8 if index == 0 else None
            yield {**chunk, **(_metrics(8, len(words)) if last else {})}
    elif model.startswith("amazon.nova"):
        yield {"messageStart": {"role": "assistant"}}
        for word in words:
            yield {"contentBlockDelta": {"delta": {"text": word}, "contentBlockIndex": 0}}
        yield {"contentBlockStop": {"contentBlockIndex": 0}}
        yield {"messageStop": {"stopReason": "end_turn"}}
        yield {"metadata": {"usage": {"inputTokens": 7, "outputTokens": 3}}, **_metrics(7, 3)}
    elif model.startswith("mistral.mistral-large-2407"):  # chat: a choice per chunk, its text in "message"
        for index, word in enumerate(words):
            last = index == len(words) - 1
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": word},
                "stop_reason": "stop" if last else None,
            }
            chunk = {
                "id": "cmpl-m1",
                "object": "chat.completion.chunk",
                "model": "mistral-large-2407",
                "choices": [choice],
            }
            yield {**chunk, **(_metrics(6, len(words)) if last else {})}
    elif model.startswith("mistral."):
        for index, word in enumerate(words):
            last = index == len(words) - 1
            chunk = {"outputs": [{"text": word, "stop_reason": "stop" if last else None}]}
            yield {**chunk, **(_metrics(6, len(words)) if last else {})}


def invoke_stream(model: str, body: dict[str, Any]) -> Iterator[bytes]:
    for index, chunk in enumerate(invoke_chunks(model)):
        if "midstream-error" in model and index == 1:
            yield exception("modelStreamErrorException", "The model stream failed")
            return
        encoded = base64.b64encode(json.dumps(chunk).encode()).decode()
        yield event("chunk", {"bytes": encoded})


# -- dispatch ------------------------------------------------------------------------------------------------


def answer(path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes | Iterator[bytes]] | None:
    """(status, headers, body or event-stream frames) for a Bedrock Runtime path; None for other paths."""
    if not path.startswith("/model/"):
        return None
    model, _, operation = unquote(path[len("/model/") :]).rpartition("/")
    headers = {"x-amzn-requestid": REQUEST_ID}
    if "error-429" in model:
        headers["x-amzn-errortype"] = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        payload = json.dumps({"message": "Too many requests, please wait before trying again."}).encode()
        return 429, {**headers, "content-type": "application/json"}, payload
    if operation == "converse":
        return 200, {**headers, "content-type": "application/json"}, json.dumps(converse_json(model, body)).encode()
    if operation == "converse-stream":
        return 200, {**headers, "content-type": EVENT_STREAM}, converse_stream(model, body)
    if operation == "invoke":
        headers["x-amzn-bedrock-input-token-count"] = "11"
        headers["x-amzn-bedrock-output-token-count"] = "3"
        headers["x-amzn-bedrock-invocation-latency"] = "40"
        payload = json.dumps(invoke_json(model, body)).encode()
        if "truncated-body" in model:  # promises more than it sends, then hangs up
            headers["content-length"] = str(len(payload) + 50)
        return 200, {**headers, "content-type": "application/json"}, payload
    if operation == "invoke-with-response-stream":
        return 200, {**headers, "content-type": EVENT_STREAM}, invoke_stream(model, body)
    return 404, {**headers, "content-type": "application/json"}, b'{"message": "no such operation"}'
