"""OTLP trace requests from ``_otlp_mapping.Span`` objects: OTLP/JSON (orjson) and OTLP/protobuf.

OTLP/JSON follows the spec's JSON rules (opentelemetry-proto's ``docs/specification.md``): trace
and span ids as lower-case hex (not base64), 64-bit integers (times, ``intValue``) as decimal
strings, enums (span kind, status code) as integers, camelCase field names, default values left
out. OTLP/protobuf builds the official message classes of ``opentelemetry-proto`` (the ``otlp``
extra), imported only when that protocol is used.

Both apply the attribute limits backends enforce: a string value longer than ``max_length`` keeps
its head and tail around the same ``…[truncated: N chars in total]…`` marker the events use, and
past ``max_count`` attributes the rest are dropped and counted in ``droppedAttributesCount``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from .._otlp_mapping import Span

__all__ = ["ResourceSpans", "decode_partial_success", "encode_json", "encode_protobuf", "truncate_text"]

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1


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


def _pb_any(target: Any, value: Any, max_length: int) -> None:
    if type(value) is str:  # most values: checked first
        target.string_value = value if len(value) <= max_length else truncate_text(value, max_length)
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if _I64_MIN <= value <= _I64_MAX:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = truncate_text(value, max_length)
    elif isinstance(value, (list, tuple)):
        values = target.array_value.values
        for item in value:
            _pb_any(values.add(), item, max_length)
        if not value:
            target.array_value.SetInParent()
    elif isinstance(value, dict):
        pairs = target.kvlist_value.values
        for key, item in value.items():
            pair = pairs.add(key=str(key))
            _pb_any(pair.value, item, max_length)
        if not value:
            target.kvlist_value.SetInParent()
    else:
        target.string_value = truncate_text(str(value), max_length)


def _pb_attributes(target: Any, attributes: Mapping[str, Any], max_length: int) -> None:
    add = target.add
    for key, value in attributes.items():
        if value is not None:
            _pb_any(add(key=key).value, value, max_length)


def encode_protobuf(groups: Sequence[ResourceSpans], max_length: int, max_count: int) -> bytes:
    """An ``ExportTraceServiceRequest`` in OTLP/protobuf (needs the ``otlp`` extra)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    for group in groups:
        resource_spans = request.resource_spans.add()
        _pb_attributes(resource_spans.resource.attributes, group.resource, max_length)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = group.scope_name
        scope_spans.scope.version = group.scope_version
        spans = scope_spans.spans
        for span in group.spans:
            attributes, dropped = _within_count(span.attributes, max_count)
            message = spans.add(
                trace_id=bytes.fromhex(span.trace_id),
                span_id=bytes.fromhex(span.span_id),
                name=span.name,
                kind=span.kind,
                start_time_unix_nano=span.start_time_unix_nano,
                end_time_unix_nano=span.end_time_unix_nano,
                dropped_attributes_count=dropped,
            )
            if span.parent_span_id:
                message.parent_span_id = bytes.fromhex(span.parent_span_id)
            _pb_attributes(message.attributes, attributes, max_length)
            for event in span.events:
                added = message.events.add(time_unix_nano=event.time_unix_nano, name=event.name)
                _pb_attributes(added.attributes, _within_count(event.attributes, max_count)[0], max_length)
            if span.status_code:
                message.status.code = span.status_code
                message.status.message = truncate_text(span.status_message, max_length)
    data: bytes = request.SerializeToString()
    return data


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
