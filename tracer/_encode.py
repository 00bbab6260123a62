"""Turning ended spans into wire-shape event JSON (runs on the background thread).

This is where ids are formatted, limits and scrubbing are applied, the user's ``mask`` runs and
oversized events are trimmed, so that the traced call itself never pays for any of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import orjson

from . import _clock as clock
from . import _schema
from ._capture import Limits, Sanitizer, snapshot, snapshot_io
from ._deferred import BUCKETS
from ._errors import report_internal_error, warn_once
from ._export import Batch, EventParts
from ._ids import format_id_bytes, format_low_bytes, id_low_bytes
from ._record import (
    EVENT_LEN,
    IO,
    SESSION_ID,
    UPDATE_FIELDS,
    UPDATE_ID,
    UPDATE_LEN,
    DeferredRecord,
    EventRecord,
    Item,
)
from ._sessions import SessionRegistry
from ._span import RARE_BUCKETS, Session, span_fields

__all__ = ["Encoder"]

# Fields trimmed, in this order, when an event is over max_event_bytes.
_TRIM_ORDER: Final = ("inputs", "outputs", "metadata", "config", "metrics", "feedback", "user_properties")


# Events are built by joining byte pieces in the field order of HoneyHive's batch-events schema:
# cheaper than a dict per event plus orjson.dumps, and each captured field is already JSON.
_TYPES: Final = {name: b',"event_type":"%b","event_id":"' % name.encode() for name in _schema.EVENT_TYPES}
_EMPTY_LIST: Final = b"[]"
_NO_IO: Final = b'"inputs":{},"outputs":{}'
_DURATION: Final = b"%d.%06d"  # ms with ns digits
# (config up to the comma before inputs, the buckets after the times, the buckets apart: none)
_EMPTY_REST: Final[tuple[bytes, bytes, None]] = (
    b',"config":{},',
    b',"metadata":{},"feedback":{},"metrics":{},"user_properties":{}}',
    None,
)
# A deferred event's JSON is at most its variable pieces plus this much (the keys, the event type
# and id, the times, the duration, the empty buckets: 344 bytes with 20-digit times); each child adds
# _CHILD_ID_BYTES ('"<uuid>",'). The encoder test checks the bound against the joined JSON.
_JSON_OVERHEAD: Final = 400
_CHILD_ID_BYTES: Final = 39
_CACHE_LIMIT: Final = 8192
_PAUSE_EVERY: Final = 64  # events (about 0.15 ms of encoding): see _pipeline.BatchProcessor._drain


class Encoder:
    """Builds ``Batch`` objects from ended spans and updates."""

    __slots__ = (
        "_ids",
        "_lows",
        "_mask",
        "_max_event_bytes",
        "_ms_text",
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
        self._ids: dict[int | bytes, bytes] = {}
        # The last 8 bytes of those ids (EventParts' PART_ID_LOW), by id, when an exporter wants them.
        self._lows: dict[int, bytes] = {}
        self._ms_text: dict[int, bytes] = {}
        self._names: dict[str, bytes] = {}
        # session_id -> (version, session_properties, source JSON, id bytes)
        self._sessions: dict[str, tuple[int, dict[str, Any], bytes, bytes]] = {}

    def _id(self, value: int) -> bytes:
        cached = format_id_bytes(value)
        ids = self._ids
        if len(ids) >= _CACHE_LIMIT:
            ids.clear()
        ids[value] = cached
        return cached

    def clear_caches(self) -> None:
        """Forget formatted ids and names (a forked child formats ids with its own prefix)."""
        self._ids.clear()
        self._lows.clear()
        self._names.clear()
        self._sessions.clear()

    def _name(self, name: str) -> bytes:
        cached = self._names.get(name)
        if cached is None:
            names = self._names
            if len(names) >= _CACHE_LIMIT:
                names.clear()
            cached = names[name] = orjson.dumps(self._sanitizer.sanitize(name))
        return cached

    def _session(self, session_id: str, registry: SessionRegistry) -> tuple[int, dict[str, Any], bytes, bytes]:
        session = registry.get(session_id)
        if session is None:  # cannot happen while the processor notes every session it queues
            return (-1, {"session_id": session_id}, b'"unknown"', session_id.encode())
        entry = self._sessions.get(session_id)
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

    def encode(
        self,
        items: Sequence[Item],
        registry: SessionRegistry,
        pause: Callable[[], None] | None = None,
        parts: bool = False,
        defer: bool = False,
    ) -> Batch:
        """The batch for *items*; *registry* has the session of each. *pause* (if given) is
        called after every ``_PAUSE_EVERY`` events (the pipeline yields the GIL there). With
        *parts*, the batch also has each event's pieces (``Batch.parts``). With *defer* as well, the
        events' JSON is not joined unless asked for (``Batch.deferred``: for exporters that write
        from the pieces)."""
        spans = _event_records(items, self._sanitizer.limits)
        flagged = self._flagged(spans)
        encoded: list[bytes | None] = []
        session_ids: list[str] = []
        sessions: dict[str, dict[str, Any]] = {}
        # The loop below runs once per event on the worker thread: caches and methods are locals,
        # the per-session prefix is built once per run of same-session events.
        ids_get, names_get = self._ids.get, self._names.get
        format_id, format_name = self._id, self._name
        finalize = self._sanitizer.finalize
        finalize_io = self._sanitizer.finalize_io
        plain = self._mask is None
        max_event_bytes = self._max_event_bytes
        add_event, add_session_id = encoded.append, session_ids.append
        event_parts: list[EventParts | None] | None = [] if parts or defer else None
        defer = defer and plain  # the mask hook rewrites the JSON: it is joined now
        json_bytes = 0  # of a deferred batch: at least its events' JSON
        anchor = clock.anchor_ns  # monotonic -> wall clock, the same for every event of the batch
        # Start and end times in ms, as text: events of a burst share them (hundreds per ms), and
        # formatting a 13-digit int costs ~0.1 µs, a dict hit half that.
        ms_text = self._ms_text
        if len(ms_text) >= _CACHE_LIMIT:
            ms_text.clear()
        ms_get = ms_text.get
        if len(self._ids) >= _CACHE_LIMIT:
            self._ids.clear()
        ids = self._ids
        lows = self._lows
        if len(lows) >= _CACHE_LIMIT:
            lows.clear()
        lows_get = lows.get
        keep_lows = event_parts is not None
        head = sid = b""
        base_bound = 0
        sid_text = None
        for span in spans if pause is None or len(spans) <= _PAUSE_EVERY else _paced(spans, pause):
            # One unpacking (a single bytecode) instead of a dozen index lookups; the order is
            # _record.EventRecord's.
            (_, session_id, event_id, parent, children, name, event_type, io, error, start, end, rare) = span
            if session_id is not sid_text:  # ids of one session are one str object: cheap check
                sid_text = session_id
                _version, props, source, sid = self._session(sid_text, registry)
                sessions.setdefault(sid_text, props)
                head = b'{"project":%b,"source":%b,"event_name":' % (self._project, source)
                base_bound = len(head) + len(sid) + _JSON_OVERHEAD  # of a deferred event's JSON (below)
            rest = _EMPTY_REST if rare is None else self._rest(rare)
            # Ids are formatted once each and cached: a child's parent id comes again as the parent's
            # own id (children end first), and children ids were the children's own ids.
            own_id = ids_get(event_id)
            if own_id is None:
                if keep_lows:  # the span id as well: the text is written from it
                    span_id = lows[event_id] = id_low_bytes(event_id)
                    own_id = ids[event_id] = format_low_bytes(span_id)
                else:
                    own_id = ids[event_id] = format_id_bytes(event_id)
            parent_id = sid
            if parent is not None:
                cached = ids_get(parent)
                if cached is None:
                    if not isinstance(parent, int):
                        # bytes: a continued trace's remote parent, its id already formatted (_propagation)
                        cached = ids[parent] = parent
                    elif keep_lows:
                        span_id = lows[parent] = id_low_bytes(parent)
                        cached = ids[parent] = format_low_bytes(span_id)
                    else:
                        cached = ids[parent] = format_id_bytes(parent)
                parent_id = cached
            start_ms = (start + anchor) // 1_000_000
            end_ms = (end + anchor) // 1_000_000
            if io is not None and io in flagged:
                io = finalize_io(io)
            name_json = names_get(name) or format_name(name)
            error_json = None if error is None else orjson.dumps(self._sanitizer.sanitize(error))
            whole = plain  # the pieces still make up the event
            deferred = False
            if defer:
                # The JSON is joined later if at all (``Batch.deferred``), so its size is bounded
                # here: an event that could be over max_event_bytes is joined (and trimmed) now.
                bound = base_bound + len(name_json) + len(parent_id)
                if io is not None:
                    bound += len(io)
                if error_json is not None:
                    bound += len(error_json)
                if rare is not None:
                    bound += len(rest[0]) + len(rest[1])
                if children:
                    bound += _CHILD_ID_BYTES * (1 if isinstance(children, int) else len(children))
                deferred = bound <= max_event_bytes
            raw: bytes | None = None
            if deferred:
                json_bytes += bound
            else:
                start_text = ms_get(start_ms)
                if start_text is None:
                    start_text = ms_text[start_ms] = b"%d" % start_ms
                end_text = ms_get(end_ms)
                if end_text is None:
                    end_text = ms_text[end_ms] = b"%d" % end_ms
                raw = b"".join(
                    (
                        head,
                        name_json,
                        _TYPES[event_type],
                        own_id,
                        b'","session_id":"',
                        sid,
                        b'","parent_id":"',
                        parent_id,
                        b'","children_ids":',
                        _EMPTY_LIST
                        if not children
                        else b'["%b"]' % (ids_get(children) or format_id(children))
                        if isinstance(children, int)
                        else b'["' + b'","'.join([ids_get(child) or format_id(child) for child in children]) + b'"]',
                        rest[0],
                        # '{"inputs":…,"outputs":…}' without its braces: the two fields in the event's order
                        _NO_IO if io is None else io[1:-1],
                        b',"error":',
                        b"null" if error_json is None else error_json,
                        b',"start_time":',
                        start_text,
                        b',"end_time":',
                        end_text,
                        b',"duration":',
                        _DURATION % divmod(end - start, 1_000_000),
                        rest[1],
                    )
                )
                if not plain:
                    masked = self._apply_mask(raw)
                    if masked is None:
                        continue
                    raw = masked
                if len(raw) > max_event_bytes:
                    raw = self._shrink(orjson.loads(raw))
                    whole = False
                if defer:
                    json_bytes += len(raw)
            add_event(raw)  # None: deferred (joined from the parts if asked for)
            add_session_id(sid_text)
            if event_parts is not None:
                if whole:
                    # The ids' low 64 bits (an OTLP span id), computed with their text above: a
                    # parent comes first as its children's parent (children end first).
                    low = lows_get(event_id)
                    if low is None:  # its text was cached before the cache of span ids was cleared
                        low = lows[event_id] = id_low_bytes(event_id)
                    parent_low = None
                    if parent.__class__ is int:
                        parent_low = lows_get(parent)
                        if parent_low is None:
                            parent_low = lows[parent] = id_low_bytes(parent)
                    start_ns = start_ms * 1_000_000
                    event_parts.append(
                        (
                            own_id,
                            parent_id,
                            name_json,
                            event_type,
                            io,
                            error_json,
                            start_ns,
                            start_ns + end - start,
                            rest[2],
                            head,
                            low,
                            parent_low,
                            children,
                            end_ms,
                        )
                    )
                else:
                    event_parts.append(None)
        update_bodies = []
        for update in items if len(spans) != len(items) else ():
            if len(update) != UPDATE_LEN:
                continue
            body: dict[str, Any] = {"event_id": update[UPDATE_ID]}
            fields = update[UPDATE_FIELDS]
            for name, field in fields.items():
                body[name] = orjson.loads(finalize(field))
            update_bodies.append(body)
            session_id = update[SESSION_ID]
            sessions.setdefault(session_id, self._session(session_id, registry)[1])
        if defer:
            assert event_parts is not None
            return Batch.deferred(encoded, session_ids, sessions, update_bodies, event_parts, event_json, json_bytes)
        return Batch(encoded, session_ids, sessions, update_bodies, event_parts)  # type: ignore[arg-type]

    def _rest(
        self, rare: tuple[bytes | None, ...]
    ) -> tuple[bytes, bytes, tuple[bytes, bytes, bytes, bytes, bytes] | None]:
        """The config bucket and the trailing buckets, for an event that has any of them (and the
        five buckets apart, for ``Batch.parts``)."""
        finalize = self._sanitizer.finalize
        config, metadata, metrics, feedback, user_properties = (
            b"{}" if value is None else finalize(value) for value in rare
        )
        return _rest_text((config, metadata, metrics, feedback, user_properties))

    def session_properties(self, session: Session) -> dict[str, Any]:
        props = self._sanitizer.sanitize(session.properties())
        assert isinstance(props, dict)
        return props

    def _flagged(self, spans: list[EventRecord]) -> set[bytes]:
        """The captured values of this batch that may break a limit or hold a secret.

        Each distinct value is checked once (a chain often passes the same arguments and returns
        the same result at every level), and the secret pre-filter is one lower-cased scan over
        all of them; most batches flag nothing and are sent as captured.
        """
        unique = dict.fromkeys([span[IO] for span in spans])
        unique.pop(None, None)  # events without inputs and outputs
        values: list[bytes] = list(unique)  # type: ignore[arg-type]
        sanitizer = self._sanitizer
        needs_walk = sanitizer.needs_walk
        flagged = {value for value in values if needs_walk(value)}
        flagged.update(values[index] for index in sanitizer.chunks_with_secret_hints(values))
        return flagged

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
        for name in _schema.BUCKETS:  # keep the wire contract: buckets are always objects
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


def _rest_text(
    buckets: tuple[bytes, bytes, bytes, bytes, bytes],
) -> tuple[bytes, bytes, tuple[bytes, bytes, bytes, bytes, bytes]]:
    """``Encoder._rest`` of the five rare buckets' JSON (config, metadata, metrics, feedback, user_properties)."""
    config, metadata, metrics, feedback, user_properties = buckets
    return (
        b',"config":%b,' % config,
        b',"metadata":%b,"feedback":%b,"metrics":%b,"user_properties":%b}'
        % (metadata, feedback, metrics, user_properties),
        buckets,
    )


def event_json(part: EventParts, session_id: str) -> bytes:
    """The JSON of an event from its pieces (``Batch.parts``): the bytes ``Encoder.encode`` would
    have joined (for ``Batch.deferred``; the encoder's loop joins them inline, as this is its
    hottest line)."""
    own_id, parent_id, name_json, event_type, io, error_json, start_ns, end_ns, rare, head, *_, children, end_ms = part
    rest = _EMPTY_REST if rare is None else _rest_text(rare)
    return b"".join(
        (
            head,
            name_json,
            _TYPES[event_type],
            own_id,
            b'","session_id":"',
            session_id.encode(),
            b'","parent_id":"',
            parent_id,
            b'","children_ids":',
            _EMPTY_LIST
            if not children
            else b'["%b"]' % format_id_bytes(children)
            if isinstance(children, int)
            else b'["' + b'","'.join([format_id_bytes(child) for child in children]) + b'"]',
            rest[0],
            _NO_IO if io is None else io[1:-1],
            b',"error":',
            b"null" if error_json is None else error_json,
            b',"start_time":',
            b"%d" % (start_ns // 1_000_000),
            b',"end_time":',
            b"%d" % end_ms,
            b',"duration":',
            _DURATION % divmod(end_ns - start_ns, 1_000_000),
            rest[1],
        )
    )


def _paced(spans: list[EventRecord], pause: Callable[[], None]) -> Iterator[EventRecord]:
    """*spans*, with *pause()* called between runs of ``_PAUSE_EVERY``."""
    for start in range(0, len(spans), _PAUSE_EVERY):
        if start:
            pause()
        yield from spans[start : start + _PAUSE_EVERY]


def _event_records(items: Sequence[Item], limits: Limits) -> list[EventRecord]:
    """The events among *items*; LLM events come with their fields still to shape (see _deferred):
    they are shaped here, on the worker, first."""
    # The kinds differ by length; mypy narrows tuples by len() only up to 8 items, hence the ignores.
    spans: list[EventRecord] = [item for item in items if len(item) == EVENT_LEN]  # type: ignore[misc]
    if len(spans) == len(items):  # the usual batch: plain events only
        return spans
    spans = []
    add = spans.append
    for item in items:
        if len(item) == EVENT_LEN:
            add(item)  # type: ignore[arg-type]
        elif len(item) != UPDATE_LEN:
            add(_resolve(item, limits))  # type: ignore[arg-type]
    return spans


def _resolve(record: DeferredRecord, limits: Limits) -> EventRecord:
    """The plain event record for *record*: its Deferred shaped, merged with the span's own fields
    (which win, key by key) and serialized. Never raises: a failing ``shape()`` leaves the span's
    own fields."""
    deferred = record[12]
    try:
        shaped = deferred.shape()
    except Exception as exc:
        report_internal_error("shaping an LLM event", exc)
        shaped = {}
    own = span_fields(deferred.eager)
    merged: dict[str, dict[str, Any] | None] = {}
    for name in BUCKETS:
        value = own[name]
        extra = shaped.get(name)
        if extra:
            value = {**extra, **value} if value is not None else dict(extra)
        merged[name] = value
    inputs, outputs = merged["inputs"], merged["outputs"]
    io = None if inputs is None and outputs is None else snapshot_io(inputs, outputs, limits)
    config, metadata, metrics, feedback, user_properties = (
        None if merged[name] is None else snapshot(merged[name], limits) for name in RARE_BUCKETS
    )
    rare = (config, metadata, metrics, feedback, user_properties)
    size, session_id, event_id, parent, children, name, event_type, _, error, start, end, _, _ = record
    return (
        size,
        session_id,
        event_id,
        parent,
        children,
        name,
        event_type,
        io,
        error,
        start,
        end,
        None if rare == (None,) * 5 else rare,
    )
