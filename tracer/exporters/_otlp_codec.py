"""OTLP trace requests from ``_otlp_mapping.Span`` objects: OTLP/JSON (orjson) and OTLP/protobuf.

OTLP/JSON follows the spec's JSON rules (opentelemetry-proto's ``docs/specification.md``): trace
and span ids as lower-case hex (not base64), 64-bit integers (times, ``intValue``) as decimal
strings, enums (span kind, status code) as integers, camelCase field names, default values left
out. OTLP/protobuf is written by hand (``_protobuf``: the wire format, trace.proto's field numbers);
the events of a batch that ``_otlp_fast`` writes straight from their JSON pieces do not come here.

Both apply the attribute limits backends enforce: a string value longer than ``max_length`` keeps
its head and tail around the same ``…[truncated: N chars in total]…`` marker the events use, and
past ``max_count`` attributes the rest are dropped and counted in ``droppedAttributesCount``.
"""

from __future__ import annotations

import dataclasses
import importlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from .._otlp_mapping import Span
from ._protobuf import attributes as encode_attributes
from ._protobuf import length_delimited, varint

__all__ = [
    "ResourceSpans",
    "decode_partial_success",
    "encode_json",
    "encode_protobuf",
    "resource_message",
    "resource_spans_field",
    "scope_field",
    "span_message",
    "truncate_text",
]

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_U64: Final = 2**64 - 1
_FIXED64: Final = struct.Struct("<Q")


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceSpans:
    """The spans of one resource (one service and environment) and the scope that made them."""

    resource: Mapping[str, Any]
    spans: Sequence[Span]
    scope_name: str
    scope_version: str


def truncate_text(text: str, max_length: int) -> str:
    """*text* cut to about *max_length* characters, head and tail kept around the events' marker."""
    if len(text) <= max_length:
        return text
    head = max_length // 2
    tail = max_length - head
    return f"{text[:head]}…[truncated: {len(text)} chars in total]…{text[len(text) - tail :]}"


# -- OTLP/JSON -------------------------------------------------------------------------------------


def _json_any(value: Any, max_length: int) -> dict[str, Any]:
    if type(value) is str:  # most values: checked first
        return {"stringValue": value if len(value) <= max_length else truncate_text(value, max_length)}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if _I64_MIN <= value <= _I64_MAX:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):  # JSON has no NaN or infinity
            return {"stringValue": str(value)}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": truncate_text(value, max_length)}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_json_any(item, max_length) for item in value]}}
    if isinstance(value, dict):
        return {
            "kvlistValue": {"values": [{"key": str(k), "value": _json_any(v, max_length)} for k, v in value.items()]}
        }
    return {"stringValue": truncate_text(str(value), max_length)}


def _json_attributes(attributes: Mapping[str, Any], max_length: int) -> list[dict[str, Any]]:
    return [
        {"key": key, "value": _json_any(value, max_length)} for key, value in attributes.items() if value is not None
    ]


def _within_count(attributes: Mapping[str, Any], max_count: int) -> tuple[Mapping[str, Any], int]:
    """*attributes* cut to *max_count* (the first ones kept), and how many were dropped."""
    if len(attributes) <= max_count:  # nearly always: no copy
        return attributes, 0
    present = [(key, value) for key, value in attributes.items() if value is not None]
    return dict(present[:max_count]), max(len(present) - max_count, 0)


def _json_span(span: Span, max_length: int, max_count: int) -> dict[str, Any]:
    attributes, dropped = _within_count(span.attributes, max_count)
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": str(span.start_time_unix_nano),
        "endTimeUnixNano": str(span.end_time_unix_nano),
        "attributes": _json_attributes(attributes, max_length),
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    if dropped:
        out["droppedAttributesCount"] = dropped
    if span.events:
        out["events"] = [
            {
                "timeUnixNano": str(event.time_unix_nano),
                "name": event.name,
                "attributes": _json_attributes(_within_count(event.attributes, max_count)[0], max_length),
            }
            for event in span.events
        ]
    if span.status_code:
        status: dict[str, Any] = {"code": span.status_code}
        if span.status_message:
            status["message"] = truncate_text(span.status_message, max_length)
        out["status"] = status
    return out


def encode_json(groups: Sequence[ResourceSpans], max_length: int, max_count: int) -> bytes:
    """An ``ExportTraceServiceRequest`` in OTLP/JSON."""
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": _json_attributes(group.resource, max_length)},
                    "scopeSpans": [
                        {
                            "scope": {"name": group.scope_name, "version": group.scope_version},
                            "spans": [_json_span(span, max_length, max_count) for span in group.spans],
                        }
                    ],
                }
                for group in groups
            ]
        }
    )


# -- OTLP/protobuf ---------------------------------------------------------------------------------


def protobuf_available() -> bool:
    """True when ``opentelemetry-proto`` (the ``otlp`` extra) can be imported."""
    try:
        importlib.import_module("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    except ImportError:
        return False
    return True


def span_message(span: Span, max_length: int, max_count: int) -> bytes:
    """A ``Span`` message's contents (trace.proto's field numbers, in their order)."""
    attributes, dropped = _within_count(span.attributes, max_count)
    parts = [
        length_delimited(b"\x0a", bytes.fromhex(span.trace_id)),  # trace_id = 1
        length_delimited(b"\x12", bytes.fromhex(span.span_id)),  # span_id = 2
    ]
    if span.parent_span_id:
        parts.append(length_delimited(b"\x22", bytes.fromhex(span.parent_span_id)))  # parent_span_id = 4
    if span.name:
        parts.append(length_delimited(b"\x2a", span.name.encode()))  # name = 5
    if span.kind:
        parts.append(b"\x30" + varint(span.kind))  # kind = 6
    if span.start_time_unix_nano:
        parts.append(b"\x39" + _FIXED64.pack(span.start_time_unix_nano & _U64))  # start_time_unix_nano = 7
    if span.end_time_unix_nano:
        parts.append(b"\x41" + _FIXED64.pack(span.end_time_unix_nano & _U64))  # end_time_unix_nano = 8
    parts.append(encode_attributes(b"\x4a", attributes, max_length, truncate_text))  # attributes = 9
    if dropped:
        parts.append(b"\x50" + varint(dropped))  # dropped_attributes_count = 10
    for event in span.events:  # events = 11: time_unix_nano = 1, name = 2, attributes = 3
        fields = []
        if event.time_unix_nano:
            fields.append(b"\x09" + _FIXED64.pack(event.time_unix_nano & _U64))
        if event.name:
            fields.append(length_delimited(b"\x12", event.name.encode()))
        event_attributes = _within_count(event.attributes, max_count)[0]
        fields.append(encode_attributes(b"\x1a", event_attributes, max_length, truncate_text))
        parts.append(length_delimited(b"\x5a", b"".join(fields)))
    if span.status_code:  # status = 15: message = 2, code = 3
        message = truncate_text(span.status_message, max_length)
        status = (length_delimited(b"\x12", message.encode()) if message else b"") + b"\x18" + varint(span.status_code)
        parts.append(length_delimited(b"\x7a", status))
    return b"".join(parts)


def scope_field(scope_name: str, scope_version: str) -> bytes:
    """The ``ScopeSpans.scope`` field (an ``InstrumentationScope``: name = 1, version = 2)."""
    scope = (length_delimited(b"\x0a", scope_name.encode()) if scope_name else b"") + (
        length_delimited(b"\x12", scope_version.encode()) if scope_version else b""
    )
    return length_delimited(b"\x0a", scope)


def scope_spans_message(scope_name: str, scope_version: str, spans: Sequence[bytes]) -> bytes:
    """A ``ScopeSpans`` message's contents: the scope, then *spans* (each a ``Span``'s contents)."""
    return scope_field(scope_name, scope_version) + b"".join([length_delimited(b"\x12", span) for span in spans])


def resource_spans_field(resource: bytes, scope_spans: bytes) -> bytes:
    """One ``ExportTraceServiceRequest.resource_spans`` field: *resource* (a ``Resource``'s
    contents, see ``resource_message``) and one ``ScopeSpans``' contents."""
    return length_delimited(b"\x0a", length_delimited(b"\x0a", resource) + length_delimited(b"\x12", scope_spans))


def resource_message(resource: Mapping[str, Any], max_length: int) -> bytes:
    """A ``Resource`` message's contents: its attributes (field 1)."""
    return encode_attributes(b"\x0a", resource, max_length, truncate_text)


def encode_protobuf(groups: Sequence[ResourceSpans], max_length: int, max_count: int) -> bytes:
    """An ``ExportTraceServiceRequest`` in OTLP/protobuf."""
    return b"".join(
        [
            resource_spans_field(
                resource_message(group.resource, max_length),
                scope_spans_message(
                    group.scope_name,
                    group.scope_version,
                    [span_message(span, max_length, max_count) for span in group.spans],
                ),
            )
            for group in groups
        ]
    )


# -- responses -------------------------------------------------------------------------------------


def decode_partial_success(body: bytes, protobuf: bool) -> tuple[int, str]:
    """``partialSuccess.rejectedSpans`` and its ``errorMessage`` from a 2xx response body ((0, "") if none)."""
    if not body:
        return 0, ""
    if protobuf:
        try:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

            response = ExportTraceServiceResponse()
            response.ParseFromString(body)
        except Exception:  # not a protobuf answer (some receivers answer {} or text): nothing rejected
            return 0, ""
        return int(response.partial_success.rejected_spans), str(response.partial_success.error_message)
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0, ""
    partial = decoded.get("partialSuccess") if isinstance(decoded, dict) else None
    if not isinstance(partial, dict):
        return 0, ""
    try:
        rejected = int(partial.get("rejectedSpans") or 0)
    except (TypeError, ValueError):
        rejected = 0
    return max(rejected, 0), str(partial.get("errorMessage") or "")
