"""Ollama (``ollama``, range in ``tracer._registry``): ``chat`` and ``generate``, streams included.

Patched: ``Client.chat`` / ``.generate`` and the ``AsyncClient`` ones, and the module-level
``ollama.chat`` / ``ollama.generate``, which are methods of a default client bound when ``ollama``
is imported (before ``tracer.init()`` they would keep the unpatched functions). A stream is the
generator the client returns; the event covers it, however it ends.

The provider is ``ollama``; ``base_url`` is the client's host. Token counts are Ollama's
``prompt_eval_count`` / ``eval_count``; its durations (nanoseconds) go to ``metadata`` in ms.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import AsyncGeneratorType, GeneratorType
from typing import Any, ClassVar, Final

from .._registry import min_version
from ._llm import Api, Call, async_wrapper, clean_params, dump, given, skipping, sync_wrapper
from ._patch import Library, Target
from ._stream import StreamRecorder

__all__ = ["LIBRARY"]

_CLIENT: Final = "ollama._client"
_PACKAGE: Final = "ollama"

_CHAT_SKIP: Final = skipping("messages")
_GENERATE_SKIP: Final = skipping("prompt", "system", "images", "context")
_STREAM_TYPES: Final = (GeneratorType, AsyncGeneratorType)


def _config(instance: Any, kwargs: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    config = clean_params(kwargs, skip, {"provider": "ollama", "model": kwargs.get("model")})
    if "options" in config:
        config["options"] = dump(config["options"])  # an ollama.Options model, or a dict
    host = getattr(getattr(instance, "_client", None), "base_url", None)
    if host is not None:
        config["base_url"] = str(host).rstrip("/")
    return config


def _chat_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    messages = kwargs.get("messages")
    inputs = {"chat_history": [dump(message) for message in messages]} if messages else None
    return _config(instance, kwargs, _CHAT_SKIP), inputs


def _generate_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    history: list[Any] = []
    system = kwargs.get("system")
    if given(system):
        history.append({"role": "system", "content": system})
    prompt = kwargs.get("prompt")
    if given(prompt):
        history.append({"role": "user", "content": prompt})
    return _config(instance, kwargs, _GENERATE_SKIP), {"chat_history": history, "prompt": prompt}


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    # Ollama gives the arguments as an object: recorded as a JSON-ready dict.
    return [
        {"type": "function", "function": {"name": call.function.name, "arguments": dump(call.function.arguments)}}
        for call in calls
    ]


_DURATIONS: Final = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def _metadata(response: Any) -> dict[str, Any]:
    fields = response.__dict__
    metadata: dict[str, Any] = {"response_model": fields.get("model")}
    prompt, completion = fields.get("prompt_eval_count"), fields.get("eval_count")
    if prompt is not None or completion is not None:
        metadata["prompt_tokens"] = prompt or 0
        metadata["completion_tokens"] = completion or 0
        metadata["total_tokens"] = (prompt or 0) + (completion or 0)
    for name in _DURATIONS:
        value = fields.get(name)
        if value is not None:
            metadata[f"{name}_ms"] = value / 1e6
    return metadata


def _outputs(role: Any, content: Any, thinking: Any, calls: Any, last: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(outputs, metadata) of a chat or generate answer; *last*: the response (a stream's last part)."""
    outputs: dict[str, Any] = {"role": role, "content": content}
    if calls:
        outputs["tool_calls"] = _tool_calls(calls)
    if thinking:
        outputs["thinking"] = thinking
    if last is None:
        outputs["finish_reason"] = None
        return outputs, {}
    outputs["finish_reason"] = last.__dict__.get("done_reason")
    return outputs, _metadata(last)


def _chat_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    message = response.message
    fields = message.__dict__
    return _outputs(message.role, message.content, fields.get("thinking"), fields.get("tool_calls"), response)


def _generate_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    return _outputs("assistant", response.response, response.__dict__.get("thinking"), None, response)


class GenerateStream(StreamRecorder):
    """Records streamed ``GenerateResponse`` parts: text and thinking pieces, the final counts."""

    __slots__ = ("last", "text", "thinking")

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.last: Any = None  # the latest part (the final one carries done_reason and the counts)

    TEXT: ClassVar[str] = "response"  # the field with the text, in a part (chat: in its message)

    def take(self, part: Any) -> bool:
        self.last = part
        return self._take_text(part.__dict__)

    def _take_text(self, fields: dict[str, Any]) -> bool:
        output = False
        text = fields.get(self.TEXT)
        if text:
            self.text.append(text)
            output = True
        thinking = fields.get("thinking")
        if thinking:
            self.thinking.append(thinking)
            output = True
        return output

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        return self._result("assistant", None)

    def _result(self, role: Any, calls: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        content = "".join(self.text) if self.text else None
        return _outputs(role, content, "".join(self.thinking) if self.thinking else None, calls, self.last)


class ChatStream(GenerateStream):
    """Records streamed ``ChatResponse`` parts: ``GenerateStream``'s, and the tool calls and role."""

    __slots__ = ("calls", "role")
    TEXT = "content"

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.calls: list[Any] = []
        self.role = "assistant"

    def take(self, part: Any) -> bool:
        self.last = part
        message = part.__dict__.get("message")
        if message is None:
            return False
        fields = message.__dict__
        output = self._take_text(fields)
        calls = fields.get("tool_calls")
        if calls:
            self.calls.extend(calls)
            output = True
        role = fields.get("role")
        if role:
            self.role = role
        return output

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        return self._result(self.role, self.calls)


def _streams() -> tuple[type, ...]:
    return _STREAM_TYPES


def _targets() -> tuple[Target, ...]:
    chat = Api(
        "ollama.chat",
        LIBRARY,
        _chat_request,
        _chat_result,
        ChatStream,
        _streams,
        saved=("messages", "tools"),
        positional=("model", "messages"),
    )
    generate = Api(
        "ollama.generate",
        LIBRARY,
        _generate_request,
        _generate_result,
        GenerateStream,
        _streams,
        saved=("images", "context"),
        positional=("model", "prompt", "suffix"),
    )
    return (
        Target(_CLIENT, "Client.chat", sync_wrapper(chat)),
        Target(_CLIENT, "Client.generate", sync_wrapper(generate)),
        Target(_CLIENT, "AsyncClient.chat", async_wrapper(chat)),
        Target(_CLIENT, "AsyncClient.generate", async_wrapper(generate)),
        # The default client's bound methods (see the module doc); already ours when ollama is
        # imported after init() (bound from the patched class), then left alone.
        Target(_PACKAGE, "chat", sync_wrapper(chat)),
        Target(_PACKAGE, "generate", sync_wrapper(generate)),
    )


LIBRARY: Final = Library("ollama", min_version("ollama"), _targets)
