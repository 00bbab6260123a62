"""The OTLP/protobuf encoding as the exporter wrote it before the hand-written writer: built with the
official ``opentelemetry-proto`` message classes (upb). Kept here as the reference the hand-written
writers (``tracer/exporters/_protobuf.py``, ``_otlp_fast.py``) are compared against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from tracer.exporters._otlp_codec import ResourceSpans, _within_count, truncate_text

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1


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


def reference_protobuf(groups: Sequence[ResourceSpans], max_length: int, max_count: int) -> bytes:
    """An ``ExportTraceServiceRequest`` built with the official message classes."""
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
