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
from ._span import Session, Span
from .exporters._base import Batch

__all__ = ["Encoder", "Update"]

_BUCKETS: Final = ("config", "inputs", "outputs", "metadata", "feedback", "metrics", "user_properties")
# Fields trimmed, in this order, when an event is over max_event_bytes.
_TRIM_ORDER: Final = ("inputs", "outputs", "metadata", "config", "metrics", "feedback", "user_properties")


class Update:
    """A change to an event (or session) that was already handed on: a ``PUT /events`` body."""

    __slots__ = ("event_id", "fields", "session", "size")

    def __init__(self, event_id: str, session: Session, fields: dict[str, bytes]) -> None:
        self.event_id = event_id
        self.session = session
        self.fields = fields  # bucket name -> snapshot bytes
        self.size = 256 + sum(len(value) for value in fields.values())  # memory charged in the queue


# One event: the field order of HoneyHive's batch-events schema. Filled with bytes % (...), a single
# C-level operation, instead of building a dict per event and encoding it.
_EVENT_TEMPLATE: Final = (
    b'{"project":%b,"source":%b,"event_name":%b,"event_type":"%b","event_id":"%b","session_id":"%b",'
    b'"parent_id":"%b","children_ids":%b,"config":%b,"inputs":%b,"outputs":%b,"error":%b,'
    b'"start_time":%d,"end_time":%d,"duration":%b,"metadata":%b,"feedback":%b,"metrics":%b,"user_properties":%b}'
)
_ID_TEMPLATE: Final = b"%08x-%04x-%04x-%04x-%012x"
_CACHE_LIMIT: Final = 8192


class Encoder:
    """Builds ``Batch`` objects from ended spans and updates."""

    __slots__ = (
        "_ids",
        "_mask",
        "_max_event_bytes",
        "_names",
        "_project",
        "_sanitizer",
        "_sessions",
        "dropped_by_mask",
    )

    def __init__(
        self,
        project: str,
        sanitizer: Sanitizer,
        mask: Callable[[dict[str, Any]], dict[str, Any] | None] | None,
    ) -> None:
        self._project = orjson.dumps(project)
        self._sanitizer = sanitizer
        self._mask = mask
        self._max_event_bytes = sanitizer.limits.max_event_bytes
        self.dropped_by_mask = 0
        # Formatted ids: a child's parent_id is formatted again as the parent's event_id, and
        # children_ids repeat ids already seen, so most ids are formatted once.
        self._ids: dict[int, bytes] = {}
        self._names: dict[str, bytes] = {}
        # session_id -> (version, session_properties, source JSON, id bytes)
        self._sessions: dict[str, tuple[int, dict[str, Any], bytes, bytes]] = {}

    def _id(self, value: int) -> bytes:
        cached = self._ids.get(value)
        if cached is None:
            cached = _ID_TEMPLATE % (
                value >> 96,
                (value >> 80) & 0xFFFF,
                (value >> 64) & 0xFFFF,
                (value >> 48) & 0xFFFF,
                value & 0xFFFFFFFFFFFF,
            )
            ids = self._ids
            if len(ids) >= _CACHE_LIMIT:
                ids.clear()
            ids[value] = cached
        return cached

    def _name(self, name: str) -> bytes:
        cached = self._names.get(name)
        if cached is None:
            names = self._names
            if len(names) >= _CACHE_LIMIT:
                names.clear()
            cached = names[name] = orjson.dumps(self._sanitizer.sanitize(name))
        return cached

    def _session(self, session: Session) -> tuple[int, dict[str, Any], bytes, bytes]:
        entry = self._sessions.get(session.session_id)
        if entry is None or entry[0] != session.version:
            if len(self._sessions) >= _CACHE_LIMIT:
                self._sessions.clear()
            entry = (
                session.version,
                self.session_properties(session),
                orjson.dumps(session.source),
                session.session_id.encode(),
            )
            self._sessions[session.session_id] = entry
        return entry

    def encode(self, items: Sequence[Span | Update]) -> Batch:
        spans = [item for item in items if isinstance(item, Span)]
        updates = [item for item in items if isinstance(item, Update)]
        flagged = self._flagged(spans)
        encoded: list[bytes] = []
        session_ids: list[str] = []
        sessions: dict[str, dict[str, Any]] = {}
        for span in spans:
            raw = self._encode_span(span, flagged)
            if raw is None:
                continue
            sid = span.session.session_id
            encoded.append(raw)
            session_ids.append(sid)
            if sid not in sessions:
                sessions[sid] = self._session(span.session)[1]
        update_bodies = []
        for update in updates:
            body: dict[str, Any] = {"event_id": update.event_id}
            for name, value in update.fields.items():
                body[name] = orjson.loads(self._sanitizer.finalize(value))
            update_bodies.append(body)
            sid = update.session.session_id
            if sid not in sessions:
                sessions[sid] = self._session(update.session)[1]
        return Batch(encoded, session_ids, sessions, update_bodies)

    def session_properties(self, session: Session) -> dict[str, Any]:
        props = self._sanitizer.sanitize(session.properties())
        assert isinstance(props, dict)
        return props

    def _flagged(self, spans: list[Span]) -> set[bytes]:
        """The captured values of this batch that may break a limit or hold a secret.

        Each distinct value is checked once (a chain often passes the same arguments and returns
        the same result at every level), and the secret pre-filter is one lower-cased scan over
        all of them; most batches flag nothing and are sent as captured.
        """
        unique: dict[bytes, None] = {}
        for span in spans:
            value = span.inputs
            if value is not None:
                unique[value] = None
            value = span.outputs
            if value is not None:
                unique[value] = None
        values = list(unique)
        sanitizer = self._sanitizer
        needs_walk = sanitizer.needs_walk
        flagged = {value for value in values if needs_walk(value)}
        flagged.update(values[index] for index in sanitizer.chunks_with_secret_hints(values))
        return flagged

    def _encode_span(self, span: Span, flagged: set[bytes]) -> bytes | None:
        # Hot loop of the worker thread: locals and inlined checks, one template fill per event.
        session = span.session
        _version, _props, source, sid = self._session(session)
        finalize = self._sanitizer.finalize
        value = span.inputs
        inputs = b"{}" if value is None else (finalize(value) if value in flagged else value)
        value = span.outputs
        outputs = b"{}" if value is None else (finalize(value) if value in flagged else value)
        if (
            span.config is None
            and span.metadata is None
            and span.feedback is None
            and span.metrics is None
            and span.user_properties is None
        ):
            config = metadata = feedback = metrics = user_properties = b"{}"
        else:
            config, metadata, feedback, metrics, user_properties = (
                b"{}" if value is None else finalize(value)
                for value in (span.config, span.metadata, span.feedback, span.metrics, span.user_properties)
            )
        error = span.error
        parent = span.parent_int
        children = span.children
        event_id = self._id
        raw = _EVENT_TEMPLATE % (
            self._project,
            source,
            self._name(span.event_name),
            (span.event_type or "tool").encode(),
            event_id(span.id),
            sid,
            event_id(parent) if parent is not None else sid,
            (b'["' + b'","'.join([event_id(child) for child in children]) + b'"]') if children else b"[]",
            config,
            inputs,
            outputs,
            b"null" if error is None else orjson.dumps(self._sanitizer.sanitize(error)),
            span.start_ms,
            span.end_ms,
            orjson.dumps(span.duration_ms),
            metadata,
            feedback,
            metrics,
            user_properties,
        )
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
