"""Turning ended spans into wire-shape event JSON (runs on the background thread).

This is where ids are formatted, limits and scrubbing are applied, the user's ``mask`` runs and
oversized events are trimmed, so that the traced call itself never pays for any of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson

from ._capture import Sanitizer
from ._errors import warn_once
from ._ids import format_id
from ._span import Session, Span
from .exporters._base import Batch

__all__ = ["Encoder", "Update"]

_EMPTY: Final = orjson.Fragment(b"{}")
_BUCKETS: Final = ("config", "inputs", "outputs", "metadata", "feedback", "metrics", "user_properties")
# Fields trimmed, in this order, when an event is over max_event_bytes.
_TRIM_ORDER: Final = ("inputs", "outputs", "metadata", "config", "metrics", "feedback", "user_properties")


class Update:
    """A change to an event (or session) that was already handed on: a ``PUT /events`` body."""

    __slots__ = ("event_id", "fields", "session")

    def __init__(self, event_id: str, session: Session, fields: dict[str, Any]) -> None:
        self.event_id = event_id
        self.session = session
        self.fields = fields  # bucket name -> snapshot bytes


class Encoder:
    """Builds ``Batch`` objects from ended spans and updates."""

    __slots__ = ("_mask", "_max_event_bytes", "_project", "_sanitizer", "dropped_by_mask")

    def __init__(
        self,
        project: str,
        sanitizer: Sanitizer,
        mask: Callable[[dict[str, Any]], dict[str, Any] | None] | None,
    ) -> None:
        self._project = project
        self._sanitizer = sanitizer
        self._mask = mask
        self._max_event_bytes = sanitizer.limits.max_event_bytes
        self.dropped_by_mask = 0

    def encode(self, items: Sequence[Span | Update]) -> Batch:
        spans = [item for item in items if isinstance(item, Span)]
        updates = [item for item in items if isinstance(item, Update)]
        sanitizer = self._sanitizer
        # One scan for secrets over every captured field of the batch; a per-field check only if it hits.
        chunks = [
            value
            for span in spans
            for value in (
                span.inputs,
                span.outputs,
                span.config,
                span.metadata,
                span.metrics,
                span.feedback,
                span.user_properties,
            )
            if value is not None
        ]
        check_secrets = sanitizer.batch_may_hold_secret(chunks)
        encoded: list[bytes] = []
        session_ids: list[str] = []
        sessions: dict[str, dict[str, Any]] = {}
        for span in spans:
            raw = self._encode_span(span, check_secrets)
            if raw is None:
                continue
            session = span.session
            encoded.append(raw)
            session_ids.append(session.session_id)
            if session.session_id not in sessions:
                sessions[session.session_id] = self.session_properties(session)
        update_bodies = []
        for update in updates:
            body: dict[str, Any] = {"event_id": update.event_id}
            for name, value in update.fields.items():
                body[name] = orjson.loads(sanitizer.finalize(value))
            update_bodies.append(body)
            sid = update.session.session_id
            if sid not in sessions:
                sessions[sid] = self.session_properties(update.session)
        return Batch(encoded, session_ids, sessions, update_bodies)

    def session_properties(self, session: Session) -> dict[str, Any]:
        props = self._sanitizer.sanitize(session.properties())
        assert isinstance(props, dict)
        return props

    def _encode_span(self, span: Span, check_secrets: bool) -> bytes | None:
        finalize = self._sanitizer.finalize
        session = span.session
        fields: dict[str, Any] = {}
        for name in _BUCKETS:
            value = getattr(span, name)
            fields[name] = _EMPTY if value is None else orjson.Fragment(finalize(value, check_secrets))
        error = span.error
        if error is not None and len(error) > self._sanitizer.limits.max_string_length:
            error = self._sanitizer.sanitize(error)
        event: dict[str, Any] = {
            "project": self._project,
            "source": session.source,
            "event_name": span.event_name,
            "event_type": span.event_type,
            "event_id": format_id(span.id),
            "session_id": session.session_id,
            "parent_id": format_id(span.parent_int) if span.parent_int is not None else session.session_id,
            "children_ids": [format_id(child) for child in span.children] if span.children else [],
            "config": fields["config"],
            "inputs": fields["inputs"],
            "outputs": fields["outputs"],
            "error": error,
            "start_time": span.start_ms,
            "end_time": span.end_ms,
            "duration": span.duration_ms,
            "metadata": fields["metadata"],
            "feedback": fields["feedback"],
            "metrics": fields["metrics"],
            "user_properties": fields["user_properties"],
        }
        raw = orjson.dumps(event)
        if self._mask is not None:
            masked = self._apply_mask(raw)
            if masked is None:
                return None
            raw = masked
        if len(raw) > self._max_event_bytes:
            raw = self._shrink(orjson.loads(raw))
        return raw

    def _apply_mask(self, raw: bytes) -> bytes | None:
        assert self._mask is not None
        try:
            result = self._mask(orjson.loads(raw))
        except Exception as exc:  # a failing user hook must not leak unmasked data: drop the event
            warn_once("mask", "tracer: the mask hook raised %r; events it fails on are dropped", exc)
            self.dropped_by_mask += 1
            return None
        if result is None:
            self.dropped_by_mask += 1
            return None
        if not isinstance(result, dict):
            warn_once("mask-type", "tracer: the mask hook must return a dict or None; event dropped")
            self.dropped_by_mask += 1
            return None
        for name in _BUCKETS:  # keep the wire contract: buckets are always objects
            if not isinstance(result.get(name), dict):
                result[name] = {} if result.get(name) is None else {"value": result[name]}
        return orjson.dumps(self._sanitizer.sanitize(result))

    def _shrink(self, event: dict[str, Any]) -> bytes:
        """Trim the largest fields until the event fits ``max_event_bytes``; never drop it whole."""
        limit = self._max_event_bytes
        string_limit = self._sanitizer.limits.max_string_length
        raw = orjson.dumps(event)
        while len(raw) > limit and string_limit > 64:
            string_limit //= 4
            for name in _TRIM_ORDER:
                event[name] = orjson.loads(self._sanitizer.rewrite(event[name], string_limit))
            raw = orjson.dumps(event)
        for name in _TRIM_ORDER:
            if len(raw) <= limit:
                break
            size = len(orjson.dumps(event[name]))
            event[name] = {"<truncated>": f"field of {size} bytes removed: event over {limit} bytes"}
            raw = orjson.dumps(event)
        meta = event.setdefault("metadata", {})
        if isinstance(meta, dict):
            meta["truncated"] = True
        return orjson.dumps(event)
