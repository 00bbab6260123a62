"""Mistral (``mistralai`` >= 1.2, the ``Mistral`` client; tested with 1.2 and 3.7): chat and embeddings.

Patched (sync and async): ``chat.complete`` / ``complete_async`` (``chat.parse`` goes through
them), ``chat.stream`` / ``stream_async`` (``parse_stream`` too) and ``embeddings.create`` /
``create_async``. The classes live in ``mistralai.chat`` up to 1.x and in ``mistralai.client.chat``
from 2.0: the module of the installed version is patched.

Streams are the SDK's ``EventStream`` (or, in early 1.x, a plain generator) of ``CompletionEvent``
objects, each wrapping a ``CompletionChunk``; the last chunk carries the usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import AsyncGeneratorType, GeneratorType
from typing import Any, Final

import orjson

from .._registry import min_version
from ._llm import Api, Call, async_wrapper, clean_params, given, skipping, sync_wrapper
from ._patch import Library, Target, loaded
from ._stream import StreamRecorder

__all__ = ["LIBRARY"]

# Arguments that are the SDK's transport options, never request parameters.
_SKIP: Final = skipping("messages", "retries", "server_url", "timeout_ms", "http_headers")
_EMBED_SKIP: Final = skipping("inputs", "retries", "server_url", "timeout_ms", "http_headers")


def _package() -> str:
    """Where the resources are: ``mistralai.client`` from 2.0, ``mistralai`` before."""
    version = LIBRARY.version.split(".", 1)[0]
    return "mistralai" if version.isdigit() and int(version) < 2 else "mistralai.client"


# -- requests --------------------------------------------------------------------------------------


def _chat_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = clean_params(kwargs, _SKIP, {"provider": "mistral", "model": kwargs.get("model")})
    messages = kwargs.get("messages")
    return config, {"chat_history": [_message(m) for m in messages]} if given(messages) and messages else None


def _message(message: Any) -> Any:
    """A request message as a dict (the SDK takes its own models or dicts)."""
    if isinstance(message, Mapping):
        return message
    to_dict = getattr(message, "model_dump", None)
    return to_dict(mode="json", exclude_none=True, warnings=False) if callable(to_dict) else message


def _embed_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = clean_params(kwargs, _EMBED_SKIP, {"provider": "mistral", "model": kwargs.get("model")})
    inputs = kwargs.get("inputs")
    return config, {"input": inputs} if given(inputs) else None


# -- responses -------------------------------------------------------------------------------------


def _arguments(value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _content(content: Any, text: list[str], thinking: list[str]) -> bool:
    """Add a message's content (a string, or text / thinking chunks) to *text* and *thinking*; True if any."""
    if isinstance(content, str):
        if content:
            text.append(content)
            return True
        return False
    if not isinstance(content, list):
        return False
    carried = False
    for chunk in content:
        kind = getattr(chunk, "type", None)
        if kind == "text":
            text.append(chunk.text)
            carried = True
        elif kind == "thinking":
            for part in chunk.thinking or ():
                value = getattr(part, "text", None)
                if isinstance(value, str):
                    thinking.append(value)
                    carried = True
    return carried


def _tool_call(call: Any) -> dict[str, Any]:
    function = call.function
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": function.name, "arguments": _arguments(function.arguments)},
    }


def _usage(usage: Any, metadata: dict[str, Any]) -> None:
    """The token counts of a response's usage (None: none) into *metadata*."""
    if usage is None:
        return
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    metadata["prompt_tokens"] = prompt
    metadata["completion_tokens"] = completion
    metadata["total_tokens"] = usage.total_tokens or prompt + completion
    extra = getattr(usage, "__pydantic_extra__", None) or {}
    details = extra.get("prompt_tokens_details")
    if isinstance(details, Mapping) and details.get("cached_tokens") is not None:
        metadata["cached_tokens"] = details["cached_tokens"]


def _choice(choice: Any) -> dict[str, Any]:
    message = choice.message
    text: list[str] = []
    thinking: list[str] = []
    _content(message.content, text, thinking)
    outputs: dict[str, Any] = {"role": message.role or "assistant", "content": "".join(text) if text else None}
    tool_calls = message.tool_calls
    if tool_calls:
        outputs["tool_calls"] = [_tool_call(call) for call in tool_calls]
    if thinking:
        outputs["thinking"] = "".join(thinking)
    outputs["finish_reason"] = _reason(choice.finish_reason)
    return outputs


def _reason(value: Any) -> Any:
    return getattr(value, "value", value)


def _chat_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    choices = response.choices or []
    outputs = _choice(choices[0]) if choices else None
    if outputs is not None and len(choices) > 1:
        outputs["choices"] = [_choice(choice) for choice in choices]
    metadata: dict[str, Any] = {"response_id": response.id, "response_model": response.model}
    _usage(response.usage, metadata)
    return outputs, metadata


def _embed_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    data = response.data or []
    outputs: dict[str, Any] = {"embeddings": len(data)}
    if data and isinstance(data[0].embedding, list):
        outputs["dimensions"] = len(data[0].embedding)
    metadata: dict[str, Any] = {"response_id": response.id, "response_model": response.model}
    _usage(response.usage, metadata)
    return outputs, metadata


class ChatStream(StreamRecorder):
    """Records streamed chat chunks: text, thinking, tool-call fragments (by index), the usage."""

    __slots__ = ("finish_reason", "id", "model", "role", "text", "thinking", "tools", "usage")

    SOURCE = "generator"  # EventStream keeps its chunk generator there
    # Each chunk is taken as it arrives, while the SDK has just built it. The SDK spends about
    # 0.4 ms parsing a chunk (it builds a pydantic model class for each), so a buffered chunk is
    # out of the caches by the time a batch is taken. Buffered chunks also keep about 30
    # garbage-collected objects each alive until the worker shapes the event: 180 for a stream of
    # 6 chunks, against 20 taken as they arrive. `bench/llm_overhead.py --no-peer --processes 2
    # --pairs 600 --only "mistral chat.stream" --batch 16`, twice on 2026-12-07: 179 and 147 µs
    # added per stream, 3.84 and 6.77 per chunk, against 254 and 185, 7.03 and 8.23 with 16. The
    # same comparison for openai and google-genai streams favours their defaults.
    BATCH = 1

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.id: Any = None
        self.model: Any = None
        self.role = "assistant"
        self.text: list[str] = []
        # Made when first needed, and the usage read into its counts when it arrives: what a stream
        # keeps until the worker shapes its event went from 20 garbage-collected objects to 10 (the
        # SDK's usage model holds six), counted with gc.get_objects() over 100 streams.
        self.thinking: list[str] | None = None
        self.tools: dict[int, dict[str, Any]] | None = None
        self.finish_reason: Any = None
        self.usage: dict[str, Any] | None = None

    def take(self, event: Any) -> bool:
        # Runs for every chunk, between the SDK's slow parsing: type checks rather than isinstance()
        # or truth tests (an unset field is the SDK's UNSET, whose __bool__ is Python code), and a
        # text delta's content added here rather than through _content().
        chunk = event.data
        if self.id is None:
            self.id = chunk.id
            self.model = chunk.model
        usage = chunk.usage
        if usage is not None:
            counts: dict[str, Any] = {}
            _usage(usage, counts)
            self.usage = counts
        choices = chunk.choices
        if type(choices) is not list or not choices:
            return False
        choice = choices[0]
        reason = choice.finish_reason
        if reason is not None:
            self.finish_reason = _reason(reason)
        delta = choice.delta
        role = delta.role
        if type(role) is str:
            self.role = role
        content = delta.content
        if type(content) is str:
            carried = bool(content)
            if carried:
                self.text.append(content)
        elif isinstance(content, list):  # text and thinking chunks
            if self.thinking is None:
                self.thinking = []
            carried = _content(content, self.text, self.thinking)
        else:
            carried = False
        calls = delta.tool_calls
        if type(calls) is list and calls:
            tools = self.tools
            if tools is None:
                tools = self.tools = {}
            for position, call in enumerate(calls):
                index = call.index if isinstance(getattr(call, "index", None), int) else position
                state = tools.get(index)
                function = call.function
                if state is None:
                    tools[index] = {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": function.name, "arguments": _arguments(function.arguments) or ""},
                    }
                else:
                    state["function"]["arguments"] += _arguments(function.arguments) or ""
            carried = True
        return carried

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        outputs: dict[str, Any] | None = None
        if self.id is not None:
            outputs = {"role": self.role, "content": "".join(self.text) if self.text else None}
            if self.tools:
                outputs["tool_calls"] = [self.tools[index] for index in sorted(self.tools)]
            if self.thinking:
                outputs["thinking"] = "".join(self.thinking)
            outputs["finish_reason"] = self.finish_reason
        metadata: dict[str, Any] = {}
        if self.id is not None:
            metadata["response_id"] = self.id
            metadata["response_model"] = self.model
        if self.usage:
            metadata.update(self.usage)
        return outputs, metadata


_stream_types: tuple[type, ...] = ()


def _streams() -> tuple[type, ...]:
    global _stream_types
    if not _stream_types:
        found: list[type] = [GeneratorType, AsyncGeneratorType]  # early 1.x hands out plain generators
        module = loaded(f"{_package()}.utils.eventstreaming")
        if module is not None:
            found += [getattr(module, name) for name in ("EventStream", "EventStreamAsync") if hasattr(module, name)]
        _stream_types = tuple(found)
    return _stream_types


def _targets() -> tuple[Target, ...]:
    package = _package()
    chat, embeddings = f"{package}.chat", f"{package}.embeddings"

    def api(name: str, request: Any, result: Any, saved: tuple[str, ...]) -> Api:
        return Api(f"mistral.{name}", LIBRARY, request, result, ChatStream, _streams, saved=saved)

    complete = api("chat.complete", _chat_request, _chat_result, ("messages", "tools"))
    stream = api("chat.stream", _chat_request, _chat_result, ("messages", "tools"))
    embed = api("embeddings.create", _embed_request, _embed_result, ("inputs",))
    return (
        Target(chat, "Chat.complete", sync_wrapper(complete)),
        Target(chat, "Chat.complete_async", async_wrapper(complete)),
        Target(chat, "Chat.stream", sync_wrapper(stream)),
        Target(chat, "Chat.stream_async", async_wrapper(stream)),
        Target(embeddings, "Embeddings.create", sync_wrapper(embed)),
        Target(embeddings, "Embeddings.create_async", async_wrapper(embed)),
    )


LIBRARY: Final = Library("mistralai", min_version("mistralai"), _targets)
