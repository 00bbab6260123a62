"""Amazon Bedrock Runtime through ``boto3`` (botocore): Converse and InvokeModel, streams included.

Every botocore client sends its operations through ``BaseClient._make_api_call(operation_name,
api_params)``: that one method is wrapped (clients created before or after ``tracer.init()`` alike,
boto3 itself untouched), and a call is recorded when the client's service is ``bedrock-runtime``
and the operation one of ``Converse``, ``ConverseStream``, ``InvokeModel`` and
``InvokeModelWithResponseStream``. Every other AWS call goes straight through after a dictionary
lookup.

* ``converse`` / ``converse_stream``: Bedrock's own message format, whatever the model.
* ``invoke_model`` / ``invoke_model_with_response_stream``: the body is the model's own JSON,
  recognized by its fields (not by the model id, which may be an inference profile or an ARN):
  Anthropic Messages, Meta Llama, Amazon Titan text and embeddings, Amazon Nova, Mistral
  (completions and chat choices). Token counts fall back to the ``x-amzn-bedrock-*-token-count``
  headers and to the streams' ``amazon-bedrock-invocationMetrics``.

``invoke_model`` answers with a ``StreamingBody`` the caller reads: it is read here, as the call
ends, and handed back as an equal ``StreamingBody`` over those bytes (a read that fails is
recorded, and the body raises that same exception when the caller reads it). A stream
(``response["stream"]`` / ``response["body"]``, botocore's ``EventStream``) is replaced by a proxy
that records each event as the caller iterates and ends the model event when the stream ends, is
closed or is dropped.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from .._errors import report_internal_error
from .._registry import min_version
from ._llm import Call, Request, Result, begin, save_request
from ._patch import Library, Target, Wrapper, mark
from ._stream import StreamRecorder, traced_stream

__all__ = ["LIBRARY"]

_SERVICE: Final = "bedrock-runtime"
_REQUEST_ID: Final = "x-amzn-requestid"

# Request fields recorded elsewhere than in config (inputs) or not at all (transport details).
_CONVERSE_SKIP: Final = frozenset({"modelId", "messages", "system", "inferenceConfig"})
_INVOKE_SKIP: Final = frozenset({"modelId", "body", "contentType", "accept"})
# InvokeModel body fields that hold the inference parameters (Titan, Nova): recorded flattened.
_NESTED_PARAMS: Final = frozenset({"textGenerationConfig", "inferenceConfig"})
_PROMPTS: Final = ("prompt", "inputText")
_SAVED: Final = ("messages", "system")  # see _llm.save_request

# -- requests (shaped on the worker) -----------------------------------------------------------------------


def _text(content: Any) -> Any:
    """A content block list of text blocks only as its text; anything else as given."""
    if isinstance(content, str) or not isinstance(content, list):
        return content
    parts = []
    for block in content:
        if not isinstance(block, Mapping):
            return content
        text = block.get("text")
        if not isinstance(text, str) or (len(block) > 1 and block.get("type") != "text"):
            return content
        parts.append(text)
    return "".join(parts)


def _history(system: Any, messages: Any) -> list[Any]:
    history: list[Any] = []
    if system is not None:
        history.append({"role": "system", "content": _text(system)})
    for message in messages or ():
        if isinstance(message, Mapping) and "content" in message:
            history.append({**message, "content": _text(message["content"])})
        else:
            history.append(message)
    return history


def _converse_request(instance: Any, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config: dict[str, Any] = {"provider": "bedrock", "model": params.get("modelId")}
    inference = params.get("inferenceConfig")
    if isinstance(inference, Mapping):
        config.update(inference)
    for key, value in params.items():
        if key not in _CONVERSE_SKIP:
            config[key] = value
    return config, {"chat_history": _history(params.get("system"), params.get("messages"))}


def _json(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
    return None  # a file object: not ours to read


def _invoke_request(instance: Any, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config: dict[str, Any] = {"provider": "bedrock", "model": params.get("modelId")}
    for key, value in params.items():
        if key not in _INVOKE_SKIP:
            config[key] = value
    body = _json(params.get("body"))
    if not isinstance(body, dict):
        return config, None
    inputs: dict[str, Any] = {}
    if "messages" in body:
        inputs["chat_history"] = _history(body.get("system"), body["messages"])
    for key, value in body.items():
        if key in ("messages", "system"):
            continue
        if key in _PROMPTS:
            inputs["prompt"] = value
        elif key in _NESTED_PARAMS and isinstance(value, Mapping):
            config.update(value)
        else:
            config[key] = value
    return config, inputs


# -- what a model answered -------------------------------------------------------------------------------


class _Answer:
    """What a Bedrock answer holds, whatever its format: filled from whole responses or stream events."""

    __slots__ = (
        "blocks",
        "cache_read",
        "cache_write",
        "count",
        "embedding",
        "finish_reason",
        "input_tokens",
        "latency_ms",
        "output_tokens",
        "response_id",
        "response_model",
        "role",
        "total_tokens",
    )

    def __init__(self) -> None:
        self.role = "assistant"
        # Content blocks by index: [kind ("text", "tool", "reasoning"), tool id, tool name, parts].
        self.blocks: dict[int, list[Any]] = {}
        self.finish_reason: Any = None
        self.input_tokens: Any = None
        self.output_tokens: Any = None
        self.total_tokens: Any = None
        self.cache_read: Any = None
        self.cache_write: Any = None
        self.response_id: Any = None
        self.response_model: Any = None
        self.latency_ms: Any = None
        self.embedding: Any = None
        self.count = 0  # texts added, for chunks without a block index

    def block(self, index: Any, kind: str = "text") -> list[Any]:
        if not isinstance(index, int):
            index = 0
        block = self.blocks.get(index)
        if block is None:
            block = self.blocks[index] = [kind, None, None, []]
        return block

    def add_text(self, text: Any, index: Any = 0) -> bool:
        if isinstance(text, str) and text:
            self.block(index)[3].append(text)
            return True
        return False

    def add_tool(self, index: Any, tool_id: Any, name: Any, arguments: Any) -> None:
        block = self.block(index, "tool")
        block[0], block[1], block[2] = "tool", tool_id, name
        if arguments is not None:
            block[3].append(arguments if isinstance(arguments, str) else _dumps(arguments))

    # -- Converse (and Nova, whose InvokeModel format is the same) ----------------------------------------

    def converse(self, response: Mapping[str, Any]) -> None:
        message = (response.get("output") or {}).get("message") or {}
        self.role = message.get("role") or self.role
        for index, block in enumerate(message.get("content") or ()):
            self.converse_block(index, block)
        self.finish_reason = response.get("stopReason")
        self.converse_usage(response.get("usage"))
        metrics = response.get("metrics")
        if isinstance(metrics, Mapping):
            self.latency_ms = metrics.get("latencyMs")

    def converse_block(self, index: int, block: Mapping[str, Any]) -> None:
        if "text" in block:
            self.add_text(block["text"], index)
        elif "toolUse" in block:
            tool = block["toolUse"]
            self.add_tool(index, tool.get("toolUseId"), tool.get("name"), tool.get("input"))
        elif "reasoningContent" in block:
            text = ((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text")
            if isinstance(text, str):
                self.block(index, "reasoning")[3].append(text)

    def converse_usage(self, usage: Any) -> None:
        if not isinstance(usage, Mapping):
            return
        self.input_tokens = usage.get("inputTokens", self.input_tokens)
        self.output_tokens = usage.get("outputTokens", self.output_tokens)
        self.total_tokens = usage.get("totalTokens", self.total_tokens)
        # Converse names them …InputTokens, Nova's own format …InputTokenCount.
        self.cache_read = usage.get("cacheReadInputTokens", usage.get("cacheReadInputTokenCount", self.cache_read))
        self.cache_write = usage.get("cacheWriteInputTokens", usage.get("cacheWriteInputTokenCount", self.cache_write))

    def converse_event(self, event: Mapping[str, Any]) -> bool:
        """One ConverseStream event (or a Nova InvokeModel stream chunk); True if it carries output."""
        delta = event.get("contentBlockDelta")
        if delta is not None:
            index, change = delta.get("contentBlockIndex"), delta.get("delta") or {}
            if "text" in change:
                return self.add_text(change["text"], index)
            if "toolUse" in change:
                self.block(index, "tool")[3].append((change["toolUse"] or {}).get("input") or "")
                return True
            if "reasoningContent" in change:
                text = (change["reasoningContent"] or {}).get("text")
                if isinstance(text, str) and text:
                    self.block(index, "reasoning")[3].append(text)
                    return True
            return False
        start = event.get("contentBlockStart")
        if start is not None:
            tool = (start.get("start") or {}).get("toolUse")
            if isinstance(tool, Mapping):
                self.add_tool(start.get("contentBlockIndex"), tool.get("toolUseId"), tool.get("name"), None)
        elif "messageStart" in event:
            self.role = (event["messageStart"] or {}).get("role") or self.role
        elif "messageStop" in event:
            self.finish_reason = (event["messageStop"] or {}).get("stopReason")
        elif "metadata" in event:
            metadata = event["metadata"] or {}
            self.converse_usage(metadata.get("usage"))
            metrics = metadata.get("metrics")
            if isinstance(metrics, Mapping):
                self.latency_ms = metrics.get("latencyMs", self.latency_ms)
        return False

    # -- InvokeModel bodies -----------------------------------------------------------------------------

    def invoke(self, body: Mapping[str, Any]) -> None:
        """A whole InvokeModel response body, in its model's format."""
        if body.get("type") == "message":  # Anthropic Messages
            self.anthropic_message(body)
        elif "output" in body:  # Amazon Nova
            self.converse(body)
        elif "generation" in body:  # Meta Llama
            self.add_text(body["generation"])
            self.finish_reason = body.get("stop_reason")
            self.input_tokens = body.get("prompt_token_count")
            self.output_tokens = body.get("generation_token_count")
        elif "results" in body:  # Amazon Titan text
            results = body.get("results") or [{}]
            self.add_text(results[0].get("outputText"))
            self.finish_reason = results[0].get("completionReason")
            self.input_tokens = body.get("inputTextTokenCount")
            self.output_tokens = results[0].get("tokenCount")
        elif "embedding" in body:  # Amazon Titan embeddings
            self.embedding = body["embedding"]
            self.input_tokens = body.get("inputTextTokenCount")
        elif "outputs" in body or "choices" in body:  # Mistral
            self.mistral(body)
        elif "generations" in body:  # Cohere Command
            generations = body.get("generations") or [{}]
            self.add_text(generations[0].get("text"))
            self.finish_reason = generations[0].get("finish_reason")
        elif "text" in body:  # Cohere Command R
            self.add_text(body.get("text"))
            self.finish_reason = body.get("finish_reason")

    def anthropic_message(self, body: Mapping[str, Any]) -> None:
        self.role = body.get("role") or self.role
        self.response_id = body.get("id")
        self.response_model = body.get("model")
        for index, block in enumerate(body.get("content") or ()):
            kind = block.get("type")
            if kind == "text":
                self.add_text(block.get("text"), index)
            elif kind == "tool_use":
                self.add_tool(index, block.get("id"), block.get("name"), block.get("input"))
            elif kind == "thinking":
                self.block(index, "reasoning")[3].append(block.get("thinking") or "")
        self.finish_reason = body.get("stop_reason")
        self.anthropic_usage(body.get("usage"))

    def anthropic_usage(self, usage: Any) -> None:
        """Anthropic's usage; in streams the counts are cumulative: each one given replaces the last."""
        if not isinstance(usage, Mapping):
            return
        self.input_tokens = usage.get("input_tokens", self.input_tokens)
        self.output_tokens = usage.get("output_tokens", self.output_tokens)
        self.cache_read = usage.get("cache_read_input_tokens", self.cache_read)
        self.cache_write = usage.get("cache_creation_input_tokens", self.cache_write)

    def mistral(self, body: Mapping[str, Any]) -> bool:
        output = False
        for item in body.get("outputs") or ():
            output = self.add_text(item.get("text")) or output
            self.finish_reason = item.get("stop_reason") or self.finish_reason
        for choice in body.get("choices") or ():
            message = choice.get("message") or choice.get("delta") or {}
            output = self.add_text(message.get("content")) or output
            for position, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function") or {}
                self.add_tool(1 + position, call.get("id"), function.get("name"), function.get("arguments"))
            self.finish_reason = choice.get("stop_reason") or choice.get("finish_reason") or self.finish_reason
        self.response_id = body.get("id", self.response_id)
        usage = body.get("usage")
        if isinstance(usage, Mapping):
            self.input_tokens = usage.get("prompt_tokens", self.input_tokens)
            self.output_tokens = usage.get("completion_tokens", self.output_tokens)
        return output

    def invoke_chunk(self, chunk: Mapping[str, Any]) -> bool:
        """One streamed InvokeModel chunk, in its model's format; True if it carries output."""
        output = False
        kind = chunk.get("type")
        if kind is not None:  # Anthropic Messages stream events
            output = self.anthropic_event(kind, chunk)
        elif "generation" in chunk:  # Meta Llama
            output = self.add_text(chunk["generation"])
            self.finish_reason = chunk.get("stop_reason") or self.finish_reason
            self.input_tokens = chunk.get("prompt_token_count") or self.input_tokens
            self.output_tokens = chunk.get("generation_token_count") or self.output_tokens
        elif "outputText" in chunk:  # Amazon Titan
            output = self.add_text(chunk["outputText"])
            self.finish_reason = chunk.get("completionReason") or self.finish_reason
            self.input_tokens = chunk.get("inputTextTokenCount") or self.input_tokens
            self.output_tokens = chunk.get("totalOutputTextTokenCount") or self.output_tokens
        elif "outputs" in chunk or "choices" in chunk:  # Mistral
            output = self.mistral(chunk)
        else:  # Amazon Nova: the ConverseStream events
            output = self.converse_event(chunk)
        metrics = chunk.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, Mapping):  # the last chunk: Bedrock's own count, for every model
            if self.input_tokens is None:
                self.input_tokens = metrics.get("inputTokenCount")
            if self.output_tokens is None:
                self.output_tokens = metrics.get("outputTokenCount")
            self.latency_ms = metrics.get("invocationLatency", self.latency_ms)
        return output

    def anthropic_event(self, kind: str, event: Mapping[str, Any]) -> bool:
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                return self.add_text(delta.get("text"), event.get("index"))
            if delta_type == "input_json_delta":
                self.block(event.get("index"), "tool")[3].append(delta.get("partial_json") or "")
                return True
            if delta_type == "thinking_delta":
                self.block(event.get("index"), "reasoning")[3].append(delta.get("thinking") or "")
                return True
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.add_tool(event.get("index"), block.get("id"), block.get("name"), None)
            elif block.get("type") == "text":
                self.add_text(block.get("text"), event.get("index"))
        elif kind == "message_start":
            message = event.get("message") or {}
            self.response_id = message.get("id")
            self.response_model = message.get("model")
            self.role = message.get("role") or self.role
            self.anthropic_usage(message.get("usage"))
        elif kind == "message_delta":
            self.finish_reason = (event.get("delta") or {}).get("stop_reason")
            self.anthropic_usage(event.get("usage"))
        return False

    # -- the event's fields -------------------------------------------------------------------------------

    def outputs(self) -> dict[str, Any] | None:
        if self.embedding is not None:
            vector = self.embedding
            return {"embeddings": 1, "dimensions": len(vector) if isinstance(vector, list) else None}
        text: list[str] = []
        reasoning: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for index in sorted(self.blocks):
            kind, tool_id, name, parts = self.blocks[index]
            if kind == "text":
                text.extend(parts)
            elif kind == "tool":
                function = {"name": name, "arguments": "".join(parts) or "{}"}
                tool_calls.append({"id": tool_id, "type": "function", "function": function})
            else:
                reasoning.extend(parts)
        if not self.blocks and self.finish_reason is None:
            return None
        outputs: dict[str, Any] = {"role": self.role, "content": "".join(text) if text else None}
        if tool_calls:
            outputs["tool_calls"] = tool_calls
        if reasoning:
            outputs["thinking"] = "".join(reasoning)
        outputs["finish_reason"] = self.finish_reason
        return outputs

    def metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Token counts the way the other integrations record them: prompt tokens include cache reads
        and writes (OpenTelemetry's convention), which Bedrock counts apart."""
        if self.input_tokens is not None or self.output_tokens is not None:
            read, write = self.cache_read or 0, self.cache_write or 0
            prompt = (self.input_tokens or 0) + read + write
            metadata["prompt_tokens"] = prompt
            metadata["completion_tokens"] = self.output_tokens or 0
            metadata["total_tokens"] = prompt + (self.output_tokens or 0)
            if self.cache_read is not None:
                metadata["cache_read_input_tokens"] = metadata["cached_tokens"] = self.cache_read
            if self.cache_write is not None:
                metadata["cache_creation_input_tokens"] = self.cache_write
        for key, value in (
            ("response_id", self.response_id),
            ("response_model", self.response_model),
            ("latency_ms", self.latency_ms),
        ):
            if value is not None:
                metadata[key] = value
        return metadata


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _response_metadata(response: Mapping[str, Any]) -> dict[str, Any]:
    details = response.get("ResponseMetadata")
    request_id = details.get("RequestId") if isinstance(details, Mapping) else None
    return {"request_id": request_id} if request_id else {}


def _converse_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    answer = _Answer()
    answer.converse(response)
    return answer.outputs(), answer.metadata(_response_metadata(response))


def _header_count(headers: Mapping[str, Any], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _invoke_result(saved: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the response dict, the body's bytes), as the wrapper saved them."""
    response, data = saved
    answer = _Answer()
    body = _json(data)
    if isinstance(body, dict):
        answer.invoke(body)
    details = response.get("ResponseMetadata") or {}
    headers = details.get("HTTPHeaders") or {}
    if answer.input_tokens is None:  # Bedrock's own counts, for every model (Mistral's body has none)
        answer.input_tokens = _header_count(headers, "x-amzn-bedrock-input-token-count")
    if answer.output_tokens is None and answer.embedding is None:
        answer.output_tokens = _header_count(headers, "x-amzn-bedrock-output-token-count")
    if answer.latency_ms is None:
        answer.latency_ms = _header_count(headers, "x-amzn-bedrock-invocation-latency")
    return answer.outputs(), answer.metadata(_response_metadata(response))


# -- streams ------------------------------------------------------------------------------------------------


class _Events(StreamRecorder):
    """A Bedrock event stream (botocore ``EventStream``); ``take`` reads one parsed event."""

    __slots__ = ("answer", "request_id")

    def __init__(self, call: Call, request_id: Any) -> None:
        super().__init__(call)
        self.answer = _Answer()
        self.request_id = request_id

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        metadata = {"request_id": self.request_id} if self.request_id else {}
        return self.answer.outputs(), self.answer.metadata(metadata)


class ConverseEvents(_Events):
    """``converse_stream``: events already parsed by botocore (``{"contentBlockDelta": {...}}``)."""

    __slots__ = ()

    def take(self, event: Any) -> bool:
        return self.answer.converse_event(event)


class InvokeEvents(_Events):
    """``invoke_model_with_response_stream``: ``{"chunk": {"bytes": b"<the model's JSON>"}}`` events."""

    __slots__ = ()

    def take(self, event: Any) -> bool:
        chunk = event.get("chunk")
        data = chunk.get("bytes") if chunk is not None else None
        decoded = _json(data) if data is not None else None
        return self.answer.invoke_chunk(decoded) if isinstance(decoded, dict) else False


# -- the wrapper ------------------------------------------------------------------------------------------

# operation -> (event name, request shaper, result shaper, where the stream is in the response, its recorder)
_Operation = tuple[str, Request, Result | None, str, Callable[[Call, Any], _Events] | None]
_OPERATIONS: Final[dict[str, _Operation]] = {
    "Converse": ("bedrock.converse", _converse_request, _converse_result, "", None),
    "ConverseStream": ("bedrock.converse_stream", _converse_request, None, "stream", ConverseEvents),
    "InvokeModel": ("bedrock.invoke_model", _invoke_request, _invoke_result, "body", None),
    "InvokeModelWithResponseStream": (
        "bedrock.invoke_model_with_response_stream",
        _invoke_request,
        None,
        "body",
        InvokeEvents,
    ),
}


def _service(client: Any) -> Any:
    try:
        return client.meta.service_model.service_name
    except AttributeError:
        return None


def _make_api_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not LIBRARY.active or len(args) != 2:
        return wrapped(*args, **kwargs)
    operation = _OPERATIONS.get(args[0])
    if operation is None or _service(instance) != _SERVICE:
        return wrapped(*args, **kwargs)
    name, request, result, key, recorder = operation
    call = begin(name)
    if call is None:
        return wrapped(*args, **kwargs)
    params = args[1]
    try:
        if isinstance(params, dict):
            call.request(request, instance, save_request(params, _SAVED))
    except Exception as exc:
        report_internal_error(f"recording the request of {name}", exc)
    previous = call.enter()
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.leave(previous)
        call.fail(exc)
        raise
    call.leave(previous)
    try:
        if recorder is not None:
            return _traced_stream(call, response, key, recorder)
        if key:
            return _read_body(call, response, key)
        assert result is not None
        call.respond(result, response)
    except Exception as exc:
        report_internal_error(f"recording the response of {name}", exc)
        call.finish(None, None)
    return response


def _traced_stream(call: Call, response: Any, key: str, make: Callable[[Call, Any], _Events]) -> Any:
    stream = response.get(key)
    if stream is None:
        call.finish(None, _response_metadata(response))
        return response
    events = make(call, _response_metadata(response).get("request_id"))
    events.start(None, "")
    response[key] = traced_stream(stream, events)
    return response


class _Unreadable(io.RawIOBase):
    """The body of a response whose reading failed in the wrapper: raises that error when read."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise self.error

    def readinto(self, buffer: Any) -> int:
        raise self.error


def _read_body(call: Call, response: Any, key: str) -> Any:
    """Read InvokeModel's body now and hand the caller an equal one over the same bytes."""
    body = response.get(key)
    if body is None:
        call.finish(None, _response_metadata(response))
        return response
    remake = type(body)  # botocore's StreamingBody(raw_stream, content_length)
    try:
        data = body.read()
    except Exception as exc:
        response[key] = remake(_Unreadable(exc), None)
        call.fail(exc, _response_metadata(response))
        return response
    response[key] = remake(io.BytesIO(data), len(data))
    call.respond(_invoke_result, (response, data))
    return response


def _targets() -> tuple[Target, ...]:
    wrapper: Wrapper = mark(_make_api_call)
    return (Target("botocore.client", "BaseClient._make_api_call", wrapper),)


LIBRARY: Final = Library("boto3", min_version("boto3"), _targets)
