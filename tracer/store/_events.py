"""Pure helpers on wire-shape events: the columns the store indexes, and merging updates."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from .. import _schema

__all__ = [
    "BUCKETS",
    "EventColumns",
    "event_columns",
    "event_error",
    "merge_session_properties",
    "merge_update",
    "token_counts",
]

#: The object-valued fields of an event (``PUT /events`` merges these key by key).
BUCKETS: Final = _schema.BUCKETS
# Fields of an update that replace the event's value outright.
_REPLACED: Final = _schema.UPDATE_REPLACED

#: event_id, session_id, parent_id, event_type, event_name, start_time, end_time, duration, error,
#: model, prompt_tokens, completion_tokens, total_tokens
EventColumns = tuple[
    str, str, str | None, str, str, int | None, int | None, float | None, str | None, str | None,
    int | None, int | None, int | None,
]  # fmt: skip


# SQLite's INTEGER is 64-bit: a larger number in an indexed column would fail the whole write
# (OverflowError), so a column gets NULL instead; the event's JSON keeps the value as sent.
_INT64_MAX: Final = 2**63 - 1


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any double
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _number(value)
    if number is None or not -_INT64_MAX <= number <= _INT64_MAX:
        return None
    return int(number)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def event_error(event: Mapping[str, Any]) -> str | None:
    """The event's error text: ``error``, or ``metadata.error`` (where a late error is folded)."""
    error = _text(event.get("error"))
    if error is None:
        metadata = event.get("metadata")
        if isinstance(metadata, dict):
            error = _text(metadata.get("error"))
    return error


def token_counts(event: Mapping[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(prompt, completion, total) tokens from ``metadata`` (``input_tokens``/``output_tokens`` too)."""
    metadata = event.get("metadata")
    if not isinstance(metadata, dict):
        return None, None, None
    prompt = _int(metadata.get("prompt_tokens"))
    if prompt is None:
        prompt = _int(metadata.get("input_tokens"))
    completion = _int(metadata.get("completion_tokens"))
    if completion is None:
        completion = _int(metadata.get("output_tokens"))
    total = _int(metadata.get("total_tokens"))
    if total is None and (prompt is not None or completion is not None):
        total = (prompt or 0) + (completion or 0)
    return prompt, completion, total


def event_columns(event: Mapping[str, Any]) -> EventColumns:
    """The indexed columns of a (validated) wire-shape event."""
    config = event.get("config")
    model = _text(config.get("model")) if isinstance(config, dict) else None
    prompt, completion, total = token_counts(event)
    parent = event.get("parent_id")
    return (
        str(event["event_id"]),
        str(event["session_id"]),
        parent if isinstance(parent, str) else None,
        str(event.get("event_type") or "tool"),
        str(event.get("event_name") or "unknown"),
        _int(event.get("start_time")),
        _int(event.get("end_time")),
        _number(event.get("duration")),
        event_error(event),
        model,
        prompt,
        completion,
        total,
    )


def merge_update(event: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a ``PUT /events`` body to an event in place: buckets merged key by key, the rest replaced."""
    for name, value in update.items():
        if name == "event_id" or value is None:
            continue
        if name in BUCKETS and isinstance(value, dict):
            current = event.get(name)
            event[name] = {**current, **value} if isinstance(current, dict) else dict(value)
        elif name in _REPLACED or name in BUCKETS:
            event[name] = value
        else:  # not an event field: kept where HoneyHive keeps unknown attributes
            metadata = event.get("metadata")
            event["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), name: value}
    _keep_times_consistent(event, update)
    return event


def _keep_times_consistent(event: dict[str, Any], update: Mapping[str, Any]) -> None:
    """After an update of ``duration`` or ``end_time``, move the other so that
    ``end_time - start_time == duration`` (within the rounding of ``end_time`` to a millisecond).
    ``duration`` wins when both are given: this library measures it with a monotonic clock."""
    start = _number(event.get("start_time"))
    if start is None:
        return
    duration = _number(update.get("duration"))
    end = _number(update.get("end_time"))
    if duration is not None:
        moved = _int(start + duration)
        if moved is not None:
            event["end_time"] = moved
    elif end is not None:
        end = max(end, start)
        event["end_time"] = _int(end)
        event["duration"] = end - start


def merge_session_properties(current: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge session properties (or a session update) into *current* in place: buckets key by key."""
    for name, value in update.items():
        if value is None or name == "event_id":
            continue
        existing = current.get(name)
        if name in BUCKETS and isinstance(value, dict) and isinstance(existing, dict):
            current[name] = {**existing, **value}
        else:
            current[name] = value
    return current
