"""OTLP/HTTP trace ingest for the collector: ``ExportTraceServiceRequest`` bodies in protobuf
(through the official ``opentelemetry-proto`` package) or JSON, to encoding-free ``Span`` objects,
then to HoneyHive events with ``tracer._otlp_mapping``; and the answers, in the client's encoding.

A body that cannot be decoded, or whose ids are not ids (not hex, wrong length, all zeros), is
refused whole (400, per the OTLP/HTTP spec); a span that decodes but cannot be stored (an event the
collector would refuse, say an over-long ``honeyhive_event_id``) is counted in ``partialSuccess``
with the first reason, and the others are stored.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import orjson

from .._otlp_mapping import STATUS_UNSET, Span, SpanEvent, span_to_event
from ._body import ApiError, parse_json
from ._wire import BadRequest, normalize_event

__all__ = ["JSON", "MEDIA_TYPES", "PROTOBUF", "Ingested", "error_body", "ingest", "success_body"]

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
MEDIA_TYPES: Final = (PROTOBUF, JSON)
# AnyValue nesting deeper than this is refused: real attributes are flat or nearly so, and the
# decoder recurses (Python's own limit is 1,000 frames).
_MAX_DEPTH: Final = 32
_SPAN_KINDS: Final = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES: Final = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_INVALID_ARGUMENT: Final = 3  # google.rpc.Code


# Events are stored this many at a time, so that a request of 100,000 spans never holds them all
# as events (measured: 100,000 small spans held at once peaked the collector at 336 MB RSS).
_WRITE_CHUNK: Final = 2000

#: Stores a chunk of events and the session properties they name.
Writer = Callable[[list[dict[str, Any]], dict[str, dict[str, Any]]], None]


@dataclasses.dataclass
class Ingested:
    """What a request brought: how many spans were stored, how many refused and the first reason."""

    stored: int = 0
    rejected: int = 0
    reason: str = ""


def ingest(data: bytes, media: str, write: Writer) -> Ingested:
    """Decode an ``ExportTraceServiceRequest`` body, map its spans to events and *write* them in
    chunks (run off the loop). The whole body is checked before anything is written: a request
    refused with 400 stored nothing."""
    spans = _decode_protobuf(data) if media == PROTOBUF else _decode_json(data)
    result = Ingested()
    events: list[dict[str, Any]] = []
    sessions: dict[str, dict[str, Any]] = {}
    for where, span in spans:
        try:
            event, session = span_to_event(span)
            event = normalize_event(event, where)
        except BadRequest as exc:
            result.rejected += 1
            result.reason = result.reason or str(exc)
            continue
        events.append(event)
        sid = event["session_id"]
        known = sessions.get(sid)
        sessions[sid] = session if known is None else {**session, **known}
        if len(events) >= _WRITE_CHUNK:
            write(events, sessions)
            result.stored += len(events)
            events, sessions = [], {}
    if events:
        write(events, sessions)
        result.stored += len(events)
    return result


def success_body(result: Ingested, media: str) -> bytes:
    """An ``ExportTraceServiceResponse``; ``partialSuccess`` when spans were refused."""
    if media == PROTOBUF:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        response = ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.rejected_spans = result.rejected
            response.partial_success.error_message = result.reason
        return bytes(response.SerializeToString())
    if not result.rejected:
        return b"{}"
    return orjson.dumps({"partialSuccess": {"rejectedSpans": result.rejected, "errorMessage": result.reason}})


def error_body(message: str) -> bytes:
    """A ``google.rpc.Status`` (code INVALID_ARGUMENT, *message*) in protobuf, encoded by hand: the
    OTLP/HTTP error body for protobuf clients, without a dependency on googleapis-common-protos."""
    text = message.encode()
    return b"\x08" + _varint(_INVALID_ARGUMENT) + b"\x12" + _varint(len(text)) + text


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# -- protobuf ----------------------------------------------------------------------------------------


def _decode_protobuf(data: bytes) -> Iterator[tuple[str, Span]]:
    """The spans of a protobuf body, made one at a time once every id is checked (400 otherwise)."""
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    except ImportError:  # pragma: no cover - the server extra installs it
        raise ApiError(415, "OTLP/protobuf needs the opentelemetry-proto package; send application/json") from None
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError (or RecursionError): any undecodable body
        raise ApiError(400, f"invalid OTLP/protobuf body: {exc}") from None
    for r, resource_spans in enumerate(request.resource_spans):
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for n, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                _pb_id(span.trace_id, 16, f"{where}.traceId")
                _pb_id(span.span_id, 8, f"{where}.spanId")
                _pb_id(span.parent_span_id, 8, f"{where}.parentSpanId", optional=True)
    return _pb_spans(request)


def _pb_spans(request: Any) -> Iterator[tuple[str, Span]]:
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _pb_attributes(resource_spans.resource.attributes, f"resourceSpans[{r}].resource")
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope.name
            for n, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                yield (
                    where,
                    Span(
                        trace_id=_pb_id(span.trace_id, 16, f"{where}.traceId"),
                        span_id=_pb_id(span.span_id, 8, f"{where}.spanId"),
                        parent_span_id=_pb_id(span.parent_span_id, 8, f"{where}.parentSpanId", optional=True),
                        name=span.name,
                        kind=span.kind,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        attributes=_pb_attributes(span.attributes, where),
                        events=[
                            SpanEvent(e.name, e.time_unix_nano, _pb_attributes(e.attributes, f"{where}.events[{i}]"))
                            for i, e in enumerate(span.events)
                        ],
                        status_code=span.status.code,
                        status_message=span.status.message,
                        resource=resource,
                        scope_name=scope,
                    ),
                )


def _pb_id(raw: bytes, size: int, where: str, optional: bool = False) -> str:
    if optional and not raw:
        return ""
    if len(raw) != size or not raw.strip(b"\0"):
        raise ApiError(400, f"{where} must be {size} bytes, not all zero (got {len(raw)} bytes)")
    return raw.hex()


def _pb_attributes(pairs: Any, where: str) -> dict[str, Any]:
    return {pair.key: _pb_value(pair.value, where, 0) for pair in pairs}


def _pb_value(value: Any, where: str, depth: int) -> Any:
    # No depth check: protobuf's parser refuses messages nested deeper than 100, within Python's stack.
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(item, where, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {pair.key: _pb_value(pair.value, where, depth + 1) for pair in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


# -- JSON ----------------------------------------------------------------------------------------------


def _field(message: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = message.get(camel)
    return message.get(snake) if value is None else value


def _list(message: Mapping[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = _field(message, camel, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, f"{where}.{camel} must be an array")
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"{where} must be an object")
    return value


def _decode_json(data: bytes) -> Iterator[tuple[str, Span]]:
    body = parse_json(data)
    if not isinstance(body, dict):
        raise ApiError(400, "an OTLP/JSON body must be an object {resourceSpans: [...]}")
    # Decoded whole before any span is mapped: a bad span late in the body refuses the request.
    spans = list(_json_spans(body))
    return iter(spans)


def _json_spans(body: Mapping[str, Any]) -> Iterator[tuple[str, Span]]:
    for r, resource_spans in enumerate(_list(body, "resourceSpans", "resource_spans", "body")):
        here = f"resourceSpans[{r}]"
        resource_spans = _object(resource_spans, here)
        resource_message = _object(resource_spans.get("resource"), f"{here}.resource")
        resource = _json_attributes(resource_message, f"{here}.resource")
        scopes = _list(resource_spans, "scopeSpans", "scope_spans", here)
        scopes += _list(resource_spans, "instrumentationLibrarySpans", "instrumentation_library_spans", here)
        for s, scope_spans in enumerate(scopes):
            there = f"{here}.scopeSpans[{s}]"
            scope_spans = _object(scope_spans, there)
            scope = _object(_field(scope_spans, "scope", "instrumentation_library"), f"{there}.scope")
            scope_name = scope.get("name") or ""
            for n, span in enumerate(_list(scope_spans, "spans", "spans", there)):
                where = f"{there}.spans[{n}]"
                yield where, _json_span(_object(span, where), where, resource, str(scope_name))


def _json_span(span: Mapping[str, Any], where: str, resource: dict[str, Any], scope: str) -> Span:
    status = _object(span.get("status"), f"{where}.status")
    events = []
    for i, item in enumerate(_list(span, "events", "events", where)):
        here = f"{where}.events[{i}]"
        item = _object(item, here)
        events.append(
            SpanEvent(
                str(item.get("name") or ""),
                _json_uint(_field(item, "timeUnixNano", "time_unix_nano"), f"{here}.timeUnixNano"),
                _json_attributes(item, here),
            )
        )
    name = span.get("name", "")
    if not isinstance(name, str):
        raise ApiError(400, f"{where}.name must be a string")
    return Span(
        trace_id=_json_id(_field(span, "traceId", "trace_id"), 16, f"{where}.traceId"),
        span_id=_json_id(_field(span, "spanId", "span_id"), 8, f"{where}.spanId"),
        parent_span_id=_json_id(_field(span, "parentSpanId", "parent_span_id"), 8, f"{where}.parentSpanId", True),
        name=name,
        kind=_json_enum(span.get("kind"), _SPAN_KINDS, f"{where}.kind"),
        start_time_unix_nano=_json_uint(_field(span, "startTimeUnixNano", "start_time_unix_nano"), f"{where}.start"),
        end_time_unix_nano=_json_uint(_field(span, "endTimeUnixNano", "end_time_unix_nano"), f"{where}.end"),
        attributes=_json_attributes(span, where),
        events=events,
        status_code=_json_enum(status.get("code", STATUS_UNSET), _STATUS_CODES, f"{where}.status.code"),
        status_message=str(status.get("message") or ""),
        resource=resource,
        scope_name=scope,
    )


def _json_id(value: Any, size: int, where: str, optional: bool = False) -> str:
    """A trace or span id: hex in OTLP/JSON (spec), lower-cased."""
    if optional and (value is None or value == ""):
        return ""
    text = value.lower() if isinstance(value, str) else ""
    if len(text) != 2 * size or text.strip("0123456789abcdef") or not text.strip("0"):
        raise ApiError(400, f"{where} must be {2 * size} hex digits, not all zero; got {value!r}")
    return text


def _json_uint(value: Any, where: str) -> int:
    """A fixed64 (a decimal string or a number in OTLP/JSON)."""
    if value is None:
        return 0
    if isinstance(value, str) and value.isdigit():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise ApiError(400, f"{where}UnixNano must be a whole number of nanoseconds, got {value!r}")
    if not 0 <= number < 2**64:
        raise ApiError(400, f"{where}UnixNano is out of range: {value!r}")
    return number


def _json_enum(value: Any, names: Mapping[str, int], where: str) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None:
        return 0
    raise ApiError(400, f"{where} must be one of {', '.join(names)} or a number, got {value!r}")


def _json_attributes(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    return _json_pairs(_list(message, "attributes", "attributes", where), f"{where}.attributes", 0)


def _json_pairs(pairs: list[Any], where: str, depth: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for index, pair in enumerate(pairs):
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str):
            raise ApiError(400, f"{where}[{index}] must be {{key, value}} with a string key")
        result[pair["key"]] = _json_value(pair.get("value"), f"{where}[{index}].value", depth)
    return result


_SCALARS: Final[dict[str, Callable[[Any], bool]]] = {
    "stringValue": lambda v: isinstance(v, str),
    "boolValue": lambda v: isinstance(v, bool),
    # A number, or (proto3 JSON) "NaN" / "Infinity" / "-Infinity", kept as that text.
    "doubleValue": lambda v: isinstance(v, (int, float, str)) and not isinstance(v, bool),
}


def _json_value(value: Any, where: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ApiError(400, f"{where}: attribute values nested more than {_MAX_DEPTH} deep")
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise ApiError(400, f"{where} must be an AnyValue object with one field (stringValue, intValue, …)")
    [(kind, item)] = value.items()
    check = _SCALARS.get(kind)
    if check is not None:
        if not check(item):
            raise ApiError(400, f"{where}.{kind} has the wrong type: {item!r}")
        return item
    if kind == "intValue":
        number = int(item) if isinstance(item, str) and item.lstrip("-").isdigit() else item
        if not isinstance(number, int) or isinstance(number, bool):
            raise ApiError(400, f"{where}.intValue must be an integer, got {item!r}")
        return number if -(2**63) <= number < 2**63 else str(item)  # beyond int64: kept as its text
    if kind == "arrayValue":
        values = _list(_object(item, f"{where}.arrayValue"), "values", "values", f"{where}.arrayValue")
        return [_json_value(v, f"{where}.arrayValue.values[{i}]", depth + 1) for i, v in enumerate(values)]
    if kind == "kvlistValue":
        values = _list(_object(item, f"{where}.kvlistValue"), "values", "values", f"{where}.kvlistValue")
        return _json_pairs(values, f"{where}.kvlistValue.values", depth + 1)
    if kind == "bytesValue":
        if not isinstance(item, str):
            raise ApiError(400, f"{where}.bytesValue must be base64 text")
        return item
    raise ApiError(400, f"{where}: unknown AnyValue field {kind!r}")
