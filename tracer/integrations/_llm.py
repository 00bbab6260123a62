"""Shared model-event shaping: open the event of one LLM call, fill it the HoneyHive way, end it.

One ``Call`` per client call. It is either our own ``model`` event (a child of the current span) or,
when the user's own ``@trace(event_type="model")`` span is current, that span, which is enriched
instead of getting a second model event nested under it.

Conventions (HoneyHive model events): ``config.provider`` / ``config.model`` / request parameters,
``inputs.chat_history``, ``outputs`` {role, content, tool_calls, finish_reason}, token counts and
response ids in ``metadata``, ``metrics.time_to_first_token_ms`` for streams.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from .. import _otel_bridge
from .._context import current_span_var, inside_call, suppressed
from .._default import get_default_tracer
from .._deferred import Deferred
from .._errors import report_internal_error
from .._otel_bridge import BridgedSpan, adopt_native_call
from .._span import Span, attach_deferred, is_ended, is_open_model_span, recorder_here
from .._tracer import recorder_of
from ._patch import Library, Wrapper, mark
from ._stream import (
    StreamRecorder,
    afinish_bare_stream,
    afinish_helper_stream,
    finish_bare_stream,
    finish_helper_stream,
    traced_async_stream,
    traced_manager,
    traced_stream,
)

__all__ = [
    "Api",
    "Call",
    "async_wrapper",
    "bare_stream_close_wrapper",
    "begin",
    "clean_params",
    "dispatch_wrapper",
    "error_metadata",
    "helper_close_wrapper",
    "manager_wrapper",
    "save_request",
    "skipping",
    "sync_wrapper",
]

_perf_ns = time.perf_counter_ns


# The "argument not given" markers of openai / anthropic (NotGiven, Omit), mistralai (Unset) and
# cohere (OMIT, which is ``...``).
_SENTINELS: Final = frozenset({"NotGiven", "Omit", "Unset", "ellipsis"})

_CONCRETE: Final = frozenset({list, tuple, dict, str})  # the usual argument types: no iterator check needed

# Request parameter values recorded as they are, without the sentinel and class checks.
_PLAIN: Final = frozenset({str, int, float, bool, list, dict, tuple})

# Charged against the queue's byte bound until an LLM event is shaped (Call.charged_size): per
# container or non-text leaf of the arguments; for the SDK's response objects (a 1,500-character reply
# measured 4.5-4.8 KB with tracemalloc, openai ChatCompletion and anthropic Message alike; a much
# longer reply is under-counted); per stream chunk not yet read (one parsed
# chunk, about ten small objects). Depth 5 reaches messages[i]["content"][j]["text"].
_LEAF_BYTES: Final = 64
_RESPONSE_BOUND: Final = 8192
_CHUNK_BOUND: Final = 2048
_SIZE_DEPTH: Final = 5

# Call arguments that are transport details, never request parameters.
TRANSPORT_ARGS: Final = frozenset({"extra_headers", "extra_query", "timeout"})


class Call(Deferred):
    """The event of one LLM call: our own span (``owned``) or the user's model span being enriched.

    For our own span the call's arguments and its response (or the stream's recorder) are only
    kept here: the call is its span's ``Deferred``, shaped into the event's fields by the worker
    thread, off the caller's path (``shape()``). The user's span is enriched at once, as its owner
    may read or end it any time.
    """

    __slots__ = (
        "capture",
        "done",
        "extra",
        "instance",
        "kwargs",
        "owned",
        "reason",
        "recorder",
        "request_shape",
        "response",
        "result_shape",
        "span",
        "start_ns",
    )

    def __init__(self, span: Span, owned: bool, capture: bool) -> None:
        self.span = span
        self.owned = owned
        self.capture = capture  # the tracer's capture_content: record inputs and outputs at all
        self.done = False
        self.start_ns = _perf_ns()
        # Set once owned (request()): what shape() reads. Deferred.eager is set as the span ends.
        self.request_shape: Request | None = None
        self.result_shape: Result | None = None
        self.recorder: StreamRecorder | None = None
        self.redirect = None  # see Deferred; set by the OpenTelemetry bridge (adopt_native_call)

    # -- request ------------------------------------------------------------------------------

    def request(
        self, shape_request: Request, instance: Any, kwargs: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> None:
        """Record the request: *kwargs* as saved by ``save_request``; *extra* goes into config."""
        if self.owned:
            self.request_shape = shape_request
            self.instance = instance
            self.kwargs = kwargs
            self.extra = extra
            attach_deferred(self.span, self)
            return
        config, inputs = shape_request(instance, kwargs)
        if extra:
            config.update(extra)
        self.span.update(config=config, inputs=inputs if self.capture else None)

    # -- the call runs with our span current ---------------------------------------------------

    def enter(self) -> Span | None:
        """Make the event current while the client method runs; returns what to restore."""
        previous = current_span_var.get()
        current_span_var.set(self.span)
        inside_call.set(True)
        return previous

    @staticmethod
    def leave(previous: Span | None) -> None:
        current_span_var.set(previous)
        inside_call.set(False)

    # -- outcome ------------------------------------------------------------------------------

    def respond(self, shape_result: Result, response: Any, metadata: dict[str, Any] | None = None) -> None:
        """The call returned *response* (not a stream); *metadata*: known now (raw HTTP details)."""
        if self.request_shape is not None and not self.done:
            self.result_shape = shape_result
            self.response = response
            self.finish(None, metadata)
            return
        outputs, shaped = shape_result(response)
        self.finish(outputs, {**shaped, **metadata} if metadata else shaped)

    def finish_stream(self, recorder: StreamRecorder, reason: str | None, error: BaseException | None) -> None:
        """A stream ended (see ``StreamRecorder.finish``)."""
        if self.request_shape is not None and not self.done:
            self.recorder = recorder
            self.reason = reason
            self.finish(None, None, None, error)
            return
        try:
            outputs, metadata, metrics = recorder.outcome(reason)
        except Exception as exc:
            report_internal_error("recording a stream", exc)
            outputs, metadata, metrics = None, {}, None
        self.finish(outputs, metadata, metrics, error)

    def finish(
        self,
        outputs: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
        metrics: dict[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Record the result and end our event (an enriched user span is left to its owner). Once only."""
        if self.done:
            return
        self.done = True
        try:
            span = self.span
            if outputs is not None and not self.capture:
                outputs = without_content(outputs)
            if error is not None:
                extra = error_metadata(error)
                metadata = {**metadata, **extra} if metadata else extra
            if self.owned and not is_ended(span):
                if outputs or metadata or metrics:  # none for a deferred call: the worker shapes them
                    span.update(outputs=outputs or None, metadata=metadata or None, metrics=metrics or None)
                if error is not None:
                    span.set_error(error)
                span.end()
            else:
                # The user's model span (open or already ended: then this becomes an update).
                span.update(outputs=outputs or None, metadata=metadata or None, metrics=metrics or None)
        except Exception as exc:
            report_internal_error("recording an LLM call", exc)

    def fail(self, error: BaseException, metadata: dict[str, Any] | None = None) -> None:
        self.finish(None, metadata, None, error)

    def charged_size(self) -> int:
        """What the queue's byte bound counts for this call until the worker shapes it: the saved
        arguments' text (the message history: usually the bulk), plus a bound for the SDK's response
        objects or the stream's recorded state and unread chunks."""
        size = _RESPONSE_BOUND
        kwargs = getattr(self, "kwargs", None)
        if kwargs:
            size += text_size(kwargs, _SIZE_DEPTH)
        recorder = self.recorder
        if recorder is not None and recorder.buffer:
            size += len(recorder.buffer) * _CHUNK_BOUND
        return size

    # -- on the worker thread -------------------------------------------------------------------

    def shape(self) -> dict[str, Mapping[str, Any] | None]:
        """The event's fields from the saved request and response (see ``_deferred``). Once only:
        what they were made of is let go."""
        fields: dict[str, Mapping[str, Any] | None] = {}
        request, self.request_shape = self.request_shape, None
        if request is not None:
            try:
                config, inputs = request(self.instance, self.kwargs)
                if self.extra:
                    config.update(self.extra)
                fields["config"] = config
                if self.capture:
                    fields["inputs"] = inputs
            except Exception as exc:
                report_internal_error("recording the request of an LLM call", exc)
        outputs: dict[str, Any] | None = None
        try:
            result, recorder = self.result_shape, self.recorder
            if result is not None:
                outputs, fields["metadata"] = result(self.response)
            elif recorder is not None:
                outputs, fields["metadata"], fields["metrics"] = recorder.outcome(self.reason)
        except Exception as exc:
            report_internal_error("recording the response of an LLM call", exc)
        self.result_shape = self.response = self.recorder = None  # the recorder refers back to this call
        if outputs is not None:
            fields["outputs"] = outputs if self.capture else without_content(outputs)
        return fields


def without_content(outputs: dict[str, Any]) -> dict[str, Any] | None:
    """What is kept of the outputs when content is not captured: the finish reason."""
    reason = outputs.get("finish_reason")
    return {"finish_reason": reason} if reason is not None else None


def text_size(value: Any, depth: int) -> int:
    """About how many bytes the strings in *value* (arguments, message lists) hold; other leaves
    count ``_LEAF_BYTES``. Cheap: a walk of the containers down to *depth*, no serialization.

    Runs on the calling thread as an LLM call's span ends: leaves are counted in the loop and only
    containers recurse (no generator per container). ``Call.charged_size`` of a two-message chat
    call, timed in place (median of 600 streams, thread CPU, the timer's own cost included) went
    from 5.2 to 3.4 µs after an openai stream and from 6.9 to 4.6 after a Mistral one (2026-12-07).
    """
    kind = type(value)
    if kind is str:
        return len(value)
    if depth <= 0:
        return _LEAF_BYTES
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return _LEAF_BYTES
    size = _LEAF_BYTES
    depth -= 1
    for item in items:
        kind = type(item)
        if kind is str:
            size += len(item)
        elif depth > 0 and (kind is dict or kind is list or kind is tuple):
            size += text_size(item, depth)
        else:
            size += _LEAF_BYTES
    return size


def save_request(kwargs: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The call's arguments as they are now, for the event (shaped later, see ``Call.shape``).

    Lists among *names* (the messages…) are copied: callers commonly append to theirs once the
    call returns. One-shot iterators (generators…) among them become lists, passed on to the
    client too: recording them later would find them consumed.
    """
    saved = dict(kwargs)
    for name in names:
        value = kwargs.get(name)
        if value is None:
            continue
        if type(value) is list:
            saved[name] = value.copy()
        elif type(value) not in _CONCRETE and isinstance(value, Iterator):
            kwargs[name] = saved[name] = list(value)  # our own list: nobody else changes it
    return saved


def begin(event_name: str) -> Call | None:
    """The event for an LLM call starting now, or None to call straight through.

    Straight through: inside the exporter's own traffic, inside another patched call, tracing
    disabled, or the session sampled out.
    """
    if suppressed.get() or inside_call.get():
        return None
    try:
        # The tracer that owns the current span (or session) records the call, nested under it;
        # the default tracer only when nothing is current.
        parent = current_span_var.get()
        if _otel_bridge.is_enabled():  # a framework's LLM span may stand for this call (see native_parent)
            parent = _otel_bridge.native_parent(parent)
        recorder = recorder_here(parent) or recorder_of(get_default_tracer())
        if recorder.disabled:
            return None
        if parent is not None and is_open_model_span(parent, recorder):
            return Call(parent, False, recorder.capture_content)
        span = recorder.start_under(parent, event_name, "model")
        if span is None:
            return None
        call = Call(span, True, recorder.capture_content)
        if type(parent) is BridgedSpan:  # inside an OpenTelemetry span: it may be this very call's
            adopt_native_call(parent, span, call)
        return call
    except Exception as exc:
        report_internal_error("starting an LLM event", exc)
        return None


def skipping(*names: str) -> frozenset[str]:
    """The call arguments ``clean_params`` leaves out: *names* (recorded elsewhere) and transport details."""
    return frozenset(names) | TRANSPORT_ARGS


def clean_params(kwargs: Mapping[str, Any], skip: frozenset[str], params: dict[str, Any]) -> dict[str, Any]:
    """Add the request parameters of a call to *params*: everything but *skip* (see ``skipping``) and sentinels."""
    for key, value in kwargs.items():
        if key in skip:
            continue
        if type(value) not in _PLAIN:
            if value is None or type(value).__name__ in _SENTINELS:
                continue
            if isinstance(value, type):
                value = schema_of(value)
        params[key] = value
    return params


def schema_of(cls: type) -> dict[str, Any]:
    """A class passed as a response format: its name and JSON schema (pydantic), not its repr."""
    described: dict[str, Any] = {"type": "json_schema", "name": cls.__name__}
    schema = getattr(cls, "model_json_schema", None)
    if callable(schema):
        with contextlib.suppress(Exception):  # a class pydantic cannot describe: the name is enough
            described["schema"] = schema()
    return described


def given(value: Any) -> bool:
    return value is not None and type(value).__name__ not in _SENTINELS


# The provider's error fields, by the name each provider gives them (Google's "status": its error type).
_ERROR_FIELDS: Final = (
    ("type", "error_type"),
    ("status", "error_type"),
    ("code", "error_code"),
    ("message", "error_message"),
)


def error_metadata(error: BaseException) -> dict[str, Any]:
    """Exception type, HTTP status, request id and the provider's own error type/code/message."""
    metadata: dict[str, Any] = {"exception": type(error).__name__}
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        status = getattr(error, "code", None)  # google-genai's APIError: the HTTP status
    if isinstance(status, int):
        metadata["status_code"] = status
    request_id = getattr(error, "request_id", None)
    if request_id is None:  # releases before the attribute (openai < 1.x…): the response's header
        headers = getattr(getattr(error, "response", None), "headers", None)
        if headers is not None:
            with contextlib.suppress(Exception):
                request_id = headers.get("x-request-id") or headers.get("request-id")
    if isinstance(request_id, str):
        metadata["request_id"] = request_id
    aws = getattr(error, "response", None)  # botocore's ClientError: the parsed error response
    if isinstance(aws, Mapping) and isinstance(aws.get("Error"), Mapping):
        _aws_error(aws, metadata)
        return metadata
    body = getattr(error, "body", None)
    if isinstance(body, str) and body.startswith("{"):  # mistralai: the error response's text
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            body = None
    if not isinstance(body, Mapping):
        body = getattr(error, "details", None)  # google-genai: the error response's JSON
    if isinstance(body, Mapping):
        inner = body.get("error")
        detail = inner if isinstance(inner, Mapping) else body
        for key, name in _ERROR_FIELDS:
            value = detail.get(key)
            if value is not None and name not in metadata and not isinstance(value, (dict, list)):
                metadata[name] = value
    elif isinstance(getattr(error, "message", None), str):
        metadata["error_message"] = error.message  # type: ignore[attr-defined]
    elif isinstance(getattr(error, "error", None), str):  # ollama's ResponseError
        metadata["error_message"] = error.error  # type: ignore[attr-defined]
    return metadata


def _aws_error(response: Mapping[str, Any], metadata: dict[str, Any]) -> None:
    """Status, request id, error code and message of an AWS error response (``ClientError.response``)."""
    details = response.get("ResponseMetadata")
    if isinstance(details, Mapping):
        status = details.get("HTTPStatusCode")
        if isinstance(status, int):
            metadata["status_code"] = status
        request_id = details.get("RequestId")
        if isinstance(request_id, str) and request_id:
            metadata["request_id"] = request_id
    error = response["Error"]
    for key, name in (("Code", "error_code"), ("Message", "error_message")):
        value = error.get(key)
        if isinstance(value, str):
            metadata[name] = value


def dump(obj: Any) -> Any:
    """A JSON-ready copy of an SDK model (pydantic) or the value itself."""
    to_dict = getattr(obj, "model_dump", None)
    if to_dict is not None and callable(to_dict):
        try:
            return to_dict(mode="json", exclude_none=True, warnings=False)
        except Exception:
            return obj
    return obj


def json_ready(value: Any) -> Any:
    """A JSON-ready form of a request value: SDK models dumped, classes as their schema, functions
    (automatic function calling) by name, enums by value."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, type):
        return schema_of(value)
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if callable(getattr(value, "model_dump", None)):
        return dump(value)
    if callable(value):
        return {"function": getattr(value, "__name__", type(value).__name__)}
    return value


# -- wrappers: one client method -> one model event ------------------------------------------------

Request = Callable[[Any, dict[str, Any]], tuple[dict[str, Any], dict[str, Any] | None]]
Result = Callable[[Any], tuple[dict[str, Any] | None, dict[str, Any]]]
Prepare = Callable[[dict[str, Any]], Callable[[Any], bool] | None]


@dataclass(frozen=True)
class Api:
    """How one client method becomes a model event."""

    name: str  # the event name, e.g. "openai.chat.completions.create"
    library: Library
    request: Request  # (resource instance, saved kwargs) -> (config, inputs), run by the worker (see Call.shape)
    result: Result  # a parsed response -> (outputs, metadata)
    recorder: Callable[[Call], StreamRecorder]  # for a streamed response
    stream_types: Callable[[], tuple[type, ...]]  # the library's Stream and AsyncStream classes
    prepare: Prepare | None = None  # adjusts kwargs (opt-in usage chunk); returns "hide this chunk"
    helpers: Mapping[str, str] = field(default_factory=dict)  # X-Stainless-Helper-Method -> event name
    request_id_header: str = "x-request-id"  # where a streamed response's request id is
    # For a stream helper (manager_wrapper): a recorder reading what the helper accumulates itself.
    helper_recorder: Callable[[Call, Any], StreamRecorder | None] | None = None
    # Arguments that may be one-shot iterators or lists the caller changes later (see save_request).
    saved: tuple[str, ...] = ()
    # Names of the leading positional-or-keyword parameters (ollama's ``chat(model, messages)``):
    # positional arguments are passed on as these keywords, so the request is recorded whole.
    positional: tuple[str, ...] = ()

    def for_helper(self, call: Call, helper: Any) -> tuple[StreamRecorder, bool]:
        """The recorder for a helper's stream: reading the helper's own snapshot when it can, else ours."""
        if self.helper_recorder is not None:
            recorder = self.helper_recorder(call, helper)
            if recorder is not None:
                return recorder, True
        return self.recorder(call), False

    def read_headers(self, headers: Any) -> tuple[str, str | None]:
        """(event name, raw-response mode) from a call's ``extra_headers``, set by the SDK's helpers."""
        name, raw = self.name, None
        if isinstance(headers, Mapping):
            if self.helpers:
                helper = headers.get(_HELPER_HEADER)
                if helper is not None:
                    name = self.helpers.get(helper, name)
            mode = headers.get(_RAW_HEADER)
            raw = mode if isinstance(mode, str) else None
        return name, raw


_HELPER_HEADER: Final = "X-Stainless-Helper-Method"
_STREAMED: Final = {"stream": True}  # config of a stream helper's call (its kwargs do not say so)
_RAW_HEADER: Final = "X-Stainless-Raw-Response"


Hide = Callable[[Any], bool]


def _start(api: Api, kwargs: dict[str, Any], instance: Any) -> tuple[Call | None, str | None, Hide | None]:
    """Open the event and record the request; (None, …) means call straight through."""
    name, raw = api.name, None
    headers = kwargs.get("extra_headers")
    if headers is not None:
        try:
            name, raw = api.read_headers(headers)
        except Exception as exc:
            report_internal_error(f"reading the headers of {api.name}", exc)
    call = begin(name)
    if call is None:
        return None, None, None
    hide = None
    try:
        call.request(api.request, instance, save_request(kwargs, api.saved))
        if api.prepare is not None:
            hide = api.prepare(kwargs)
    except Exception as exc:
        report_internal_error(f"recording the request of {api.name}", exc)
    return call, raw, hide


def _outcome(api: Api, call: Call, result: Any, raw: str | None, hide: Callable[[Any], bool] | None, aio: bool) -> Any:
    """Record what the client returned; a stream is handed back wrapped in a proxy."""
    try:
        if raw is None:
            value = result
        elif raw == "stream":  # with_streaming_response: the body is the user's to read; record the status only
            call.finish(None, http_metadata(result))
            return result
        else:
            value = result.parse()
        if isinstance(value, api.stream_types()):
            if raw is not None:  # the parsed stream is cached inside the raw response: not ours to swap
                call.finish(None, {**http_metadata(result), "stream_not_traced": True})
                return result
            recorder = api.recorder(call)
            recorder.start(getattr(value, "response", None), api.request_id_header)
            return (traced_async_stream if aio else traced_stream)(value, recorder, hide)
        call.respond(api.result, value, http_metadata(result) if raw is not None else None)
    except Exception as exc:
        report_internal_error(f"recording the response of {api.name}", exc)
        call.finish(None, None)
    return result


def _run(
    api: Api,
    call: Call,
    raw: str | None,
    hide: Hide | None,
    aio: bool,
    wrapped: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Call the client method with the call's event current; record what it returned or raised."""
    previous = call.enter()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.leave(previous)
        call.fail(exc)
        raise
    call.leave(previous)
    return _outcome(api, call, result, raw, hide, aio)


async def _arun(
    api: Api,
    call: Call,
    raw: str | None,
    hide: Hide | None,
    wrapped: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``_run`` for an ``async def`` client method."""
    previous = call.enter()
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        call.leave(previous)
        call.fail(exc)
        raise
    call.leave(previous)
    return _outcome(api, call, result, raw, hide, True)


def _as_keywords(
    names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The leading positional arguments as the keywords *names* (the same call for such parameters)."""
    count = min(len(names), len(args))
    return args[count:], {**dict(zip(names[:count], args[:count], strict=True)), **kwargs}


def sync_wrapper(api: Api, async_stream: bool = False) -> Wrapper:
    """Wrapper for a synchronous client method (``create``, ``parse``); *async_stream*: one that
    returns an async stream (cohere's ``AsyncV2Client.chat_stream``, an async generator function)."""
    library = api.library

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not library.active:
            return wrapped(*args, **kwargs)
        if args and api.positional:
            args, kwargs = _as_keywords(api.positional, args, kwargs)
        call, raw, hide = _start(api, kwargs, instance)
        if call is None:
            return wrapped(*args, **kwargs)
        return _run(api, call, raw, hide, async_stream, wrapped, args, kwargs)

    return mark(wrapper)


def async_wrapper(api: Api) -> Wrapper:
    """Wrapper for an ``async def`` client method: the event starts when the call is awaited."""
    library = api.library

    async def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not library.active:
            return await wrapped(*args, **kwargs)
        if args and api.positional:
            args, kwargs = _as_keywords(api.positional, args, kwargs)
        call, raw, hide = _start(api, kwargs, instance)
        if call is None:
            return await wrapped(*args, **kwargs)
        return await _arun(api, call, raw, hide, wrapped, args, kwargs)

    return mark(wrapper)


Select = Callable[[Any, tuple[Any, ...], dict[str, Any]], "tuple[Api, dict[str, Any]] | None"]


def dispatch_wrapper(library: Library, select: Select, aio: bool) -> Wrapper:
    """Wrapper for the one method through which a library sends many kinds of calls (a gateway's
    dispatcher): ``select(instance, args, kwargs)`` names the call's ``Api`` and its request
    parameters (a dict, the user's arguments by name), or None for a call that is not a model call,
    which then goes straight through.

    Like every wrapper here, the call runs with its event current and ``inside_call`` set, so the
    provider SDK a gateway calls underneath (itself patched: the openai client under litellm)
    records no second event.
    """

    def choose(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Api, dict[str, Any]] | None:
        if not library.active or suppressed.get() or inside_call.get():
            return None
        try:
            return select(instance, args, kwargs)
        except Exception as exc:
            report_internal_error(f"recognizing a {library.name} call", exc)
            return None

    if aio:

        async def async_dispatch(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            chosen = choose(instance, args, kwargs)
            if chosen is None:
                return await wrapped(*args, **kwargs)
            api, params = chosen
            call, raw, hide = _start(api, params, instance)
            if call is None:
                return await wrapped(*args, **kwargs)
            return await _arun(api, call, raw, hide, wrapped, args, kwargs)

        return mark(async_dispatch)

    def dispatch(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        chosen = choose(instance, args, kwargs)
        if chosen is None:
            return wrapped(*args, **kwargs)
        api, params = chosen
        call, raw, hide = _start(api, params, instance)
        if call is None:
            return wrapped(*args, **kwargs)
        return _run(api, call, raw, hide, False, wrapped, args, kwargs)

    return mark(dispatch)


def manager_wrapper(api: Api, aio: bool) -> Wrapper:
    """Wrapper for a method returning a stream manager (anthropic ``messages.stream``).

    The request is recorded now; the event starts when the manager is entered (the request is sent
    then) and covers the stream read inside the ``with`` block.
    """
    library = api.library

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not library.active or suppressed.get() or inside_call.get():
            return wrapped(*args, **kwargs)
        try:
            saved = save_request(kwargs, api.saved)
        except Exception as exc:
            report_internal_error(f"recording the request of {api.name}", exc)
            return wrapped(*args, **kwargs)
        manager = wrapped(*args, **kwargs)

        def start() -> Call | None:
            call = begin(api.name)
            if call is not None:
                try:
                    call.request(api.request, instance, saved, _STREAMED)
                except Exception as exc:
                    report_internal_error(f"recording the request of {api.name}", exc)
            return call

        try:
            return traced_manager(manager, start, api.for_helper, api.request_id_header, aio)
        except Exception as exc:
            report_internal_error(f"tracing {api.name}", exc)
            return manager

    return mark(wrapper)


def _close_wrapper(finish: Callable[[Any], None], afinish: Callable[[Any], Awaitable[None]], aio: bool) -> Wrapper:
    """Wrapper for a ``close()`` that ends the event of *instance* afterwards (*finish*, *afinish* when *aio*)."""
    if aio:

        async def async_close(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            try:
                return await wrapped(*args, **kwargs)
            finally:
                await afinish(instance)

        return mark(async_close)

    def close(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return wrapped(*args, **kwargs)
        finally:
            finish(instance)

    return mark(close)


def helper_close_wrapper(aio: bool) -> Wrapper:
    """Wrapper for a stream helper's ``close()`` that closes the HTTP response behind our proxy's back."""
    return _close_wrapper(finish_helper_stream, afinish_helper_stream, aio)


def bare_stream_close_wrapper(aio: bool) -> Wrapper:
    """Wrapper for an SDK stream class's ``close()``: ends the event of a stream handed back without
    a proxy (see ``_stream._proxy``); ``with`` exit goes through ``close()`` too."""
    return _close_wrapper(finish_bare_stream, afinish_bare_stream, aio)


def http_metadata(response: Any) -> dict[str, Any]:
    """Status and request id of a raw HTTP response object (``with_raw_response`` and friends)."""
    metadata: dict[str, Any] = {"raw_response": True}
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        metadata["status_code"] = status
    headers = getattr(response, "headers", None)
    if headers is not None:
        request_id = headers.get("x-request-id") or headers.get("request-id")
        if request_id:
            metadata["request_id"] = request_id
    return metadata
