"""OTLP/protobuf written straight from the events' JSON pieces (``Batch.parts``), for the OTLP exporter.

The reference path decodes each event's JSON, maps it to a ``Span``
(``_otlp_mapping.event_to_span``) and encodes that (``_otlp_codec``): about 28 µs of the worker's
time per event on an idle machine (decode 7.6, mapping 12, upb messages 8.6), which held OTLP
delivery to 14,000-25,000 events/s. Here the same span is written from what the encoder already had:
the buckets' JSON text goes into the ``honeyhive_*`` attributes as it is (they are JSON strings on
the span), what is the same for every event of a session (trace id, session attributes, resource) is
encoded once and reused, and so are the encoded names and ids. Events this writer does not cover are
handed back to the reference path one by one (``fallback``), in their place in the request: events
without pieces (rewritten by ``mask``, trimmed, read back from the spool), metadata keys with a dot
(attributes kept from an ingested span, ``otel.*``), non-UUID ids, more attributes than
``max_attributes``. The tests check that both give the same spans, decoded with opentelemetry-proto.
"""

from __future__ import annotations

import binascii
import re
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from .._export import Batch, EventParts
from .._otlp_mapping import gen_ai_attributes, trace_id_for
from ._otlp_codec import truncate_text
from ._protobuf import key_field, key_value, length_delimited, string_attribute, varint

__all__ = ["FastSpanWriter"]

_TAG_ATTRIBUTE: Final = b"\x4a"  # Span.attributes = 9
_TAG_SPAN: Final = b"\x12"  # ScopeSpans.spans = 2
_KIND_CLIENT: Final = b"\x30\x03"  # Span.kind = 6: CLIENT for model events
_KIND_INTERNAL: Final = b"\x30\x01"  # INTERNAL for the others
_TIMES: Final = struct.Struct("<BQBQ")  # start_time_unix_nano = 7, end_time_unix_nano = 8 (fixed64)
_EMPTY: Final = b"{}"
_CANONICAL_ID: Final = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CACHE_LIMIT: Final = 8192
_OUTPUTS: Final = b',"outputs":'
_BUCKET_KEYS: Final = {
    name: key_field(f"honeyhive_{name}")
    for name in ("config", "inputs", "outputs", "metadata", "metrics", "feedback", "user_properties")
}
_INPUTS_KEY: Final = _BUCKET_KEYS["inputs"]
_OUTPUTS_KEY: Final = _BUCKET_KEYS["outputs"]
# ScopeSpans.spans field headers (tag and length) of the usual span sizes.
_SPAN_HEADERS: Final = tuple(_TAG_SPAN + varint(size) for size in range(1 << 14))
_unhexlify = binascii.unhexlify


_VARINTS: Final = tuple(varint(size) for size in range(1 << 14))
# honeyhive_inputs / honeyhive_outputs attributes of short JSON (at most 105 / 104 bytes, so that
# the KeyValue's length fits one varint byte): tag, KeyValue length, key, value tag, AnyValue
# length, string_value tag, string length, the JSON.
_SMALL_INPUTS: Final = b"\x4a%c" + _INPUTS_KEY + b"\x12%c\x0a%c%b"
_SMALL_OUTPUTS: Final = b"\x4a%c" + _OUTPUTS_KEY + b"\x12%c\x0a%c%b"


def _json_attribute(key: bytes, value: bytes, max_length: int) -> bytes:
    """The ``honeyhive_*`` attribute of a bucket's JSON *value* (nothing for an empty bucket): a
    ``KeyValue`` (*key* from ``key_field``) whose value is an ``AnyValue`` with that string."""
    size = len(value)
    if size == 2 and value == _EMPTY:
        return b""
    if size > max_length:
        text = value.decode()
        if len(text) > max_length:
            value = truncate_text(text, max_length).encode()
            size = len(value)
    if size >= 16000:
        return string_attribute(_TAG_ATTRIBUTE, key, value)
    # The lengths of the AnyValue and the KeyValue, then one piece (the varints all fit in 2 bytes).
    any_size = size + (2 if size < 0x80 else 3)
    pair_size = len(key) + any_size + (2 if any_size < 0x80 else 3)
    return b"\x4a%b%b\x12%b\x0a%b%b" % (_VARINTS[pair_size], key, _VARINTS[any_size], _VARINTS[size], value)


def _split_io(io: bytes) -> tuple[bytes, bytes]:
    """The inputs and outputs JSON of ``{"inputs":…,"outputs":…}``, decoded and encoded again."""
    both = orjson.loads(io)
    return (
        orjson.dumps(both["inputs"], option=orjson.OPT_NON_STR_KEYS),
        orjson.dumps(both["outputs"], option=orjson.OPT_NON_STR_KEYS),
    )


class _NotCovered(Exception):
    """An event the fast writer leaves to the reference path (a bucket that is not a JSON object)."""


class _Session:
    """What every event of one session shares, encoded once."""

    __slots__ = (
        "head",
        "id_prefix",
        "key",
        "names",
        "properties",
        "session_id",
        "session_piece",
        "tail",
        "tail_count",
        "trace",
    )

    def __init__(
        self,
        session_id: bytes,
        properties: Mapping[str, Any] | None,
        head: bytes,
        key: tuple[str, str],
        trace: bytes,
        id_prefix: bytes,
        session_piece: bytes,
        tail: bytes,
        tail_count: int,
    ) -> None:
        self.session_id = session_id
        self.properties = properties  # the batch's dict: the same object while the session is unchanged
        self.head = head
        self.key = key  # the resource's (source, project)
        self.trace = trace  # trace_id = 1, whole field, and the tag of span_id = 2
        self.id_prefix = id_prefix  # an event id starting so maps back from its span id alone
        self.session_piece = session_piece  # honeyhive.session_id
        self.tail = tail  # honeyhive.source, .project, .session_name
        self.tail_count = tail_count  # attributes in tail
        # By (event type, name JSON): the span's name and kind fields; its attributes up to the
        # buckets when the ids need none; the same up to the ids.
        self.names: dict[tuple[str, bytes], tuple[bytes, bytes, bytes]] = {}


class FastSpanWriter:
    """Writes an ``ExportTraceServiceRequest`` for a batch with ``parts``; one per exporter."""

    def __init__(
        self,
        resource_message: Callable[[tuple[str, str]], bytes],
        scope: bytes,
        project_is_service: bool,
        capture_messages: bool,
        max_length: int,
        max_count: int,
    ) -> None:
        self._resource_message = resource_message  # a resource's encoded message, by (source, project)
        self._scope = scope  # ScopeSpans.scope, whole field
        self._project_is_service = project_is_service
        self._capture_messages = capture_messages
        self._max_length = max_length
        self._max_count = max_count
        self._sessions: dict[str, _Session] = {}
        self._ids: dict[bytes, bytes] = {}  # span ids by event id
        self._resources: dict[tuple[str, str], bytes] = {}

    def encode(self, batch: Batch, fallback: Callable[[int], tuple[tuple[str, str], bytes]]) -> bytes:
        """The request body for *batch*; *fallback(index)* gives the resource key and ``Span``
        contents of an event this writer leaves to the reference path (in its place)."""
        parts = batch.parts
        assert parts is not None
        groups: dict[tuple[str, str], list[bytes]] = {}
        sessions = batch.sessions
        key: tuple[str, str] | None = None
        spans: list[bytes] = []
        add = spans.append
        # The loop runs once per event: what it calls is in locals, and the usual event (no error,
        # no rare bucket, not a model call, of the session before it) is written right here.
        ids_get, new_id = self._ids.get, self._id
        span, pack, headers, max_length = self._span, _TIMES.pack, _SPAN_HEADERS, self._max_length
        # Bucket JSON up to this long needs no cut and one-byte lengths (see _SMALL_INPUTS).
        small_inputs, small_outputs = min(105, max_length), min(104, max_length)
        session_id_before = ""
        session: _Session | None = None
        for index, (part, session_id) in enumerate(zip(parts, batch.session_ids, strict=True)):
            written: tuple[tuple[str, str], bytes] | None = None
            if part is not None and part[8] is None and part[5] is None and part[3] != "model":
                own_id, parent_id, name_json, event_type, io, _, start, end, _, head, own, parent, _, _ = part
                if session_id != session_id_before or session is None or session.head is not head:
                    session = self._session_for(session_id, sessions, head)
                    session_id_before = session_id
                root = parent is None and parent_id == session.session_id
                if parent is None and not root:  # a parent from another service: its id may be any text
                    parent = ids_get(parent_id) or new_id(parent_id)
                if (root or parent is not None) and start and end:
                    # (name and kind, the attributes up to the buckets, those before the ids)
                    named = session.names.get((event_type, name_json)) or self._name(session, event_type, name_json)
                    prefix = session.id_prefix
                    if own_id.startswith(prefix) and (root or parent_id.startswith(prefix)):
                        attributes = named[1]  # the ids map back from the span's: no attribute for them
                    else:
                        attributes = b"".join(
                            (
                                named[2],
                                b"" if own_id.startswith(prefix) else self._string(b"honeyhive_event_id", own_id),
                                b""
                                if root or parent_id.startswith(prefix)
                                else self._string(b"honeyhive_parent_id", parent_id),
                                session.tail,
                            )
                        )
                    if io is None:
                        inputs = outputs = b""
                    else:
                        split = io.find(_OUTPUTS)
                        if split > 0 and io.find(_OUTPUTS, split + 11) < 0:  # the only one: the top level's
                            inputs, outputs = io[10:split], io[split + 11 : -1]
                        else:  # a nested "outputs" key as well: decode to tell which is which
                            inputs, outputs = _split_io(io)
                        size_in, size_out = len(inputs), len(outputs)
                        if 2 < size_in <= small_inputs and 2 < size_out <= small_outputs:  # lengths of one byte
                            inputs = _SMALL_INPUTS % (size_in + 22, size_in + 2, size_in, inputs)
                            outputs = _SMALL_OUTPUTS % (size_out + 23, size_out + 2, size_out, outputs)
                        else:
                            inputs = _json_attribute(_INPUTS_KEY, inputs, max_length)
                            outputs = _json_attribute(_OUTPUTS_KEY, outputs, max_length)
                    written = (
                        session.key,
                        b"".join(
                            (
                                session.trace,  # with span_id's tag
                                own,
                                b"" if root else b"\x22\x08",  # parent_span_id = 4
                                b"" if root else parent,  # type: ignore[arg-type]  # not None unless root
                                named[0],
                                pack(0x39, start, 0x41, end if end > start else start),
                                attributes,
                                inputs,
                                outputs,
                            )
                        ),
                    )
            if written is None:
                try:
                    written = None if part is None else span(part, session_id, sessions)
                except _NotCovered:
                    written = None
                if written is None:
                    written = fallback(index)
            if written[0] != key:
                key = written[0]
                spans = groups.setdefault(key, [])
                add = spans.append
            body = written[1]
            size = len(body)
            add(headers[size] if size < 16384 else _TAG_SPAN + varint(size))
            add(body)
        # The request: per resource, ResourceSpans{resource, ScopeSpans{scope, spans}}, its lengths
        # added up rather than the spans copied into each enclosing message in turn (a request of
        # 512 spans is about 250 KB: nested copies measured a quarter of this method's time).
        request: list[bytes] = []
        scope = self._scope
        for key, spans in groups.items():
            resource = self._resource(key)  # the whole ResourceSpans.resource field
            scope_spans = len(scope) + sum(map(len, spans))
            scope_header = b"\x12" + varint(scope_spans)  # ResourceSpans.scope_spans = 2
            request += (
                b"\x0a",  # ExportTraceServiceRequest.resource_spans = 1
                varint(len(resource) + len(scope_header) + scope_spans),
                resource,
                scope_header,
                scope,
            )
            request += spans
        return b"".join(request)

    def _resource(self, key: tuple[str, str]) -> bytes:
        """The ``ResourceSpans.resource`` field of a resource key."""
        field = self._resources.get(key)
        if field is None:
            field = self._resources[key] = length_delimited(b"\x0a", self._resource_message(key))
        return field

    def _span(
        self, part: EventParts, session_id: str, sessions: Mapping[str, Mapping[str, Any]]
    ) -> tuple[tuple[str, str], bytes] | None:
        """The resource key and ``Span`` contents of one event, or None to leave it to the reference path."""
        own_id, parent_id, name_json, event_type, io, error_json, start, end, rare, head, own, parent, _, _ = part
        session = self._session_for(session_id, sessions, head)
        named = session.names.get((event_type, name_json)) or self._name(session, event_type, name_json)
        prefix = session.id_prefix
        root = parent is None and parent_id == session.session_id
        if parent is None and not root:
            parent = self._ids.get(parent_id) or self._id(parent_id)
        if not start or not end or (parent is None and not root):
            return None  # a zero time is left out of the message, a non-UUID parent hashed: the reference path
        id_attributes = [
            b"" if own_id.startswith(prefix) else self._string(b"honeyhive_event_id", own_id),
            b"" if root or parent_id.startswith(prefix) else self._string(b"honeyhive_parent_id", parent_id),
        ]
        pieces = [
            session.trace,  # with span_id's tag
            own,
            b"" if parent is None else b"\x22\x08" + parent,  # parent_span_id = 4
            named[0],
            _TIMES.pack(0x39, start, 0x41, end if end > start else start),
            named[2],
            *id_attributes,
            session.tail,
        ]
        fixed = len(pieces)  # the attributes added after these are one per piece
        add = pieces.append
        status = b""
        if error_json is not None:
            error = orjson.loads(error_json)
            if error:
                if not isinstance(error, str):
                    return None
                add(self._string(b"honeyhive_error", error.encode()))
                message = truncate_text(error, self._max_length).encode()
                status = length_delimited(b"\x7a", length_delimited(b"\x12", message) + b"\x18\x02")
        # The buckets, in _schema.BUCKETS order (config, inputs, outputs, metadata, metrics, feedback,
        # user_properties), each non-empty one as its JSON text.
        if rare is not None:
            add(self._bucket("config", rare[0]))
        inputs = outputs = _EMPTY
        if io is not None:
            split = io.find(_OUTPUTS)
            if split > 0 and io.find(_OUTPUTS, split + 11) < 0:  # the only one: the top level's
                inputs, outputs = io[10:split], io[split + 11 : -1]
            else:  # a nested "outputs" key as well: decode to tell which is which
                inputs, outputs = _split_io(io)
            add(_json_attribute(_INPUTS_KEY, inputs, self._max_length))
            add(_json_attribute(_OUTPUTS_KEY, outputs, self._max_length))
        if rare is not None:
            metadata = rare[1]
            if b"." in metadata and any("." in key for key in orjson.loads(metadata)):
                return None  # attributes of an ingested span, kept in metadata: the reference path
            for name, value in zip(("metadata", "metrics", "feedback", "user_properties"), rare[1:], strict=True):
                add(self._bucket(name, value))
        if event_type == "model":
            config, metadata, metrics = (_EMPTY,) * 3 if rare is None else (rare[0], rare[1], rare[2])
            view = {
                "event_type": "model",
                "config": orjson.loads(config),
                "metadata": orjson.loads(metadata),
                "outputs": orjson.loads(outputs),
                "inputs": orjson.loads(inputs),
                "metrics": orjson.loads(metrics),
            }
            for key, value in gen_ai_attributes(view, content=self._capture_messages).items():
                add(length_delimited(_TAG_ATTRIBUTE, key_value(key, value, self._max_length, truncate_text)))
        if rare is not None or error_json is not None or event_type == "model":
            # More attributes than max_attributes (at most 10 otherwise, and the limit is at least
            # 16): the reference path drops and counts them.
            count = 3 + session.tail_count + sum(1 for piece in id_attributes if piece)
            count += sum(1 for piece in pieces[fixed:] if piece)
            if count > self._max_count:
                return None
        add(status)
        return session.key, b"".join(pieces)

    def _bucket(self, name: str, value: bytes) -> bytes:
        """The ``honeyhive_<name>`` attribute of a bucket's JSON (nothing for an empty one)."""
        if value == _EMPTY:
            return b""
        if value[:1] != b"{":
            raise _NotCovered
        if len(value) > self._max_length:
            value = self._truncated(value)
        return string_attribute(_TAG_ATTRIBUTE, _BUCKET_KEYS[name], value)

    # -- the caches -----------------------------------------------------------------------------

    def _session_for(self, session_id: str, sessions: Mapping[str, Mapping[str, Any]], head: bytes) -> _Session:
        """The session's cached pieces, made again when its properties or its events' head changed."""
        session = self._sessions.get(session_id)
        properties = sessions.get(session_id)
        if session is None or session.head is not head or session.properties is not properties:
            session = self._session(session_id, properties, head)
        return session

    def _session(self, session_id: str, properties: Mapping[str, Any] | None, head: bytes) -> _Session:
        """Encode what the events of *session_id* share (once per session and change of its properties)."""
        sessions = self._sessions
        if len(sessions) >= _CACHE_LIMIT:
            sessions.clear()
        known = properties if properties is not None else {"session_id": session_id}
        event = orjson.loads(head + b'""}')  # the event's project and source
        source = event.get("source") or known.get("source")
        project = event.get("project") or known.get("project")
        trace = trace_id_for(session_id)
        attributes = [("honeyhive.source", source), ("honeyhive.project", project)]
        if known.get("session_name"):
            attributes.append(("honeyhive.session_name", known["session_name"]))
        tail = b"".join(
            length_delimited(_TAG_ATTRIBUTE, key_value(key, value, self._max_length, truncate_text))
            for key, value in attributes
            if value
        )
        session = sessions[session_id] = _Session(
            session_id=session_id.encode(),
            properties=properties,
            head=head,
            key=(str(source or ""), str(project or "") if self._project_is_service else ""),
            trace=length_delimited(b"\x0a", bytes.fromhex(trace)) + b"\x12\x08",
            id_prefix=f"{trace[:8]}-{trace[8:12]}-{trace[12:16]}".encode(),
            session_piece=self._string(b"honeyhive.session_id", session_id.encode()),
            tail=tail,
            tail_count=sum(1 for _, value in attributes if value),
        )
        return session

    def _name(self, session: _Session, event_type: str, name_json: bytes) -> tuple[bytes, bytes, bytes]:
        """The span's name and kind fields, and its first attributes (see ``_Session.names``)."""
        names = session.names
        if len(names) >= _CACHE_LIMIT:
            names.clear()
        name = orjson.loads(name_json)
        first = b"".join(
            length_delimited(_TAG_ATTRIBUTE, key_value(key, value, self._max_length, truncate_text))
            for key, value in (
                ("honeyhive_event_type", event_type or "tool"),
                ("honeyhive_event_name", name or "unknown"),
            )
        )
        first += session.session_piece
        fields = length_delimited(b"\x2a", str(name or "unknown").encode())  # name = 5
        fields += _KIND_CLIENT if event_type == "model" else _KIND_INTERNAL
        names[event_type, name_json] = entry = (fields, first + session.tail, first)
        return entry

    def _id(self, event_id: bytes) -> bytes | None:
        """The span id of an event id (its last 64 bits), or None if the id is not a canonical UUID
        (the reference path hashes those)."""
        if not _CANONICAL_ID.fullmatch(event_id):
            return None
        raw = _unhexlify(event_id[19:23] + event_id[24:])
        if not raw.strip(b"\0"):
            return None  # all zeros: the reference path picks another span id
        ids = self._ids
        if len(ids) >= _CACHE_LIMIT:
            ids.clear()
        ids[event_id] = raw
        return raw

    def _string(self, key: bytes, text: bytes) -> bytes:
        """A string attribute from UTF-8 *text* (cut as the reference path cuts it)."""
        if len(text) > self._max_length:
            text = self._truncated(text)
        return string_attribute(_TAG_ATTRIBUTE, length_delimited(b"\x0a", key), text)

    def _truncated(self, data: bytes) -> bytes:
        text = data.decode()
        return data if len(text) <= self._max_length else truncate_text(text, self._max_length).encode()
