"""Anthropic (``anthropic`` >= 0.30, see the range in ``tracer._registry``): the Messages API, streams included.

Patched (sync and async, first-party and beta classes; Bedrock/Vertex clients share them):
``messages.create`` (``stream=True`` too), ``messages.parse`` and ``messages.stream(...)``, whose
request bypasses ``create``: its manager is wrapped, the event starts in ``__enter__`` and the
helper's raw stream is routed through our proxy so ``text_stream``, ``get_final_message()`` and
iteration are all recorded.

Token counts follow the OTel convention: ``prompt_tokens`` = ``input_tokens`` + cache reads + cache
writes; streamed ``message_delta`` usage is cumulative, so it replaces (never adds to) earlier counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from .._registry import min_version
from ._llm import (
    Api,
    Call,
    async_wrapper,
    bare_stream_close_wrapper,
    clean_params,
    given,
    manager_wrapper,
    skipping,
    sync_wrapper,
)
from ._patch import Library, Target, loaded
from ._stream import StreamRecorder

__all__ = ["LIBRARY"]

_MESSAGES: Final = "anthropic.resources.messages.messages"
_MESSAGES_0_30: Final = "anthropic.resources.messages"  # the defining module before 0.41 (a package since)
_STREAMING: Final = "anthropic._streaming"
_BETA_MESSAGES: Final = "anthropic.resources.beta.messages.messages"
# Bedrock/Vertex beta classes copy the first-party methods into their own class bodies at import.
_PLATFORM_BETA: Final = ("anthropic.lib.bedrock._beta_messages", "anthropic.lib.vertex._beta_messages")

_SKIP: Final = skipping("messages", "system")
_TOOL_BLOCKS: Final = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def _provider(instance: Any) -> str:
    name = type(getattr(instance, "_client", None)).__name__
    if "Bedrock" in name:
        return "bedrock"
    if "Vertex" in name:
        return "vertex_ai"
    return "anthropic"


def _request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = clean_params(kwargs, _SKIP, {"provider": _provider(instance), "model": kwargs.get("model")})
    history: list[Any] = []
    system = kwargs.get("system")
    if given(system):
        history.append({"role": "system", "content": system})
    messages = kwargs.get("messages")
    if messages is not None and given(messages):
        history.extend(messages)
    return config, {"chat_history": history}


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _outputs(role: str, blocks: list[tuple[str, Any, Any, str]], stop_reason: Any) -> dict[str, Any]:
    """Outputs from content blocks given as (type, id, name, text-or-arguments)."""
    text: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for kind, block_id, name, value in blocks:
        if kind == "text":
            text.append(value)
        elif kind in _TOOL_BLOCKS:
            tool_calls.append({"id": block_id, "type": "function", "function": {"name": name, "arguments": value}})
        elif kind == "thinking":
            thinking.append(value)
    outputs: dict[str, Any] = {"role": role, "content": "".join(text) if text else None}
    if tool_calls:
        outputs["tool_calls"] = tool_calls
    if thinking:
        outputs["thinking"] = "".join(thinking)
    outputs["finish_reason"] = stop_reason
    return outputs


def _usage(metadata: dict[str, Any], input_tokens: Any, output_tokens: Any, read: Any, write: Any) -> None:
    prompt = (input_tokens or 0) + (read or 0) + (write or 0)
    metadata["prompt_tokens"] = prompt
    metadata["completion_tokens"] = output_tokens or 0
    metadata["total_tokens"] = prompt + (output_tokens or 0)
    if read is not None:
        metadata["cache_read_input_tokens"] = read
        metadata["cached_tokens"] = read
    if write is not None:
        metadata["cache_creation_input_tokens"] = write


def _result(message: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    # Read from the models' __dict__, where the SDK's models keep their fields (and the _request_id
    # it sets): pydantic's attribute access costs several times more, for a dozen fields here.
    fields = message.__dict__
    blocks: list[tuple[str, Any, Any, str]] = []
    for block in fields["content"]:
        block_fields = block.__dict__
        kind = block_fields.get("type")
        if kind == "text":
            blocks.append((kind, None, None, block_fields.get("text")))
        elif kind in _TOOL_BLOCKS:
            blocks.append((kind, block_fields.get("id"), block_fields.get("name"), _json(block_fields.get("input"))))
        elif kind == "thinking":
            blocks.append((kind, None, None, block_fields.get("thinking")))
    outputs = _outputs(fields.get("role"), blocks, fields.get("stop_reason"))
    metadata: dict[str, Any] = {"response_id": fields.get("id"), "response_model": fields.get("model")}
    stop_sequence = fields.get("stop_sequence")
    if stop_sequence:
        metadata["stop_sequence"] = stop_sequence
    request_id = fields.get("_request_id")
    if request_id:
        metadata["request_id"] = request_id
    usage = fields.get("usage")
    if usage is not None:
        counts = usage.__dict__
        # Releases before the cache fields were declared (0.30…) keep them as pydantic extras.
        extra = getattr(usage, "__pydantic_extra__", None) or {}
        _usage(
            metadata,
            counts.get("input_tokens"),
            counts.get("output_tokens"),
            counts.get("cache_read_input_tokens", extra.get("cache_read_input_tokens")),
            counts.get("cache_creation_input_tokens", extra.get("cache_creation_input_tokens")),
        )
    return outputs, metadata


class _Block:
    __slots__ = ("id", "kind", "name", "parts", "start")

    def __init__(self, block: Any) -> None:
        # Only the attributes each block type has: a miss goes through pydantic's slow __getattr__.
        kind = self.kind = block.type
        self.id = self.name = self.start = None
        self.parts: list[str] = []
        if kind == "text":
            self.start = block.text or None
        elif kind == "thinking":
            self.start = block.thinking or None
        elif kind in _TOOL_BLOCKS:
            self.id = block.id
            self.name = block.name
            self.start = block.input

    def value(self) -> str:
        if self.kind in _TOOL_BLOCKS:
            if self.parts:
                return "".join(self.parts)
            return _json(self.start if self.start is not None else {})
        text = "".join(self.parts)
        return self.start + text if self.start else text


class MessageStream(StreamRecorder):
    """Records raw Messages stream events (text, tool input JSON, thinking, cumulative usage)."""

    __slots__ = (
        "blocks",
        "cache_read",
        "cache_write",
        "id",
        "input_tokens",
        "model",
        "output_tokens",
        "role",
        "stop_reason",
        "stop_sequence",
    )

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.blocks: dict[int, _Block] = {}
        self.id: Any = None
        self.model: Any = None
        self.role = "assistant"
        self.stop_reason: Any = None
        self.stop_sequence: Any = None
        self.input_tokens: Any = None
        self.output_tokens: Any = None
        self.cache_read: Any = None
        self.cache_write: Any = None

    def take(self, event: Any) -> bool:
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            delta_type = delta.type
            block = self.blocks.get(event.index)
            if block is None:
                return False
            if delta_type == "text_delta":
                block.parts.append(delta.text)
            elif delta_type == "input_json_delta":
                block.parts.append(delta.partial_json)
            elif delta_type == "thinking_delta":
                block.parts.append(delta.thinking)
            else:
                return False
            return True
        if kind == "content_block_start":
            self.blocks[event.index] = _Block(event.content_block)
        elif kind == "message_start":
            message = event.message
            self.id = message.id
            self.model = message.model
            self.role = message.role
            self._usage(message.usage)
        elif kind == "message_delta":
            delta = event.delta
            self.stop_reason = delta.stop_reason
            self.stop_sequence = getattr(delta, "stop_sequence", None)
            self._usage(event.usage)
        return False

    def _usage(self, usage: Any) -> None:
        """message_delta counts are cumulative totals: they replace; absent (None) ones keep the earlier value."""
        if usage is None:
            return
        value = getattr(usage, "output_tokens", None)
        if value is not None:
            self.output_tokens = value
        value = getattr(usage, "input_tokens", None)
        if value is not None:
            self.input_tokens = value
        value = getattr(usage, "cache_read_input_tokens", None)
        if value is not None:
            self.cache_read = value
        value = getattr(usage, "cache_creation_input_tokens", None)
        if value is not None:
            self.cache_write = value

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        blocks = [(b.kind, b.id, b.name, b.value()) for b in (self.blocks[i] for i in sorted(self.blocks))]
        outputs = _outputs(self.role, blocks, self.stop_reason) if self.id is not None or blocks else None
        metadata: dict[str, Any] = {}
        if self.id is not None:
            metadata["response_id"] = self.id
            metadata["response_model"] = self.model
        if self.stop_sequence:
            metadata["stop_sequence"] = self.stop_sequence
        if self.input_tokens is not None or self.output_tokens is not None:
            _usage(metadata, self.input_tokens, self.output_tokens, self.cache_read, self.cache_write)
        return outputs, metadata


class HelperMessage(StreamRecorder):
    """For ``messages.stream(...)``: the helper accumulates the Message itself (cumulative usage and
    parsed tool input included); only the first token is timed here, the rest is read from the
    helper's snapshot when the stream ends."""

    __slots__ = ("message", "reader")

    FIRST_OUTPUT_ONLY = True

    def __init__(self, call: Call, reader: Callable[[], Any]) -> None:
        super().__init__(call)
        self.reader: Callable[[], Any] | None = reader
        self.message: Any = None

    @classmethod
    def of(cls, call: Call, helper: Any) -> HelperMessage | None:
        reader = getattr(helper, "_current_snapshot_or_none", None)  # MessageStream / AsyncMessageStream
        return cls(call, reader) if callable(reader) else None

    def take(self, event: Any) -> bool:
        return bool(event.type == "content_block_delta")

    def ended(self) -> None:
        # The helper's Message as it ends; the helper itself (a reference cycle holding the whole
        # response) is let go now, not when the event is shaped.
        reader, self.reader = self.reader, None
        self.message = reader() if reader is not None else None

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        message = self.message
        return _result(message) if message is not None else (None, {})


_stream_types: tuple[type, ...] = ()


def _streams() -> tuple[type, ...]:
    global _stream_types
    if not _stream_types:
        module = loaded("anthropic._streaming")
        if module is not None:
            _stream_types = (module.Stream, module.AsyncStream)
    return _stream_types


_EXTRA: Final[dict[str, Any]] = {
    "request_id_header": "request-id",
    "helper_recorder": HelperMessage.of,
    "saved": ("messages", "system", "tools"),  # see _llm.save_request
}


def _targets() -> tuple[Target, ...]:
    targets: list[Target] = []
    for module, prefix, optional in (
        # Optional, as one of the two exists: 0.41+ defines the classes in the first (the package
        # re-exports them, already wrapped), 0.30-0.40 in the second.
        (_MESSAGES, "anthropic.messages", True),
        (_MESSAGES_0_30, "anthropic.messages", True),
        (_BETA_MESSAGES, "anthropic.beta.messages", True),
        *((name, "anthropic.beta.messages", True) for name in _PLATFORM_BETA),
    ):
        create = Api(f"{prefix}.create", LIBRARY, _request, _result, MessageStream, _streams, **_EXTRA)
        parse = Api(f"{prefix}.parse", LIBRARY, _request, _result, MessageStream, _streams, **_EXTRA)
        stream = Api(f"{prefix}.stream", LIBRARY, _request, _result, MessageStream, _streams, **_EXTRA)
        targets += [
            Target(module, "Messages.create", sync_wrapper(create), optional),
            Target(module, "AsyncMessages.create", async_wrapper(create), optional),
            Target(module, "Messages.parse", sync_wrapper(parse), True),
            Target(module, "AsyncMessages.parse", async_wrapper(parse), True),
            Target(module, "Messages.stream", manager_wrapper(stream, False), optional),
            Target(module, "AsyncMessages.stream", manager_wrapper(stream, True), optional),
        ]
    # 0.x streams are handed back without a proxy (their isinstance() rejects one): closing one ends its event.
    targets += [
        Target(_STREAMING, "Stream.close", bare_stream_close_wrapper(False), True),
        Target(_STREAMING, "AsyncStream.close", bare_stream_close_wrapper(True), True),
    ]
    return tuple(targets)


LIBRARY: Final = Library("anthropic", min_version("anthropic"), _targets)
