"""Validating and normalizing HoneyHive events-API bodies (no web framework needed here).

Accepts what HoneyHive's legacy routes accept, fills the defaults its server fills (ids, parent =
session, ``"unknown"`` names, times), and rejects wrong types with a message naming the field.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

import orjson

from .. import _schema

__all__ = [
    "BadRequest",
    "normalize_batch",
    "normalize_event",
    "normalize_model_event",
    "normalize_session",
    "normalize_update",
    "session_event",
    "session_from_event",
    "unwrap",
]

EVENT_TYPES: Final = tuple(sorted((*_schema.EVENT_TYPES, _schema.SESSION_TYPE)))
BUCKETS: Final = _schema.BUCKETS
_ID_FIELDS: Final = ("event_id", "session_id", "parent_id")
_TEXT_FIELDS: Final = ("event_name", "source", "project")
_UPDATE_FIELDS: Final = _schema.UPDATE_FIELDS | {"children_ids"}
_MAX_ID: Final = 256
_MAX_EVENTS: Final = 100_000
# Times and durations are milliseconds; beyond 2**53 a number is no longer exact as a double (what
# JSON clients hold) and past SQLite's 64-bit INTEGER far sooner than that matters: 2**53 ms is
# 285,000 years. Out of range is a client bug, answered 400 naming the field.
MAX_MS: Final = float(2**53)


class BadRequest(ValueError):
    """An invalid body: answered with HTTP 400 and this message."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise BadRequest(message)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_id() -> str:
    return str(uuid.uuid4())


def unwrap(value: Any, where: str) -> dict[str, Any]:
    """An object, or a JSON-encoded object (the OpenAPI 1.1 spelling of ``event`` / ``session``)."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadRequest(f"{where} must be an object (or a JSON-encoded object)") from None
    _require(isinstance(value, dict), f"{where} must be an object")
    return dict(value)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        f"{where} must be a number (epoch milliseconds / milliseconds)",
    )
    _require(-MAX_MS <= value <= MAX_MS, f"{where} is out of range (at most 2**53 milliseconds): {value!r}")
    return float(value)


def _id(value: Any, where: str) -> str | None:
    if value is None:
        return None
    _require(isinstance(value, str) and 0 < len(value.strip()) <= _MAX_ID, f"{where} must be a non-empty string id")
    return str(value).strip()


def _bucket(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    _require(isinstance(value, dict), f"{where} must be an object")
    return dict(value)


def normalize_event(value: Any, where: str = "event", *, session_id: str | None = None) -> dict[str, Any]:
    """A complete wire-shape event from a client's, with HoneyHive's server-side defaults.

    *session_id* (a single-session batch) overrides the event's own session.
    """
    event = unwrap(value, where)
    event_type = event.get("event_type")
    _require(
        isinstance(event_type, str) and event_type in EVENT_TYPES,
        f"{where}.event_type must be one of {', '.join(EVENT_TYPES)}",
    )
    for name in _ID_FIELDS:
        event[name] = _id(event.get(name), f"{where}.{name}")
    for name in _TEXT_FIELDS:
        text = event.get(name)
        _require(text is None or isinstance(text, str), f"{where}.{name} must be a string")
    for name in BUCKETS:
        event[name] = _bucket(event.get(name), f"{where}.{name}")
    error = event.get("error")
    _require(error is None or isinstance(error, str), f"{where}.error must be a string or null")
    children = event.get("children_ids")
    _require(
        children is None or (isinstance(children, list) and all(isinstance(c, str) for c in children)),
        f"{where}.children_ids must be an array of strings",
    )
    start = _number(event.get("start_time"), f"{where}.start_time")
    end = _number(event.get("end_time"), f"{where}.end_time")
    duration = _number(event.get("duration"), f"{where}.duration")
    _require(duration is None or duration >= 0, f"{where}.duration must not be negative")
    if start is None and end is None:
        end = float(_now_ms())
    if start is None:
        assert end is not None
        start = end - (duration or 0.0)
    if end is None:
        end = start + (duration or 0.0)
    _require(end >= start, f"{where}.end_time is before start_time")
    sid = session_id or event["session_id"]
    if event_type == "session":
        sid = sid or event["event_id"]
    sid = sid or _new_id()
    event_id = event["event_id"] or (sid if event_type == "session" else _new_id())
    event.update(
        event_id=event_id,
        session_id=sid,
        parent_id=event["parent_id"] or (None if event_type == "session" else sid),
        event_name=event.get("event_name") or "unknown",
        source=event.get("source") or "unknown",
        children_ids=children or [],
        error=error,
        start_time=int(start),
        end_time=int(end),
        duration=duration if duration is not None else end - start,
    )
    if event.get("project") is None:
        event.pop("project", None)
    return event


def session_from_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The session properties carried by an ``event_type: "session"`` event."""
    props: dict[str, Any] = {
        "session_id": event["session_id"],
        "session_name": event["event_name"],
        "source": event["source"],
        "start_time": event["start_time"],
    }
    for name in BUCKETS:
        if event.get(name):
            props[name] = event[name]
    if event.get("error"):
        props["error"] = event["error"]
    return props


def normalize_session(value: Any, where: str = "session") -> dict[str, Any]:
    """Session properties (``/session/start`` body or a batch's ``session_properties``)."""
    props = unwrap(value, where)
    props["session_id"] = _id(props.get("session_id"), f"{where}.session_id") or _new_id()
    for name in ("session_name", "source", "project"):
        text = props.get(name)
        _require(text is None or isinstance(text, str), f"{where}.{name} must be a string")
        if text is None:
            props.pop(name, None)
    for name in BUCKETS:
        if props.get(name) is not None:
            props[name] = _bucket(props[name], f"{where}.{name}")
    for name in ("start_time", "end_time", "duration"):
        _number(props.get(name), f"{where}.{name}")
    error = props.get("error")
    _require(error is None or isinstance(error, str), f"{where}.error must be a string or null")
    return props


def normalize_batch(body: Any, key: str = "events") -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """``POST /events/batch``: the events, and session properties by session id.
    ``key="model_events"``: ``POST /events/model/batch``, model events as ``/events/model`` takes them."""
    _require(isinstance(body, dict), "body must be a JSON object")
    events = body.get(key)
    _require(isinstance(events, list) and bool(events), f"{key} must be a non-empty array")
    _require(len(events) <= _MAX_EVENTS, f"{key} must hold at most {_MAX_EVENTS} events")
    normalize = normalize_model_event if key == "model_events" else normalize_event
    single = body.get("is_single_session", body.get("single_session", False))
    _require(isinstance(single, bool), "is_single_session must be a boolean")
    raw_props = body.get("session_properties", body.get("session"))
    props: dict[str, Any] | None = None
    given: str | None = None
    if raw_props is not None:
        props = unwrap(raw_props, "session_properties")
        given = _id(props.get("session_id"), "session_properties.session_id")
        props = normalize_session(props, "session_properties")
    shared: str | None = None
    if single:
        first = events[0].get("session_id") if isinstance(events[0], dict) else None
        shared = given or _id(first, f"{key}[0].session_id") or _new_id()
    normalized = [normalize(event, f"{key}[{index}]", session_id=shared) for index, event in enumerate(events)]
    sessions: dict[str, dict[str, Any]] = {}
    if props is not None:
        sid = shared or given or normalized[0]["session_id"]
        props["session_id"] = sid
        sessions[sid] = props
    return normalized, sessions


def normalize_update(body: Any) -> dict[str, Any]:
    """``PUT /events``: an update naming ``event_id``; never ``inputs``; buckets are objects."""
    _require(isinstance(body, dict), "body must be a JSON object")
    update = dict(body)
    update["event_id"] = _id(update.get("event_id"), "event_id")
    _require(update["event_id"] is not None, "event_id is required")
    _require("inputs" not in update, "inputs cannot be updated (send them in metadata)")
    unknown = sorted(set(update) - _UPDATE_FIELDS)
    _require(not unknown, f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(_UPDATE_FIELDS))}")
    for name in BUCKETS:
        if name in update and update[name] is not None:
            _require(isinstance(update[name], dict), f"{name} must be an object")
    for name in ("duration", "end_time"):
        _number(update.get(name), name)
    children = update.get("children_ids")
    _require(
        children is None or (isinstance(children, list) and all(isinstance(c, str) for c in children)),
        "children_ids must be an array of strings",
    )
    return update


# ``POST /events/model``: HoneyHive's model-event fields, and where its legacy route stores them.
_MODEL_CONFIG_FIELDS: Final = ("model", "provider", "template", "tools", "tool_choice", "response_format")
_EVENT_FIELDS: Final = frozenset(
    {*_ID_FIELDS, *_TEXT_FIELDS, *BUCKETS, "event_type", "error", "children_ids", "start_time", "end_time", "duration"}
)


def normalize_model_event(value: Any, where: str = "model_event", *, session_id: str | None = None) -> dict[str, Any]:
    """A model event (``model, provider, messages, response, usage, cost, hyperparameters, …``) as
    a wire-shape ``model`` event: ``config`` gets model, provider, hyperparameters, template, tools;
    ``inputs.chat_history`` the messages (``template_inputs`` the other inputs); ``outputs`` the
    response; ``metadata`` the usage counts, the cost and any field HoneyHive does not define."""
    source = unwrap(value, where)
    event: dict[str, Any] = {"event_type": "model"}
    config: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for name, item in source.items():
        if item is None:
            continue
        if name in _MODEL_CONFIG_FIELDS:
            config[name] = item
        elif name == "hyperparameters":
            config.update(_bucket(item, f"{where}.hyperparameters"))
        elif name == "messages":
            _require(isinstance(item, list), f"{where}.messages must be an array of messages")
            inputs["chat_history"] = item
        elif name == "template_inputs":
            inputs.update(_bucket(item, f"{where}.template_inputs"))
        elif name == "response":
            event["outputs"] = _bucket(item, f"{where}.response")
        elif name == "usage":
            metadata.update(_bucket(item, f"{where}.usage"))
        elif name == "cost":
            _number(item, f"{where}.cost")
            metadata["cost"] = item
        elif name == "event_type":
            _require(item == "model", f"{where}.event_type must be model")
        elif name in _EVENT_FIELDS:
            event[name] = item
        else:
            metadata[name] = item
    for bucket, extra in (("config", config), ("inputs", inputs), ("metadata", metadata)):
        if extra:
            given = _bucket(event.get(bucket), f"{where}.{bucket}")
            event[bucket] = {**extra, **given}
    return normalize_event(event, where, session_id=session_id)


#: What ``/session/start`` and ``GET /session/{id}`` name the organization, workspace and (without
#: a project name) project: HoneyHive's 1.x client requires these ids; a local store has none.
LOCAL_ID: Final = "local"


def session_event(
    props: Mapping[str, Any],
    *,
    start_time: int,
    end_time: int | None,
    duration: float | None,
    children_ids: list[str],
    project: str | None,
    aggregates: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A session as HoneyHive answers it: an ``event_type: "session"`` event whose id is the
    session id, with the org/workspace/project ids HoneyHive's 1.x client requires."""
    session_id = str(props["session_id"])
    event: dict[str, Any] = {
        "event_id": session_id,
        "session_id": session_id,
        "parent_id": None,
        "children_ids": children_ids,
        "event_type": "session",
        "event_name": props.get("session_name") or "unknown",
        "source": props.get("source") or "unknown",
        "error": props.get("error"),
        "start_time": start_time,
        "end_time": end_time if end_time is not None else start_time,
        "duration": duration if duration is not None else 0.0,
        "org_id": LOCAL_ID,
        "workspace_id": LOCAL_ID,
        "project_id": project or LOCAL_ID,
    }
    for name in BUCKETS:
        value = props.get(name)
        event[name] = dict(value) if isinstance(value, dict) else {}
    if aggregates:
        event["metadata"] = {**aggregates, **event["metadata"]}
    return event
