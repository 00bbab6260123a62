"""Cohere (``cohere`` >= 5.16, the v2 API: ``ClientV2`` / ``AsyncClientV2``; tested with 5.16 and 7.3): chat, embed.

Patched (``cohere.v2.client``, which ``ClientV2`` and ``AsyncClientV2`` inherit): ``chat``,
``chat_stream`` and ``embed``, sync and async. ``chat_stream`` is a generator function (the async
one an async generator function: called without ``await``), so the request is sent on the first
read; the generator is handed back behind a stream proxy, whose first read runs with the event
current. ``ClientV2.__init__`` keeps its bound ``chat`` and ``chat_stream`` on the instance, so a
client made before instrumenting never reaches those patches: the raw client's ``chat`` and
``chat_stream`` (``cohere.v2.raw_client``), which they call, are patched too, and call straight
through under ours. The v1 API (``cohere.Client().chat``) is not traced.

Token counts: ``usage.tokens`` (what the model read and wrote) when the response has them, else
``usage.billed_units``; both billed counts are kept as ``billed_input_tokens`` /
``billed_output_tokens``, and ``cached_tokens`` when given.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import AsyncGeneratorType, GeneratorType
from typing import Any, Final

from .._registry import min_version
from ._llm import Api, Call, async_wrapper, clean_params, json_ready, manager_wrapper, skipping, sync_wrapper
from ._patch import Library, Target
from ._stream import StreamRecorder

__all__ = ["LIBRARY"]

_V2: Final = "cohere.v2.client"
_V2_RAW: Final = "cohere.v2.raw_client"
_CHAT_SAVED: Final = ("messages", "tools", "documents")

_CHAT_SKIP: Final = skipping("messages", "documents", "request_options")
_EMBED_SKIP: Final = skipping("texts", "images", "inputs", "request_options")


# -- requests --------------------------------------------------------------------------------------


def _chat_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    params = clean_params(kwargs, _CHAT_SKIP, {})
    config = {"provider": "cohere", "model": kwargs.get("model"), **json_ready(params)}
    inputs: dict[str, Any] = {}
    messages = kwargs.get("messages")
    if messages:
        inputs["chat_history"] = json_ready(list(messages))
    documents = kwargs.get("documents")
    if isinstance(documents, (list, tuple)):
        inputs["documents"] = json_ready(list(documents))
    return config, inputs or None


def _embed_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    params = clean_params(kwargs, _EMBED_SKIP, {})
    config = {"provider": "cohere", "model": kwargs.get("model"), **json_ready(params)}
    for name in ("texts", "inputs", "images"):
        value = kwargs.get(name)
        if isinstance(value, (list, tuple)):
            return config, {"input": json_ready(list(value))}
    return config, None


# -- responses -------------------------------------------------------------------------------------


def _number(value: Any) -> Any:
    """Cohere types token counts as floats: whole numbers as ints."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _get(value: Any, name: str) -> Any:
    """A field of an SDK model, or of the plain dict older SDKs leave undeclared fields as."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _usage(usage: Any, metadata: dict[str, Any]) -> None:
    if usage is None:
        return
    tokens, billed = _get(usage, "tokens"), _get(usage, "billed_units")
    counts = tokens if tokens is not None and _get(tokens, "input_tokens") is not None else billed
    if counts is not None:
        prompt = _number(_get(counts, "input_tokens") or 0)
        completion = _number(_get(counts, "output_tokens") or 0)
        metadata["prompt_tokens"] = prompt
        metadata["completion_tokens"] = completion
        metadata["total_tokens"] = prompt + completion
    if billed is not None:
        for name in ("input_tokens", "output_tokens"):
            value = _get(billed, name)
            if value is not None:
                metadata[f"billed_{name}"] = _number(value)
    cached = _get(usage, "cached_tokens")
    if cached is not None:
        metadata["cached_tokens"] = _number(cached)


def _tool_call(call: Any) -> dict[str, Any]:
    function = call.function
    return {
        "id": call.id,
        "type": "function",
        "function": {
            "name": function.name if function is not None else None,
            "arguments": function.arguments if function is not None else None,
        },
    }


def _outputs(text: list[str], thinking: list[str], plan: list[str], tools: list[Any], reason: Any) -> dict[str, Any]:
    outputs: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if tools:
        outputs["tool_calls"] = tools
    if plan:
        outputs["tool_plan"] = "".join(plan)
    if thinking:
        outputs["thinking"] = "".join(thinking)
    outputs["finish_reason"] = reason
    return outputs


def _chat_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    message = response.message
    text: list[str] = []
    thinking: list[str] = []
    tools: list[Any] = []
    plan: list[str] = []
    if message is not None:
        for item in message.content or ():
            kind = getattr(item, "type", None)
            if kind == "text":
                text.append(item.text)
            elif kind == "thinking":
                thinking.append(item.thinking)
        tools = [_tool_call(call) for call in message.tool_calls or ()]
        if message.tool_plan:
            plan.append(message.tool_plan)
    metadata: dict[str, Any] = {"response_id": response.id}
    _usage(response.usage, metadata)
    return _outputs(text, thinking, plan, tools, response.finish_reason), metadata


def _raw_chat_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    return _chat_result(response.data)  # the raw client's HttpResponse


def _embed_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    embeddings = response.embeddings
    vectors: Any = None
    if isinstance(embeddings, list):  # embeddings_floats responses
        vectors = embeddings
    elif embeddings is not None:  # by type: the first type returned
        fields = embeddings if isinstance(embeddings, Mapping) else embeddings.__dict__
        vectors = next((value for value in fields.values() if isinstance(value, list)), None)
    outputs: dict[str, Any] = {"embeddings": len(vectors) if vectors is not None else 0}
    if vectors and isinstance(vectors[0], list):
        outputs["dimensions"] = len(vectors[0])
    metadata: dict[str, Any] = {"response_id": response.id}
    meta = response.meta
    billed = getattr(meta, "billed_units", None) if meta is not None else None
    if billed is not None and billed.input_tokens is not None:
        metadata["prompt_tokens"] = metadata["total_tokens"] = _number(billed.input_tokens)
    return outputs, metadata


class ChatStream(StreamRecorder):
    """Records v2 chat stream events: text, thinking, tool plan, tool calls by index, the final usage."""

    __slots__ = ("error", "finish_reason", "id", "plan", "text", "thinking", "tools", "usage")

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.id: Any = None
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.plan: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: Any = None
        self.usage: Any = None
        self.error: Any = None

    def take(self, event: Any) -> bool:
        kind = event.type
        if kind == "content-delta":
            content = event.delta.message.content
            if content.text is not None:
                self.text.append(content.text)
            elif content.thinking is not None:
                self.thinking.append(content.thinking)
            else:
                return False
            return True
        if kind == "tool-call-delta":
            state = self.tools.get(event.index)
            function = event.delta.message.tool_calls.function
            if state is not None and function is not None and function.arguments:
                state["function"]["arguments"] = (state["function"]["arguments"] or "") + function.arguments
            return True
        if kind == "tool-call-start":
            self.tools[event.index] = _tool_call(event.delta.message.tool_calls)
            return True
        if kind == "tool-plan-delta":
            plan = event.delta.message.tool_plan
            if plan:
                self.plan.append(plan)
                return True
        elif kind == "message-start":
            self.id = event.id
        elif kind == "message-end":
            delta = event.delta
            if delta is not None:  # usage and error: undeclared (a dict, or absent) in some 5.x releases
                self.finish_reason = _get(delta, "finish_reason")
                self.usage = _get(delta, "usage")
                self.error = _get(delta, "error")
        elif kind == "content-start":
            content = event.delta.message.content
            if getattr(content, "text", None):
                self.text.append(content.text)
                return True
        return False

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        tools = [self.tools[index] for index in sorted(self.tools)]
        started = self.id is not None or self.text or tools
        outputs = _outputs(self.text, self.thinking, self.plan, tools, self.finish_reason) if started else None
        metadata: dict[str, Any] = {}
        if self.id is not None:
            metadata["response_id"] = self.id
        if self.error:
            metadata["error_message"] = self.error
        _usage(self.usage, metadata)
        return outputs, metadata


class RawChatStream(ChatStream):
    """A stream read from the raw client's response (``HttpResponse.data``, held in ``_data``)."""

    __slots__ = ()
    SOURCE = "_data"


def _streams() -> tuple[type, ...]:
    return (GeneratorType, AsyncGeneratorType)


def _targets() -> tuple[Target, ...]:
    def api(name: str, request: Any, result: Any, saved: tuple[str, ...]) -> Api:
        return Api(f"cohere.{name}", LIBRARY, request, result, ChatStream, _streams, saved=saved)

    chat = api("chat", _chat_request, _chat_result, _CHAT_SAVED)
    stream = api("chat_stream", _chat_request, _chat_result, _CHAT_SAVED)
    embed = api("embed", _embed_request, _embed_result, ("texts", "inputs"))
    # ClientV2.__init__ stores its bound ``chat`` on the instance (argument checks): a client made
    # before instrumenting keeps calling the original, which calls the raw client's ``chat``
    # (``cohere.v2.raw_client``, there since 5.16), patched too. A call through both is one event
    # (the inner one calls straight through).
    raw_chat = Api("cohere.chat", LIBRARY, _chat_request, _raw_chat_result, ChatStream, _streams, saved=_CHAT_SAVED)
    # Its ``chat_stream`` likewise: the raw client's is a context manager sending the request when
    # entered, its response's ``data`` the stream. Through ours, the raw one is entered while our
    # stream reads its first chunk (our event current): it calls straight through.
    raw_stream = Api(
        "cohere.chat_stream", LIBRARY, _chat_request, _raw_chat_result, RawChatStream, _streams, saved=_CHAT_SAVED
    )
    return (
        Target(_V2_RAW, "RawV2Client.chat", sync_wrapper(raw_chat)),
        Target(_V2_RAW, "AsyncRawV2Client.chat", async_wrapper(raw_chat)),
        Target(_V2_RAW, "RawV2Client.chat_stream", manager_wrapper(raw_stream, aio=False)),
        Target(_V2_RAW, "AsyncRawV2Client.chat_stream", manager_wrapper(raw_stream, aio=True)),
        Target(_V2, "V2Client.chat", sync_wrapper(chat)),
        Target(_V2, "AsyncV2Client.chat", async_wrapper(chat)),
        Target(_V2, "V2Client.chat_stream", sync_wrapper(stream)),
        Target(_V2, "AsyncV2Client.chat_stream", sync_wrapper(stream, async_stream=True)),
        Target(_V2, "V2Client.embed", sync_wrapper(embed)),
        Target(_V2, "AsyncV2Client.embed", async_wrapper(embed)),
    )


LIBRARY: Final = Library("cohere", min_version("cohere"), _targets)
