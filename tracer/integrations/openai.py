"""OpenAI (``openai`` >= 1.9, range in ``tracer._registry``): chat, Responses, embeddings, legacy completions.

Patched (sync and async, every client sharing these classes: ``OpenAI``, ``AzureOpenAI``, any
``base_url``): ``chat.completions.create`` / ``.parse`` (``.stream(...)`` goes through ``create``),
``responses.create`` / ``.parse`` (``.stream(...)`` too), ``beta.responses.create``,
``embeddings.create`` and legacy ``completions.create``. ``with_raw_response`` goes through the same
methods. The stream helpers' ``close()`` is patched as well, since it closes the HTTP response
without telling the raw stream.

Chat streams carry token usage only when the request asks for it (``stream_options={"include_usage":
True}``). Nothing is added to requests unless ``set_include_stream_usage(True)`` (or
``tracer.integrations.instrument("openai", include_stream_usage=True)``): then streamed chat and
completions requests without ``stream_options`` ask for usage, and the extra usage-only chunk is
recorded but not passed on to the caller.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping
from operator import attrgetter
from typing import Any, ClassVar, Final

from .._registry import min_version
from ._llm import (
    Api,
    Call,
    async_wrapper,
    clean_params,
    dump,
    given,
    helper_close_wrapper,
    skipping,
    sync_wrapper,
)
from ._patch import Library, Target, loaded
from ._stream import StreamRecorder

__all__ = ["LIBRARY", "set_include_stream_usage"]

_CHAT: Final = "openai.resources.chat.completions.completions"
_CHAT_PACKAGE: Final = "openai.resources.chat.completions"
_RESPONSES: Final = "openai.resources.responses.responses"
_BETA_RESPONSES: Final = "openai.resources.beta.responses.responses"
_EMBEDDINGS: Final = "openai.resources.embeddings"
_COMPLETIONS: Final = "openai.resources.completions"
_CHAT_HELPER: Final = "openai.lib.streaming.chat._completions"
_RESPONSES_HELPER: Final = "openai.lib.streaming.responses._responses"


def set_include_stream_usage(enabled: bool) -> None:
    """Ask streamed chat/completions requests for their token usage (off by default, see module doc)."""
    LIBRARY.options["include_stream_usage"] = bool(enabled)


# -- provider --------------------------------------------------------------------------------------

_KNOWN_HOSTS: Final = (
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure"),
    ("azure", "azure"),
    ("openrouter.ai", "openrouter"),
    ("api.groq.com", "groq"),
    ("api.together", "together"),
    ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral"),
    ("api.x.ai", "xai"),
    ("api.fireworks.ai", "fireworks"),
    ("generativelanguage.googleapis.com", "google"),
    ("api.perplexity.ai", "perplexity"),
    ("bedrock", "bedrock"),
)

# OpenAI-compatible servers run on this machine, by their default port; any other loopback server is "local".
_LOCAL_PORTS: Final = {11434: "ollama", 8000: "vllm", 1234: "lmstudio"}
_LOOPBACK_NAMES: Final = frozenset({"localhost", "::1", "[::1]", "0.0.0.0", "ip6-localhost"})


def _local_provider(host: str, port: Any) -> str | None:
    """ "ollama" / "vllm" / "lmstudio" / "local" for a server on this machine, else None."""
    if host in _LOOPBACK_NAMES or host.startswith("127.") or host.endswith(".localhost"):
        return _LOCAL_PORTS.get(port, "local") if isinstance(port, int) else "local"
    return None


# Per client: (provider, base URL) by id, and the weak reference whose callback drops the entry
# when the client goes (before its id can be reused). A plain dict lookup: this runs for every call.
_providers: dict[int, tuple[tuple[str, str | None], weakref.ref[Any]]] = {}


def _provider(instance: Any) -> tuple[str, str | None]:
    """(provider: "openai", "azure", "ollama"…, base URL unless api.openai.com) of a resource's client."""
    client = getattr(instance, "_client", None)
    cached = _providers.get(id(client))
    if cached is not None:
        return cached[0]
    name = "openai"
    base = getattr(client, "base_url", None)
    url = str(base).rstrip("/") if base is not None else None
    host = str(getattr(base, "host", "") or "")
    if "Azure" in type(client).__name__:
        name = "azure"
    else:
        local = _local_provider(host.lower(), getattr(base, "port", None))
        if local is not None:
            name = local
        else:
            for needle, provider in _KNOWN_HOSTS:
                if needle in host:
                    name = provider
                    break
    found = (name, None if host == "api.openai.com" else url)
    key = id(client)
    with contextlib.suppress(TypeError):  # not weak-referenceable: just do not cache
        _providers[key] = (found, weakref.ref(client, lambda _gone: _providers.pop(key, None)))
    return found


def _config(instance: Any, kwargs: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    provider, base_url = _provider(instance)
    config = clean_params(kwargs, skip, {"provider": provider, "model": kwargs.get("model")})
    if base_url is not None:
        config["base_url"] = base_url
    return config


# -- requests --------------------------------------------------------------------------------------

# Arguments saved with the call (see _llm.save_request): one-shot iterators and lists callers change.
_CHAT_SAVED: Final = ("messages", "tools", "functions")
_RESPONSES_SAVED: Final = ("input", "tools")
_EMBEDDINGS_SAVED: Final = ("input",)
_COMPLETIONS_SAVED: Final = ("prompt",)

_CHAT_SKIP: Final = skipping("messages")
_RESPONSES_SKIP: Final = skipping("input", "instructions")
_EMBEDDINGS_SKIP: Final = skipping("input")
_COMPLETIONS_SKIP: Final = skipping("prompt")


def _chat_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = _config(instance, kwargs, _CHAT_SKIP)
    messages = kwargs.get("messages")
    return config, {"chat_history": list(messages)} if messages is not None and given(messages) else None


def _responses_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = _config(instance, kwargs, _RESPONSES_SKIP)
    history: list[Any] = []
    instructions = kwargs.get("instructions")
    if given(instructions):
        history.append({"role": "system", "content": instructions})
    value = kwargs.get("input")
    if isinstance(value, str):
        history.append({"role": "user", "content": value})
    elif value is not None and given(value):
        history.extend(value)
    return config, {"chat_history": history}


def _embeddings_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = _config(instance, kwargs, _EMBEDDINGS_SKIP)
    value = kwargs.get("input")
    return config, {"input": value} if given(value) else None


def _completions_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = _config(instance, kwargs, _COMPLETIONS_SKIP)
    value = kwargs.get("prompt")
    return config, {"prompt": value} if given(value) else None


def _is_usage_chunk(chunk: Any) -> bool:
    return not chunk.choices and chunk.usage is not None


def _prepare_stream_usage(kwargs: dict[str, Any]) -> Any:
    """With include_stream_usage on: ask a streamed request for its usage; returns the hide predicate."""
    if not LIBRARY.options.get("include_stream_usage", False) or kwargs.get("stream") is not True:
        return None
    current = kwargs.get("stream_options")
    if not given(current):
        kwargs["stream_options"] = {"include_usage": True}
        return _is_usage_chunk
    if isinstance(current, Mapping) and "include_usage" not in current:
        kwargs["stream_options"] = {**current, "include_usage": True}
        return _is_usage_chunk
    return None  # the caller decided: leave the request and the chunks alone


# -- responses -------------------------------------------------------------------------------------


def _tool_call(call: Any) -> Any:
    function = getattr(call, "function", None)
    if function is None:  # custom tools and future kinds
        return dump(call)
    return {
        "id": call.id,
        "type": getattr(call, "type", "function"),
        "function": {"name": function.name, "arguments": function.arguments},
    }


def _chat_choice(choice: Any) -> dict[str, Any]:
    message = choice.message
    output: dict[str, Any] = {"role": message.role, "content": message.content}
    tool_calls = message.__dict__.get("tool_calls")  # no such field before openai 1.1
    if tool_calls:
        output["tool_calls"] = [_tool_call(call) for call in tool_calls]
    refusal = getattr(message, "refusal", None)
    if refusal:
        output["refusal"] = refusal
    function_call = getattr(message, "function_call", None)
    if function_call is not None:
        output["function_call"] = {"name": function_call.name, "arguments": function_call.arguments}
    output["finish_reason"] = choice.finish_reason
    return output


# (field, metadata key) of a response, chunk or event.
_RESPONSE_FIELDS: Final = (
    ("id", "response_id"),
    ("model", "response_model"),
    ("system_fingerprint", "system_fingerprint"),
    ("service_tier", "service_tier"),
)


def _response_metadata(response: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    # Read from the model's __dict__, where the SDK's models keep their fields (and the
    # _request_id it sets): pydantic's attribute access costs several times more.
    fields = getattr(response, "__dict__", None)
    if isinstance(fields, dict):
        for name, key in _RESPONSE_FIELDS:
            value = fields.get(name)
            if value is not None:
                metadata[key] = value
        request_id = fields.get("_request_id")
        if request_id:
            metadata["request_id"] = request_id
    return metadata


def _chat_usage(usage: Any, metadata: dict[str, Any]) -> None:
    """prompt/completion/total tokens (+ cached and reasoning tokens) of chat, completions, embeddings."""
    _usage(
        usage, metadata, ("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")
    )


def _responses_usage(usage: Any, metadata: dict[str, Any]) -> None:
    _usage(usage, metadata, ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"))


def _usage(usage: Any, metadata: dict[str, Any], names: tuple[str, str, str, str]) -> None:
    """Token counts under HoneyHive's names, whichever names this API's usage object uses."""
    if usage is None:
        return
    prompt, completion, prompt_details, completion_details = names
    counts = usage.__dict__  # the model's fields (see _response_metadata)
    metadata["prompt_tokens"] = counts.get(prompt)
    completed = counts.get(completion)
    if completed is not None:
        metadata["completion_tokens"] = completed
    metadata["total_tokens"] = counts.get("total_tokens")
    # Releases before the details were declared (openai < 1.4x) keep them as pydantic extras (dicts).
    extra = usage.__pydantic_extra__ if prompt_details not in counts else None
    cached = _detail(counts.get(prompt_details) or (extra and extra.get(prompt_details)), "cached_tokens")
    if cached is not None:
        metadata["cached_tokens"] = cached
    reasoning = _detail(counts.get(completion_details) or (extra and extra.get(completion_details)), "reasoning_tokens")
    if reasoning is not None:
        metadata["reasoning_tokens"] = reasoning


def _detail(details: Any, name: str) -> Any:
    if details is None:
        return None
    if isinstance(details, dict):
        return details.get(name)
    return details.__dict__.get(name)


def _chat_result(completion: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    choices = completion.choices
    outputs = _chat_choice(choices[0]) if choices else None
    if outputs is not None and len(choices) > 1:
        outputs["choices"] = [_chat_choice(choice) for choice in choices]
    metadata = _response_metadata(completion, {})
    _chat_usage(completion.usage, metadata)
    return outputs, metadata


def _responses_outputs(output: Any, text: list[str]) -> dict[str, Any]:
    """Outputs of a Responses ``output`` item list (message text, function and tool calls, reasoning)."""
    tool_calls: list[Any] = []
    reasoning: list[str] = []
    refusal: list[str] = []
    for item in output or ():
        kind = getattr(item, "type", None)
        if kind == "message":
            for part in item.content:
                part_type = getattr(part, "type", None)
                if part_type == "output_text":
                    text.append(part.text)
                elif part_type == "refusal":
                    refusal.append(part.refusal)
        elif kind == "function_call":
            tool_calls.append(
                {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
            )
        elif kind == "reasoning":
            reasoning.extend(summary.text for summary in getattr(item, "summary", None) or ())
        elif kind is not None:
            tool_calls.append({"id": getattr(item, "id", None), "type": kind})
    outputs: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if tool_calls:
        outputs["tool_calls"] = tool_calls
    if refusal:
        outputs["refusal"] = "".join(refusal)
    if reasoning:
        outputs["reasoning"] = "\n".join(reasoning)
    return outputs


def _responses_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    outputs = _responses_outputs(response.output, [])
    incomplete = getattr(response, "incomplete_details", None)
    reason = getattr(incomplete, "reason", None) if incomplete is not None else None
    outputs["finish_reason"] = reason or getattr(response, "status", None)
    metadata = _response_metadata(response, {})
    _responses_usage(getattr(response, "usage", None), metadata)
    error = getattr(response, "error", None)
    if error is not None:
        metadata["response_error"] = dump(error)
    return outputs, metadata


def _embeddings_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    data = response.data
    outputs: dict[str, Any] = {"embeddings": len(data)}
    if data:
        vector = data[0].embedding
        if isinstance(vector, list):
            outputs["dimensions"] = len(vector)
    metadata = _response_metadata(response, {})
    _chat_usage(response.usage, metadata)
    return outputs, metadata


def _completions_result(completion: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    choices = completion.choices
    outputs = {"text": choices[0].text, "finish_reason": choices[0].finish_reason} if choices else None
    if outputs is not None and len(choices) > 1:
        outputs["choices"] = [{"text": c.text, "finish_reason": c.finish_reason} for c in choices]
    metadata = _response_metadata(completion, {})
    _chat_usage(completion.usage, metadata)
    return outputs, metadata


# -- stream recorders -------------------------------------------------------------------------------


class _Choice:
    __slots__ = ("finish_reason", "function_call", "refusal", "role", "text", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    def output(self) -> dict[str, Any]:
        output: dict[str, Any] = {"role": self.role, "content": "".join(self.text) if self.text else None}
        if self.tool_calls:
            output["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": call["type"],
                    "function": {"name": call["function"]["name"], "arguments": "".join(call["function"]["parts"])},
                }
                for call in (self.tool_calls[index] for index in sorted(self.tool_calls))
            ]
        if self.refusal:
            output["refusal"] = "".join(self.refusal)
        if self.function_call is not None:
            output["function_call"] = {
                "name": self.function_call["name"],
                "arguments": "".join(self.function_call["parts"]),
            }
        output["finish_reason"] = self.finish_reason
        return output


class ChatStream(StreamRecorder):
    """Records ``ChatCompletionChunk``s (content, tool-call fragments, finish reason, usage)."""

    __slots__ = ("choices", "head", "usage")

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.choices: dict[int, _Choice] = {}
        self.head: Any = None  # the first chunk: id, model, fingerprint
        self.usage: Any = None

    # A model's fields as a dict. The SDK's models keep theirs in __dict__: one lookup there is
    # several times cheaper than pydantic's attribute access, and this runs for every chunk. litellm's
    # chunks, the same shape, keep some elsewhere (litellm.ChunkStream).
    FIELDS: ClassVar[Any] = attrgetter("__dict__")  # not a descriptor: no self passed

    def take(self, chunk: Any) -> bool:
        fields_of = self.FIELDS
        fields = fields_of(chunk)
        if self.head is None:
            self.head = chunk
        usage = fields.get("usage")
        if usage is not None:
            self.usage = usage
        output = False
        for choice in fields.get("choices") or ():
            choice_fields = fields_of(choice)
            index = choice_fields.get("index") or 0
            state = self.choices.get(index)
            if state is None:
                state = self.choices[index] = _Choice()
            delta = choice_fields.get("delta")
            if delta is not None:
                delta_fields = fields_of(delta)
                content = delta_fields.get("content")
                if content:
                    state.text.append(content)
                    output = True
                calls = delta_fields.get("tool_calls")
                if calls:
                    self._tool_calls(state, calls)
                    output = True
                role = delta_fields.get("role")
                if role:
                    state.role = role
                refusal = delta_fields.get("refusal")
                if refusal:
                    state.refusal.append(refusal)
                    output = True
                function_call = delta_fields.get("function_call")
                if function_call is not None:
                    self._function_call(state, function_call)
                    output = True
            finish_reason = choice_fields.get("finish_reason")
            if finish_reason:
                state.finish_reason = finish_reason
        return output

    @staticmethod
    def _tool_calls(state: _Choice, calls: Any) -> None:
        for fragment in calls:
            call = state.tool_calls.get(fragment.index)
            if call is None:
                call = state.tool_calls[fragment.index] = {
                    "id": fragment.id,
                    "type": fragment.type or "function",
                    "function": {"name": None, "parts": []},
                }
            elif fragment.id:
                call["id"] = fragment.id
            function = fragment.function
            if function is not None:
                if function.name:
                    call["function"]["name"] = function.name
                if function.arguments:
                    call["function"]["parts"].append(function.arguments)

    @staticmethod
    def _function_call(state: _Choice, fragment: Any) -> None:
        if state.function_call is None:
            state.function_call = {"name": None, "parts": []}
        if fragment.name:
            state.function_call["name"] = fragment.name
        if fragment.arguments:
            state.function_call["parts"].append(fragment.arguments)

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        outputs: dict[str, Any] | None = None
        choices = self.choices
        if len(choices) == 1:
            outputs = next(iter(choices.values())).output()
        elif choices:
            ordered = [choices[index].output() for index in sorted(choices)]
            outputs = {**ordered[0], "choices": ordered}
        metadata = _response_metadata(self.head, {}) if self.head is not None else {}
        _chat_usage(self.usage, metadata)
        return outputs, metadata


class CompletionStream(StreamRecorder):
    """Records legacy ``Completion`` chunks."""

    __slots__ = ("head", "reasons", "texts", "usage")

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.texts: dict[int, list[str]] = {}
        self.reasons: dict[int, str | None] = {}
        self.head: Any = None
        self.usage: Any = None

    def take(self, chunk: Any) -> bool:
        if self.head is None:
            self.head = chunk
        if chunk.usage is not None:
            self.usage = chunk.usage
        output = False
        for choice in chunk.choices:
            if choice.text:
                self.texts.setdefault(choice.index, []).append(choice.text)
                output = True
            else:
                self.texts.setdefault(choice.index, [])
            if choice.finish_reason:
                self.reasons[choice.index] = choice.finish_reason
        return output

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        outputs: dict[str, Any] | None = None
        if self.texts:
            ordered = [
                {"text": "".join(self.texts[i]), "finish_reason": self.reasons.get(i)} for i in sorted(self.texts)
            ]
            outputs = dict(ordered[0])
            if len(ordered) > 1:
                outputs["choices"] = ordered
        metadata = _response_metadata(self.head, {}) if self.head is not None else {}
        _chat_usage(self.usage, metadata)
        return outputs, metadata


_FINAL_RESPONSE_EVENTS: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesStream(StreamRecorder):
    """Records Responses API stream events: the final response, or the text and items so far."""

    __slots__ = ("items", "response", "started", "text")

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.text: list[str] = []
        self.items: list[Any] = []
        self.response: Any = None  # from response.completed / incomplete / failed
        self.started: Any = None  # from response.created

    def take(self, event: Any) -> bool:
        kind = event.type
        if kind == "response.output_text.delta":
            self.text.append(event.delta)
            return True
        if kind == "response.function_call_arguments.delta" or kind == "response.refusal.delta":
            return True
        if kind == "response.output_item.done":
            self.items.append(event.item)
        elif kind in _FINAL_RESPONSE_EVENTS:
            self.response = event.response
        elif kind == "response.created":
            self.started = event.response
        return False

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        if self.response is not None:
            return _responses_result(self.response)
        # Ended before the final event: what arrived so far (text not yet in a finished item included).
        outputs = _responses_outputs([item for item in self.items if getattr(item, "type", None) != "message"], [])
        outputs["content"] = "".join(self.text) if self.text else None
        metadata = _response_metadata(self.started, {}) if self.started is not None else {}
        return outputs, metadata


# -- targets -----------------------------------------------------------------------------------------

_stream_types: tuple[type, ...] = ()


def _streams() -> tuple[type, ...]:
    global _stream_types
    if not _stream_types:
        module = loaded("openai._streaming")
        if module is not None:
            _stream_types = (module.Stream, module.AsyncStream)
    return _stream_types


def _targets() -> tuple[Target, ...]:
    def api(name: str, request: Any, result: Any, recorder: Any, **extra: Any) -> Api:
        return Api(name, LIBRARY, request, result, recorder, _streams, **extra)

    chat_create = api(
        "openai.chat.completions.create",
        _chat_request,
        _chat_result,
        ChatStream,
        prepare=_prepare_stream_usage,
        helpers={"chat.completions.stream": "openai.chat.completions.stream"},
        saved=_CHAT_SAVED,
    )
    chat_parse = api("openai.chat.completions.parse", _chat_request, _chat_result, ChatStream, saved=_CHAT_SAVED)
    responses = (_responses_request, _responses_result, ResponsesStream)
    responses_create = api("openai.responses.create", *responses, saved=_RESPONSES_SAVED)
    responses_parse = api("openai.responses.parse", *responses, saved=_RESPONSES_SAVED)
    beta_responses = api("openai.beta.responses.create", *responses, saved=_RESPONSES_SAVED)
    embeddings = api(
        "openai.embeddings.create", _embeddings_request, _embeddings_result, ChatStream, saved=_EMBEDDINGS_SAVED
    )
    completions = api(
        "openai.completions.create",
        _completions_request,
        _completions_result,
        CompletionStream,
        prepare=_prepare_stream_usage,
        saved=_COMPLETIONS_SAVED,
    )
    return (
        Target(_CHAT, "Completions.create", sync_wrapper(chat_create)),
        Target(_CHAT, "AsyncCompletions.create", async_wrapper(chat_create)),
        Target(_CHAT, "Completions.parse", sync_wrapper(chat_parse)),
        Target(_CHAT, "AsyncCompletions.parse", async_wrapper(chat_parse)),
        Target(_RESPONSES, "Responses.create", sync_wrapper(responses_create)),
        Target(_RESPONSES, "AsyncResponses.create", async_wrapper(responses_create)),
        Target(_RESPONSES, "Responses.parse", sync_wrapper(responses_parse), optional=True),
        Target(_RESPONSES, "AsyncResponses.parse", async_wrapper(responses_parse), optional=True),
        Target(_BETA_RESPONSES, "Responses.create", sync_wrapper(beta_responses), optional=True),
        Target(_BETA_RESPONSES, "AsyncResponses.create", async_wrapper(beta_responses), optional=True),
        Target(_EMBEDDINGS, "Embeddings.create", sync_wrapper(embeddings)),
        Target(_EMBEDDINGS, "AsyncEmbeddings.create", async_wrapper(embeddings)),
        Target(_COMPLETIONS, "Completions.create", sync_wrapper(completions)),
        Target(_COMPLETIONS, "AsyncCompletions.create", async_wrapper(completions)),
        # Older 1.x layouts define the chat classes in the package module itself (a re-export in
        # newer ones: the class already carries our wrapper then, and is left alone).
        Target(_CHAT_PACKAGE, "Completions.create", sync_wrapper(chat_create), optional=True),
        Target(_CHAT_PACKAGE, "AsyncCompletions.create", async_wrapper(chat_create), optional=True),
        Target(_CHAT_HELPER, "ChatCompletionStream.close", helper_close_wrapper(False), optional=True),
        Target(_CHAT_HELPER, "AsyncChatCompletionStream.close", helper_close_wrapper(True), optional=True),
        Target(_RESPONSES_HELPER, "ResponseStream.close", helper_close_wrapper(False), optional=True),
        Target(_RESPONSES_HELPER, "AsyncResponseStream.close", helper_close_wrapper(True), optional=True),
    )


LIBRARY: Final = Library("openai", min_version("openai"), _targets)
