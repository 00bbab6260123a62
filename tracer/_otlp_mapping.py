"""OpenTelemetry spans ↔ HoneyHive events, with HoneyHive's own rules, both ways.

One module for both directions, so that what the collector (``tracer serve``) stores from an OTLP
span and what an OTLP exporter sends for an event agree: ``event_to_span(span_to_event(s))``
keeps what HoneyHive keeps, and ``span_to_event(event_to_span(e))`` gives *e* back.

``Span`` is the encoding-free form (ids as lower-case hex, times in Unix nanoseconds, attribute
values decoded to Python values): the OTLP/protobuf and OTLP/JSON codecs live elsewhere.

Span → event (what HoneyHive's ingestion does, ``../shared/reference/honeyhive-api.md`` §4.7):

- event type: ``honeyhive_event_type``, then ``gen_ai.operation.name`` (chat, text_completion,
  generate_content, embeddings → model; invoke_agent, create_agent, invoke_workflow → chain;
  execute_tool, retrieval → tool), then ``openinference.span.kind`` (LLM → model; CHAIN, AGENT →
  chain; others → tool), then ``traceloop.span.kind`` (workflow, agent → chain; task, tool → tool),
  else tool.
- session id, project, source, session name: ``honeyhive.*`` / ``honeyhive_*`` /
  ``traceloop.association.properties.*`` on the span, then on the resource; the session id falls
  back to the trace id (as a UUID), so one trace is one session.
- ids: ``honeyhive_event_id`` when given, else a UUID made of the trace id's first half and the span
  id, so a retried span, or a child arriving before its parent, gets the same id. Parent: the
  ``honeyhive_parent_id`` attribute (this module's own, for events that came from another id
  scheme), else the parent span's id by the same rule; a root span's parent is the session.
- buckets: ``honeyhive_inputs.*``, ``honeyhive_outputs.*``, ``honeyhive_config.*``,
  ``honeyhive_metadata.*``, ``honeyhive_metrics.*``, ``honeyhive_feedback.*``,
  ``honeyhive_user_properties.*``, dotted keys rebuilt into nested objects (all-index keys into
  arrays).
- model events: config, chat history, output message and token counts from the GenAI semantic
  conventions (``gen_ai.request.*``, ``gen_ai.input.messages`` / ``gen_ai.output.messages``, the older
  ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` and message span events, ``gen_ai.usage.*``)
  and OpenInference (``llm.*``, ``input.value`` / ``output.value``); Traceloop's
  ``traceloop.entity.input`` / ``output``.
- errors: ``honeyhive_error``, else an ``exception`` span event (``type: message``), else an ERROR
  status (its message, or ``"error"``).
- everything else (attributes, other span events, the resource, the scope) is kept under
  ``metadata`` so that nothing sent is lost.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from . import _schema

__all__ = [
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_UNSET",
    "Span",
    "SpanEvent",
    "error_of",
    "event_id_for",
    "event_to_span",
    "event_type_of",
    "gen_ai_attributes",
    "span_id_for",
    "span_to_event",
    "trace_id_for",
]

STATUS_UNSET: Final = 0
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2
SPAN_KIND_INTERNAL: Final = 1
SPAN_KIND_CLIENT: Final = 3

_BUCKET_PREFIXES: Final = {f"honeyhive_{name}": name for name in _schema.BUCKETS}
_GEN_AI_OPERATIONS: Final = {
    "chat": "model",
    "text_completion": "model",
    "generate_content": "model",
    "embeddings": "model",
    "invoke_agent": "chain",
    "create_agent": "chain",
    "invoke_workflow": "chain",
    "execute_tool": "tool",
    "retrieval": "tool",
}
_OPENINFERENCE_KINDS: Final = {"LLM": "model", "CHAIN": "chain", "AGENT": "chain"}
_TRACELOOP_KINDS: Final = {"workflow": "chain", "agent": "chain", "task": "tool", "tool": "tool"}
_EVENT_TYPES: Final = frozenset(_schema.EVENT_TYPES)
# Where a session's identity may be named, most specific first (span, then resource).
_SESSION_KEYS: Final = {
    "session_id": ("honeyhive.session_id", "honeyhive_session_id", "traceloop.association.properties.session_id"),
    "project": ("honeyhive.project", "honeyhive_project", "traceloop.association.properties.project"),
    "source": ("honeyhive.source", "honeyhive_source", "traceloop.association.properties.source"),
    "session_name": (
        "honeyhive.session_name",
        "honeyhive_session_name",
        "traceloop.association.properties.session_name",
    ),
}
_CONSUMED: Final = frozenset(
    {
        "honeyhive_event_type",
        "honeyhive.event_type",
        "honeyhive_event_name",
        "honeyhive.event_name",
        "honeyhive_event_id",
        "honeyhive_parent_id",
        "honeyhive_error",
        "honeyhive_error_type",
        "honeyhive_duration_ms",
        *(key for keys in _SESSION_KEYS.values() for key in keys),
    }
)
# GenAI request parameters → config keys (HoneyHive's names).
_GEN_AI_CONFIG: Final = {
    "gen_ai.request.model": "model",
    "gen_ai.system": "provider",
    "gen_ai.provider.name": "provider",
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.top_k": "top_k",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.stop_sequences": "stop_sequences",
    "gen_ai.request.seed": "seed",
    "llm.model_name": "model",
    "llm.provider": "provider",
    "llm.system": "provider",
}
_TOKEN_KEYS: Final = {
    "gen_ai.usage.input_tokens": "prompt_tokens",
    "gen_ai.usage.cache_read.input_tokens": "cache_read_input_tokens",
    "gen_ai.usage.cache_write.input_tokens": "cache_creation_input_tokens",
    "gen_ai.usage.cache_creation.input_tokens": "cache_creation_input_tokens",
    "gen_ai.usage.reasoning.output_tokens": "reasoning_tokens",
    "gen_ai.usage.prompt_tokens": "prompt_tokens",
    "gen_ai.usage.output_tokens": "completion_tokens",
    "gen_ai.usage.completion_tokens": "completion_tokens",
    "gen_ai.usage.total_tokens": "total_tokens",
    "llm.token_count.prompt": "prompt_tokens",
    "llm.token_count.completion": "completion_tokens",
    "llm.token_count.total": "total_tokens",
    "llm.token_count.prompt_details.cache_read": "cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_write": "cache_creation_input_tokens",
    "llm.token_count.completion_details.reasoning": "reasoning_tokens",
}
# Span events of the older GenAI conventions that carry a message, and the role they imply.
_MESSAGE_EVENTS: Final = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


@dataclasses.dataclass(frozen=True, slots=True)
class SpanEvent:
    """A span event: a name, a time and attributes (``exception``, ``gen_ai.choice``, …)."""

    name: str
    time_unix_nano: int
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class Span:
    """An OpenTelemetry span, encoding-free. ``parent_span_id`` is ``""`` for a root span."""

    trace_id: str
    span_id: str
    name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    parent_span_id: str = ""
    kind: int = SPAN_KIND_INTERNAL
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    events: list[SpanEvent] = dataclasses.field(default_factory=list)
    status_code: int = STATUS_UNSET
    status_message: str = ""
    resource: dict[str, Any] = dataclasses.field(default_factory=dict)
    scope_name: str = ""


def _default_kind(event_type: str) -> int:
    """CLIENT for a model event (a call to a provider), INTERNAL for the others."""
    return SPAN_KIND_CLIENT if event_type == "model" else SPAN_KIND_INTERNAL


# -- ids -------------------------------------------------------------------------------------------


# The canonical (lower-case, hyphenated) UUID text this library writes: read by slicing, which
# measured 5x faster than uuid.UUID() (0.25 against 1.3 µs, the exporter runs it twice per event).
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX: Final = re.compile(r"[0-9a-f]+")


def _uuid_hex(text: str) -> str | None:
    """The 32 hex digits of a UUID's text, or None when *text* is not a UUID."""
    if _CANONICAL_UUID.fullmatch(text):
        return text.replace("-", "")
    try:
        return uuid.UUID(text).hex
    except ValueError:
        return None


def event_id_for(trace_id: str, span_id: str) -> str:
    """The event id of a span with no ``honeyhive_event_id``: stable across retries and requests."""
    text = trace_id[:16] + span_id
    if len(text) == 32 and _HEX.fullmatch(text):
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return str(uuid.UUID(hex=text))


@functools.lru_cache(maxsize=1024)  # one session's events all ask for the same trace id
def trace_id_for(session_id: str) -> str:
    """The trace id of a session's spans: the session id itself when it is a UUID."""
    text = _uuid_hex(session_id)
    return text if text is not None else uuid.uuid5(uuid.NAMESPACE_URL, f"tracer:session:{session_id}").hex


def span_id_for(event_id: str) -> str:
    """A span id for an event id: its last 64 bits when it is a UUID (never all zeros)."""
    whole = _uuid_hex(event_id)
    text = whole[16:] if whole is not None else uuid.uuid5(uuid.NAMESPACE_URL, f"tracer:event:{event_id}").hex[16:]
    return text if text.strip("0") else "0000000000000001"


# -- span → event ----------------------------------------------------------------------------------


def _first(keys: Iterable[str], *sources: Mapping[str, Any]) -> Any:
    for source in sources:
        for key in keys:
            value = source.get(key)
            if value is not None and value != "":
                return value
    return None


def _event_type(attributes: Mapping[str, Any]) -> str:
    explicit = attributes.get("honeyhive_event_type", attributes.get("honeyhive.event_type"))
    if isinstance(explicit, str) and explicit in _EVENT_TYPES:
        return explicit
    operation = attributes.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation in _GEN_AI_OPERATIONS:
        return _GEN_AI_OPERATIONS[operation]
    kind = attributes.get("openinference.span.kind")
    if isinstance(kind, str) and kind:
        return _OPENINFERENCE_KINDS.get(kind.upper(), "tool")
    traceloop = attributes.get("traceloop.span.kind")
    if isinstance(traceloop, str) and traceloop in _TRACELOOP_KINDS:
        return _TRACELOOP_KINDS[traceloop]
    return "tool"


def event_type_of(attributes: Mapping[str, Any]) -> str:
    """The event type a span with these attributes maps to (``model``, ``chain`` or ``tool``)."""
    return _event_type(attributes)


def error_of(span: Span) -> str | None:
    """The ``error`` text of *span*'s event, or None when it did not fail."""
    return _error(span, set(), set())


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = {} if child is None else {"": child}  # a value and deeper keys both sent: keep both
            target[key] = child
        target = child
    last = path[-1]
    existing = target.get(last)
    if isinstance(existing, dict) and not isinstance(value, dict):
        existing[""] = value
    else:
        target[last] = value


def _listify(value: Any) -> Any:
    """Objects whose keys are exactly 0..n-1 become arrays (``chat_history.0.role`` → a list)."""
    if isinstance(value, dict):
        value = {key: _listify(item) for key, item in value.items()}
        if value and all(key.isdigit() for key in value):
            indexes = sorted(int(key) for key in value)
            if indexes == list(range(len(indexes))):
                return [value[str(index)] for index in indexes]
        return value
    if isinstance(value, list):
        return [_listify(item) for item in value]
    return value


def _json_value(value: Any) -> Any:
    """A JSON-encoded object or array given as a string, decoded; anything else as it is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _parts_text(message: Mapping[str, Any]) -> dict[str, Any]:
    """A GenAI ``{role, parts: [{type, content}]}`` message as HoneyHive's ``{role, content}``."""
    result: dict[str, Any] = {key: value for key, value in message.items() if key != "parts"}
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = [p.get("content") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        calls = [p for p in parts if isinstance(p, dict) and p.get("type") == "tool_call"]
        if texts:
            result["content"] = "".join(str(t) for t in texts if t is not None)
        if calls:
            result["tool_calls"] = [
                {"id": c.get("id"), "function": {"name": c.get("name"), "arguments": c.get("arguments")}} for c in calls
            ]
        others = [p for p in parts if isinstance(p, dict) and p.get("type") not in ("text", "tool_call")]
        if others or not (texts or calls):
            result["parts"] = parts
    return result


def _indexed_messages(attributes: Mapping[str, Any], prefix: str, used: set[str]) -> list[dict[str, Any]]:
    """``prefix.N.field`` attributes (``gen_ai.prompt.0.role``) as a list of message objects."""
    found: dict[str, Any] = {}
    for key, value in attributes.items():
        if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isdigit():
            used.add(key)
            _set_path(found, key[len(prefix) :].split("."), value)
    messages = _listify(found)
    if isinstance(messages, dict):  # gaps in the numbering: in index order
        messages = [messages[key] for key in sorted(messages, key=lambda k: int(k) if k.isdigit() else 0)]
    return [m.get("message", m) if isinstance(m, dict) else {"content": m} for m in messages]


def _model_fields(span: Span, event: dict[str, Any], used: set[str], used_events: set[int]) -> None:
    """Config, chat history, output and tokens from the GenAI and OpenInference conventions."""
    attributes = span.attributes
    config, inputs, outputs, metadata = event["config"], event["inputs"], event["outputs"], event["metadata"]
    for key, name in _GEN_AI_CONFIG.items():
        if key in attributes:
            used.add(key)
            config.setdefault(name, attributes[key])
    if "llm.invocation_parameters" in attributes:
        used.add("llm.invocation_parameters")
        parameters = _json_value(attributes["llm.invocation_parameters"])
        if isinstance(parameters, dict):
            for name, value in parameters.items():
                config.setdefault(name, value)
        else:
            config.setdefault("invocation_parameters", parameters)
    counted = False
    for key, name in _TOKEN_KEYS.items():
        if key in attributes:
            used.add(key)
            counted = True
            metadata.setdefault(name, attributes[key])
    prompt, completion = metadata.get("prompt_tokens"), metadata.get("completion_tokens")
    # A span carrying HoneyHive's metadata whole (this library's exporter) said what it had: add nothing.
    whole_metadata = "honeyhive_metadata" in attributes
    if (
        counted
        and not whole_metadata
        and "total_tokens" not in metadata
        and isinstance(prompt, int)
        and isinstance(completion, int)
    ):
        metadata["total_tokens"] = prompt + completion  # as HoneyHive computes it when missing
    if "gen_ai.response.model" in attributes:
        used.add("gen_ai.response.model")
        metadata.setdefault("response_model", attributes["gen_ai.response.model"])
        config.setdefault("model", attributes["gen_ai.response.model"])
    if "gen_ai.response.id" in attributes:
        used.add("gen_ai.response.id")
        metadata.setdefault("response_id", attributes["gen_ai.response.id"])
    if "gen_ai.response.time_to_first_chunk" in attributes:
        used.add("gen_ai.response.time_to_first_chunk")
        seconds = attributes["gen_ai.response.time_to_first_chunk"]
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            event["metrics"].setdefault("time_to_first_token_ms", seconds * 1000)
    if _GEN_AI_OPERATIONS.get(str(attributes.get("gen_ai.operation.name"))) == event["event_type"]:
        used.add("gen_ai.operation.name")  # it said what the event type already says
    history: list[Any] = []
    if "gen_ai.system_instructions" in attributes:
        used.add("gen_ai.system_instructions")
        instructions = _json_value(attributes["gen_ai.system_instructions"])
        if isinstance(instructions, list):
            text = "".join(str(p.get("content", "")) for p in instructions if isinstance(p, dict))
            history.append({"role": "system", "content": text})
    if "gen_ai.input.messages" in attributes:
        used.add("gen_ai.input.messages")
        messages = _json_value(attributes["gen_ai.input.messages"])
        if isinstance(messages, list):
            history.extend(_parts_text(m) if isinstance(m, dict) else m for m in messages)
        else:
            inputs.setdefault("input_messages", messages)
    history.extend(_indexed_messages(attributes, "gen_ai.prompt.", used))
    history.extend(_indexed_messages(attributes, "llm.input_messages.", used))
    for index, span_event in enumerate(span.events):
        role = _MESSAGE_EVENTS.get(span_event.name)
        if role is not None:
            used_events.add(index)
            message = {"role": span_event.attributes.get("role", role)}
            for key, value in span_event.attributes.items():
                if key != "role" and not key.startswith("gen_ai.system"):
                    message[key] = _json_value(value)
            history.append(message)
    if history and "chat_history" not in inputs:
        inputs["chat_history"] = history
    completions: list[Any] = []
    if "gen_ai.output.messages" in attributes:
        used.add("gen_ai.output.messages")
        messages = _json_value(attributes["gen_ai.output.messages"])
        if isinstance(messages, list):
            completions.extend(_parts_text(m) if isinstance(m, dict) else m for m in messages)
    completions.extend(_indexed_messages(attributes, "gen_ai.completion.", used))
    completions.extend(_indexed_messages(attributes, "llm.output_messages.", used))
    for index, span_event in enumerate(span.events):
        if span_event.name == "gen_ai.choice":
            used_events.add(index)
            choice = {key: _json_value(value) for key, value in span_event.attributes.items()}
            message = choice.pop("message", None)
            completions.append({**(message if isinstance(message, dict) else {}), **choice})
    if completions and not outputs:
        first = completions[0]
        outputs.update(first if isinstance(first, dict) else {"content": first})
        if len(completions) > 1:
            outputs["choices"] = completions
    if "gen_ai.response.finish_reasons" in attributes:
        used.add("gen_ai.response.finish_reasons")
        outputs.setdefault("finish_reason", attributes["gen_ai.response.finish_reasons"])


def _error(span: Span, used: set[str], used_events: set[int]) -> str | None:
    explicit = span.attributes.get("honeyhive_error")
    if isinstance(explicit, str) and explicit:
        return explicit
    for index, span_event in enumerate(span.events):
        if span_event.name == "exception":
            used_events.add(index)
            kind = span_event.attributes.get("exception.type")
            message = span_event.attributes.get("exception.message")
            text = ": ".join(str(part) for part in (kind, message) if part)
            return text or "exception"
    if span.status_code == STATUS_ERROR:
        return span.status_message or "error"
    return None


def span_to_event(span: Span) -> tuple[dict[str, Any], dict[str, Any]]:
    """The HoneyHive event of *span* (wire shape, not yet defaulted or validated by a server) and
    the session properties its attributes name (``session_id`` always, ``session_name``,
    ``source``, ``project`` when given)."""
    attributes = span.attributes
    used: set[str] = set()
    used_events: set[int] = set()
    session: dict[str, Any] = {}
    for name, keys in _SESSION_KEYS.items():
        value = _first(keys, attributes, span.resource)
        if value is not None:
            session[name] = str(value)
    session_id = session.get("session_id") or str(uuid.UUID(hex=span.trace_id))
    session["session_id"] = session_id
    explicit_id = attributes.get("honeyhive_event_id")
    event_id = (
        explicit_id if isinstance(explicit_id, str) and explicit_id else event_id_for(span.trace_id, span.span_id)
    )
    explicit_parent = attributes.get("honeyhive_parent_id")
    if isinstance(explicit_parent, str) and explicit_parent:
        parent_id = explicit_parent
    elif span.parent_span_id:
        parent_id = event_id_for(span.trace_id, span.parent_span_id)
    else:
        parent_id = session_id
    event_name = attributes.get("honeyhive_event_name", attributes.get("honeyhive.event_name"))
    event_type = _event_type(attributes)
    buckets: dict[str, dict[str, Any]] = {name: {} for name in _schema.BUCKETS}
    for key, value in attributes.items():
        prefix, _, rest = key.partition(".")
        bucket = _BUCKET_PREFIXES.get(prefix)
        if bucket is None:
            continue
        used.add(key)
        if value in ("{}", "[]"):  # an empty object or array (attributes cannot hold one)
            value = orjson.loads(value)
        if rest:
            _set_path(buckets[bucket], rest.split("."), value)
        else:  # the whole bucket as one (JSON) value
            whole = _json_value(value)
            if isinstance(whole, dict):
                for name, item in whole.items():
                    buckets[bucket].setdefault(name, item)
            else:
                buckets[bucket][""] = whole
    for name in _schema.BUCKETS:
        buckets[name] = _listify(buckets[name])
    event: dict[str, Any] = {
        "event_id": event_id,
        "session_id": session_id,
        "parent_id": parent_id,
        "event_type": event_type,
        "event_name": event_name if isinstance(event_name, str) and event_name else span.name,
        "start_time": span.start_time_unix_nano // 1_000_000,
        "end_time": max(span.end_time_unix_nano, span.start_time_unix_nano) // 1_000_000,
        "duration": max(span.end_time_unix_nano - span.start_time_unix_nano, 0) / 1_000_000,
        **buckets,
    }
    if "source" in session:
        event["source"] = session["source"]
    if "project" in session:
        event["project"] = session["project"]
    if event_type == "model" or any(key.startswith(("gen_ai.", "llm.")) for key in attributes):
        _model_fields(span, event, used, used_events)
    for key, target in (("input.value", "inputs"), ("traceloop.entity.input", "inputs")):
        if key in attributes:
            used.add(key)
            value = _json_value(attributes[key])
            if not event[target]:
                event[target] = value if isinstance(value, dict) else {"value": value}
            else:
                event[target].setdefault(key, value)
    for key, target in (("output.value", "outputs"), ("traceloop.entity.output", "outputs")):
        if key in attributes:
            used.add(key)
            value = _json_value(attributes[key])
            if not event[target]:
                event[target] = value if isinstance(value, dict) else {"value": value}
            else:
                event[target].setdefault(key, value)
    error = _error(span, used, used_events)
    if error is not None:
        event["error"] = error
    metadata = event["metadata"]
    for key, value in attributes.items():
        if key not in used and key not in _CONSUMED:
            metadata.setdefault(key, value)
    others = [
        {"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": e.attributes}
        for index, e in enumerate(span.events)
        if index not in used_events
    ]
    if others:
        metadata.setdefault("otel.events", others)
    # The span's ids, where event_to_span could not derive them again from the event's.
    if span.trace_id != trace_id_for(session_id):
        metadata.setdefault("otel.trace_id", span.trace_id)
    if span.span_id != span_id_for(event_id):
        metadata.setdefault("otel.span_id", span.span_id)
    if span.kind != _default_kind(event_type):
        metadata.setdefault("otel.span_kind", span.kind)
    if span.scope_name:
        metadata.setdefault("otel.scope", span.scope_name)
    if span.status_code == STATUS_ERROR and span.status_message and error != span.status_message:
        metadata.setdefault("otel.status_message", span.status_message)
    resource = {key: value for key, value in span.resource.items() if key not in _CONSUMED}
    if resource:
        metadata.setdefault("otel.resource", resource)
    return event, session


# -- event → span ----------------------------------------------------------------------------------

# Metadata keys span_to_event adds about the span itself: read back into the span, not attributes.
_SPAN_METADATA: Final = frozenset(
    {"otel.trace_id", "otel.span_id", "otel.span_kind", "otel.scope", "otel.events", "otel.resource"}
)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Nested objects and arrays as dotted attribute keys; scalars (and empty containers, as JSON) as values."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if key != "" else prefix, item, out)
    elif isinstance(value, list) and value and any(isinstance(item, (dict, list)) for item in value):
        for index, item in enumerate(value):
            _flatten(f"{prefix}.{index}", item, out)
    elif isinstance(value, (dict, list)) and not value:
        out[prefix] = orjson.dumps(value).decode()
    else:
        out[prefix] = value


# Event fields → GenAI semantic-convention attributes (the OTLP exporter's view of a model event).
# Each is written only from the field span_to_event reads it back into, so a round trip adds nothing.
_CONFIG_GEN_AI: Final = {
    "model": "gen_ai.request.model",
    "provider": "gen_ai.provider.name",
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "stop_sequences": "gen_ai.request.stop_sequences",
    "seed": "gen_ai.request.seed",
}
_METADATA_GEN_AI: Final = {
    "prompt_tokens": "gen_ai.usage.input_tokens",
    "completion_tokens": "gen_ai.usage.output_tokens",
    "cache_read_input_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_creation_input_tokens": "gen_ai.usage.cache_write.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
    "response_id": "gen_ai.response.id",
}


def _attribute_value(value: Any) -> Any:
    """An attribute value OTLP can carry: scalars and homogeneous scalar arrays as they are, else JSON."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _genai_message(message: Any) -> Any:
    """HoneyHive's ``{role, content, tool_calls}`` as a GenAI ``{role, parts}`` message."""
    if not isinstance(message, dict):
        return message
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str):
        parts.append({"type": "text", "content": content})
    elif content is not None:
        parts.append({"type": "text", "content": orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS).decode()})
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            function = _bucket(call, "function")
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
    return {"role": message.get("role", "user"), "parts": parts}


def _bucket(event: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = event.get(name)
    return value if isinstance(value, dict) else {}


def gen_ai_attributes(event: Mapping[str, Any], *, content: bool = True) -> dict[str, Any]:
    """The OpenTelemetry GenAI semantic-convention attributes of a ``model`` event (empty for others).

    *content*: include ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (the prompt and the
    completion; off when content capture is off).
    """
    if event.get("event_type") != "model":
        return {}
    config, metadata, outputs, inputs, metrics = (
        _bucket(event, name) for name in ("config", "metadata", "outputs", "inputs", "metrics")
    )
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    for name, key in _CONFIG_GEN_AI.items():
        value = config.get(name)
        if value is not None:
            attributes[key] = _attribute_value(value)
    for name, key in _METADATA_GEN_AI.items():
        value = metadata.get(name)
        if value is not None:
            attributes[key] = _attribute_value(value)
    if metadata.get("response_model") is not None and config.get("model") is not None:
        attributes["gen_ai.response.model"] = _attribute_value(metadata["response_model"])
    reason = outputs.get("finish_reason")
    if isinstance(reason, str):
        attributes["gen_ai.response.finish_reasons"] = [reason]
    ttft = metrics.get("time_to_first_token_ms")
    if isinstance(ttft, (int, float)) and not isinstance(ttft, bool):
        attributes["gen_ai.response.time_to_first_chunk"] = ttft / 1000
    if content:
        history = inputs.get("chat_history")
        if isinstance(history, list) and history:
            attributes["gen_ai.input.messages"] = _attribute_value([_genai_message(m) for m in history])
        if outputs:
            output = {key: value for key, value in outputs.items() if key not in ("finish_reason", "choices")}
            message = _genai_message({"role": "assistant", **output})
            if isinstance(message, dict) and isinstance(reason, str):
                message["finish_reason"] = reason
            attributes["gen_ai.output.messages"] = _attribute_value([message])
    return attributes


def event_to_span(
    event: Mapping[str, Any],
    *,
    session: Mapping[str, Any] | None = None,
    resource: Mapping[str, Any] | None = None,
    json_buckets: bool = False,
) -> Span:
    """The span an OTLP exporter sends for a (wire-shape) event, which ``span_to_event`` maps back.

    Buckets become ``honeyhive_<bucket>.<dotted key>`` attributes (with *json_buckets*: one
    ``honeyhive_<bucket>`` attribute per bucket, its JSON, as the OTLP exporter sends them); the
    ids, type, name, session, source and project become HoneyHive's attributes; ``error`` an ERROR status and
    ``honeyhive_error``. Metadata that ``span_to_event`` added about a span becomes that span again,
    and metadata keys with a dot (attributes it kept as they came) become those attributes again.
    """
    session = session or {}
    metadata = event.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}  # read only
    session_id = str(event.get("session_id") or session.get("session_id") or "")
    event_id = str(event["event_id"])
    trace_id = metadata.get("otel.trace_id") or trace_id_for(session_id or event_id)
    span_id = metadata.get("otel.span_id") or span_id_for(event_id)
    attributes: dict[str, Any] = {
        "honeyhive_event_type": event.get("event_type") or "tool",
        "honeyhive_event_name": event.get("event_name") or "unknown",
    }
    if session_id:
        attributes["honeyhive.session_id"] = session_id
    if event_id != event_id_for(trace_id, span_id):
        attributes["honeyhive_event_id"] = event_id
    parent_id = event.get("parent_id")
    parent_span_id = ""
    if parent_id and parent_id != session_id:
        parent_span_id = span_id_for(str(parent_id))
        if parent_id != event_id_for(trace_id, parent_span_id):
            attributes["honeyhive_parent_id"] = parent_id
    for name, key in (("source", "honeyhive.source"), ("project", "honeyhive.project")):
        value = event.get(name) or session.get(name)
        if value:
            attributes[key] = value
    if session.get("session_name"):
        attributes["honeyhive.session_name"] = session["session_name"]
    error = event.get("error")
    if error:
        attributes["honeyhive_error"] = error
    for name in _schema.BUCKETS:
        value = metadata if name == "metadata" else event.get(name)
        if not isinstance(value, dict) or not value:
            continue
        if json_buckets and not any("." in key for key in value):  # nothing to take out: no copy
            attributes[f"honeyhive_{name}"] = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
            continue
        shown = dict(value)
        if name == "metadata":
            for key in list(shown):
                if key in _SPAN_METADATA:
                    del shown[key]
                elif "." in key:  # an attribute span_to_event kept as it came (``http.method``): as it came
                    _flatten(key, shown.pop(key), attributes)
        if shown and json_buckets:
            attributes[f"honeyhive_{name}"] = orjson.dumps(shown, option=orjson.OPT_NON_STR_KEYS).decode()
        elif shown:
            _flatten(f"honeyhive_{name}", shown, attributes)
    start_ms = event.get("start_time")
    start = int(start_ms * 1_000_000) if isinstance(start_ms, (int, float)) else 0
    duration = event.get("duration")
    if isinstance(duration, (int, float)):
        end = start + round(duration * 1_000_000)
    else:
        end_ms = event.get("end_time")
        end = int(end_ms * 1_000_000) if isinstance(end_ms, (int, float)) else start
    events = [
        SpanEvent(str(e.get("name", "")), int(e.get("time_unix_nano", 0)), dict(e.get("attributes") or {}))
        for e in metadata.get("otel.events") or []
        if isinstance(e, dict)
    ]
    return Span(
        trace_id=str(trace_id),
        span_id=str(span_id),
        parent_span_id=parent_span_id,
        name=str(event.get("event_name") or "unknown"),
        kind=int(metadata.get("otel.span_kind", _default_kind(str(event.get("event_type"))))),
        start_time_unix_nano=start,
        end_time_unix_nano=max(end, start),
        attributes=attributes,
        events=events,
        status_code=STATUS_ERROR if error else STATUS_UNSET,
        status_message=str(error or ""),
        resource=dict(resource or metadata.get("otel.resource") or {}),
        scope_name=str(metadata.get("otel.scope", "")),
    )
