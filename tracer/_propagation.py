"""W3C Trace Context and Baggage: one session followed across services.

``inject()`` writes the current span into outgoing headers; ``continue_trace()`` reads them in the
receiving service and makes the events inside its block part of the caller's session, children of
the caller's span. The ids are the OTLP exporter's (``_otlp_mapping``): trace id = session id,
span id = the event id's last 64 bits, so that both services' OTLP spans form one trace.

What travels (README, "Distributed tracing"):

- ``traceparent``: ``00-<trace id>-<span id>-01``.
- ``tracestate``: our entry ``tracer=<the span's event id, 32 hex digits>`` first (a span id is only
  the last half of an event id; the first half is per process), then the entries received by
  ``continue_trace``, passed through. The entry is trusted only when its last 16 digits are the
  ``traceparent``'s span id: a service without this library in between changes the span id and
  passes our entry on unchanged.
- ``baggage``: ``honeyhive.session_id``, ``honeyhive.session_name``, ``honeyhive.source`` (the
  attribute names ``_otlp_mapping`` reads), percent-encoded; other members received are passed on.

Received headers are checked against the W3C limits; anything malformed, oversized or hostile is
ignored (that header, or all of them for a bad ``traceparent``) with one debug line, never raised.
Nothing here runs per span: a continued trace is a ``Span`` standing for the remote parent, made
current for the block (see ``RemoteParent``), and the pipeline's encoder writes its id.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Final, TypeVar

from ._errors import logger
from ._ids import format_id
from ._otlp_mapping import event_id_for, trace_id_for
from ._scopes import AlsoAsync
from ._span import Recorder, RemoteParent, Session, Span, current_session_var, current_span_var

__all__ = [
    "Headers",
    "RemoteParent",
    "RemoteSpan",
    "TraceScope",
    "current_headers",
    "inject",
    "parse_headers",
    "remote_of",
    "session_headers",
    "trace_headers",
]

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
BAGGAGE: Final = "baggage"
TRACESTATE_KEY: Final = "tracer"
SESSION_ID_KEY: Final = "honeyhive.session_id"
SESSION_NAME_KEY: Final = "honeyhive.session_name"
SOURCE_KEY: Final = "honeyhive.source"

# W3C Trace Context §3.3.1.1: tracestate may be cut to 512 characters and 32 list members.
MAX_TRACESTATE_CHARS: Final = 512
MAX_TRACESTATE_MEMBERS: Final = 32
# W3C Baggage §3.3.1 (limits): at most 8192 bytes and 180 list members in all.
MAX_BAGGAGE_BYTES: Final = 8192
MAX_BAGGAGE_MEMBERS: Final = 180
# A version 00 traceparent is 55 characters; later versions may append fields. Longer than this
# is not a trace context but an attack on the parser.
MAX_TRACEPARENT_CHARS: Final = 512
# Session names longer than this (percent-encoded) are not sent in baggage: the name is for
# display, and a long one would crowd the other members out of the 8192 bytes.
MAX_BAGGAGE_NAME_CHARS: Final = 1024

_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[ -~]*)?")
# W3C Trace Context §3.3.1.3.1 (key: simple or multi-tenant) and §3.3.1.3.2 (value).
_TRACESTATE_MEMBER: Final = re.compile(
    r"([a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}|[a-z][a-z0-9_\-*/]{0,255})"
    r"=([!-+\--<>-~ ]{0,255}[!-+\--<>-~])"
)
_BAGGAGE_KEY: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 7230 token
_BAGGAGE_VALUE: Final = re.compile(r"[!#-+\--:<-\[\]-~]*")  # W3C Baggage baggage-octet
_NAMES_AS_BYTES: Final = frozenset({b"traceparent", b"tracestate", b"baggage"})
_HEX32: Final = re.compile(r"[0-9a-f]{32}")
_ALL_ZERO_TRACE: Final = "0" * 32
_ALL_ZERO_SPAN: Final = "0" * 16


class RemoteSpan(Span):
    """The remote parent, as a ``Span`` that is never recorded, current for a continued block.

    Ended from the start (so ``current_span()`` and enrichment skip it); its ``_id`` is the remote
    event id as ASCII bytes, which ``Span.end`` copies into a child's record as its parent like any
    parent id and the encoder writes as it is. Children therefore cost what any child costs:
    nothing is checked per span. Carried into threads and streams like any span (``_context``).
    """

    __slots__ = ("remote",)

    remote: RemoteParent


def remote_of(span: Span) -> RemoteParent | None:
    """The continued trace *span* is part of: its own if it stands for one, else its nearest
    open ancestor's (an ended parent forgets its parent: then None)."""
    node: Span | None = span
    while node is not None:
        if type(node) is RemoteSpan:
            return node.remote
        node = node._parent
    return None


# -- reading headers ---------------------------------------------------------------------------


class Parsed:
    """What ``parse_headers`` found: a remote parent, the session fields from baggage, and the
    caller's sampling decision (None when the caller is not a ``tracer``: see ``parse_headers``)."""

    __slots__ = ("remote", "sampled", "session_id", "session_name", "source")

    def __init__(
        self,
        remote: RemoteParent,
        session_id: str,
        session_name: str | None,
        source: str | None,
        sampled: bool | None,
    ) -> None:
        self.remote = remote
        self.session_id = session_id
        self.session_name = session_name
        self.source = source
        self.sampled = sampled


def _pairs(headers: object) -> Iterable[tuple[object, object]]:
    """(name, value) pairs of a dict, Mapping (Starlette's and httpx's ``Headers``) or list of pairs."""
    if isinstance(headers, Mapping):
        multi = getattr(headers, "multi_items", None)  # httpx.Headers: repeated headers one by one
        if callable(multi):
            return list(multi())
        return list(headers.items())
    if isinstance(headers, (list, tuple)):
        return [(item[0], item[1]) for item in headers if isinstance(item, (list, tuple)) and len(item) == 2]
    raise TypeError(f"headers must be a mapping or a list of pairs, got {type(headers).__name__}")


def _collect(headers: object, problems: list[str]) -> dict[str, list[str]]:
    """The values of our three headers, by lower-case name; non-str names and values are skipped."""
    found: dict[str, list[str]] = {}
    for name, value in _pairs(headers):
        if not isinstance(name, str):
            if isinstance(name, (bytes, bytearray)) and bytes(name).lower() in _NAMES_AS_BYTES:
                problems.append("header names are bytes, not str (decode ASGI headers as latin-1 first)")
            continue
        lowered = name.lower()
        if lowered not in (TRACEPARENT, TRACESTATE, BAGGAGE):
            continue
        if not isinstance(value, str):
            problems.append(f"{lowered} is a {type(value).__name__}, not a str")
            continue
        found.setdefault(lowered, []).append(value)
    return found


def _traceparent(values: list[str], problems: list[str]) -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled flag) of a valid ``traceparent`` (W3C Trace Context §3.2), else None."""
    if len(values) != 1:
        problems.append(f"{len(values)} traceparent headers")
        return None
    value = values[0].strip(" \t")
    if len(value) > MAX_TRACEPARENT_CHARS:
        problems.append(f"traceparent of {len(value)} characters")
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        problems.append("malformed traceparent")
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        problems.append(f"traceparent version {version} with {len(value)} characters")
        return None
    if trace_id == _ALL_ZERO_TRACE or span_id == _ALL_ZERO_SPAN:
        problems.append("traceparent with an all-zero id")
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def _tracestate(values: list[str], problems: list[str]) -> tuple[str | None, list[str]]:
    """(our entry's value, the other members) of valid ``tracestate`` headers; (None, []) otherwise."""
    joined = ",".join(values)
    if len(joined) > MAX_TRACESTATE_CHARS:
        problems.append(f"tracestate of {len(joined)} characters")
        return None, []
    ours: str | None = None
    rest: list[str] = []
    keys: set[str] = set()
    for member in joined.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        match = _TRACESTATE_MEMBER.fullmatch(member)
        if match is None or match.group(1) in keys:
            problems.append("malformed tracestate")
            return None, []
        keys.add(match.group(1))
        if match.group(1) == TRACESTATE_KEY:
            ours = match.group(2)
        else:
            rest.append(member)
    if len(keys) > MAX_TRACESTATE_MEMBERS:
        problems.append(f"tracestate of {len(keys)} members")
        return None, []
    return ours, rest


def _baggage(values: list[str], problems: list[str]) -> tuple[dict[str, str], list[str]]:
    """(our members' decoded values, the other members as received) of valid ``baggage`` headers."""
    joined = ",".join(values)
    if len(joined.encode("utf-8", "replace")) > MAX_BAGGAGE_BYTES:
        problems.append(f"baggage of more than {MAX_BAGGAGE_BYTES} bytes")
        return {}, []
    members = [member.strip(" \t") for member in joined.split(",")]
    members = [member for member in members if member]
    if len(members) > MAX_BAGGAGE_MEMBERS:
        problems.append(f"baggage of {len(members)} members")
        return {}, []
    ours: dict[str, str] = {}
    rest: list[str] = []
    for member in members:
        pair = member.split(";", 1)[0]  # properties after ';' are kept (in rest) but not read
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(" \t"), raw.strip(" \t")
        if not sep or not _BAGGAGE_KEY.fullmatch(key) or not _BAGGAGE_VALUE.fullmatch(raw):
            problems.append("malformed baggage")
            return {}, []
        if key in (SESSION_ID_KEY, SESSION_NAME_KEY, SOURCE_KEY):
            decoded = urllib.parse.unquote(raw, errors="replace")
            if decoded.isprintable():
                ours[key] = decoded
        else:
            rest.append(member)
    return ours, rest


def _session_id(trace_id: str, from_baggage: str | None) -> tuple[str, bool]:
    """The session of a trace, and whether a tracer caller named it: baggage's session when it maps
    to this trace id (True), else the trace id read as a UUID (a tracer caller without baggage gets
    its own session id back, since trace id = session id; a foreign one a session id whose trace id
    is its trace id again)."""
    if from_baggage is not None:
        try:
            candidate = str(uuid.UUID(from_baggage))
        except ValueError:
            candidate = None
        if candidate is not None and trace_id_for(candidate) == trace_id:
            return candidate, True
    return str(uuid.UUID(hex=trace_id)), False


def parse_headers(headers: object) -> Parsed | None:
    """The trace context in *headers*, or None (with one debug line saying why, if they had one).

    The ``traceparent``'s sampled flag is the caller's decision only when the caller is a
    ``tracer`` (our ``tracestate`` entry for that very span, or our baggage naming the trace's
    session): a session is sampled once, where it starts. A foreign flag is not followed: proxies
    and meshes set ``00`` on traffic they merely pass on, which would silence the service.
    """
    problems: list[str] = []
    try:
        found = _collect(headers, problems)
        ids = _traceparent(found[TRACEPARENT], problems) if TRACEPARENT in found else None
        if ids is None:
            return None
        trace_id, span_id, sampled = ids
        ours, tracestate_rest = _tracestate(found.get(TRACESTATE, []), problems)
        trusted = ours is not None and _HEX32.fullmatch(ours) is not None and ours[16:] == span_id
        # Our caller's event, whole; else the event the collector stores for that span (for a
        # tracer caller's session-level headers, the session id itself: its children are roots).
        event_id = str(uuid.UUID(hex=ours)) if trusted else event_id_for(trace_id, span_id)
        baggage, baggage_rest = _baggage(found.get(BAGGAGE, []), problems)
        session_id, named = _session_id(trace_id, baggage.get(SESSION_ID_KEY))
        remote = RemoteParent(trace_id, span_id, event_id, tracestate_rest, baggage_rest)
        decided = sampled if trusted or named else None
        return Parsed(remote, session_id, baggage.get(SESSION_NAME_KEY), baggage.get(SOURCE_KEY), decided)
    except Exception as exc:  # hostile input (a Mapping whose items() raises…): never the app's problem
        problems.append(f"unreadable headers ({type(exc).__name__})")
        return None
    finally:
        if problems:
            logger.debug("tracer: ignored trace headers: %s", "; ".join(problems))


# -- continuing a trace ------------------------------------------------------------------------


class TraceScope(AlsoAsync["Session | None"]):
    """``with tracer.continue_trace(headers):`` (or ``async with``): yields the ``Session`` events
    inside join, or None when *headers* carry no valid trace (events then go where they would).

    The session is sampled as a tracer caller decided (see ``parse_headers``), else by its id like
    any session. A sampled-out one has no span current inside the block (no event of it is
    recorded, not even a traced function's, whose fast path trusts a current span's session);
    outgoing headers then pass the trace on from the session, marked not sampled.
    """

    __slots__ = ("_headers", "_previous", "_recorder", "_session_name", "session")

    def __init__(self, recorder: Recorder, headers: object, session_name: str | None = None) -> None:
        self._recorder = recorder
        self._headers = headers
        self._session_name = session_name
        self._previous: tuple[Span | None, Session | None] | None = None
        self.session: Session | None = None

    def __enter__(self) -> Session | None:
        recorder = self._recorder
        if recorder.disabled:
            return None
        parsed = parse_headers(self._headers)
        self._headers = None  # read once; the request's headers need not outlive the block's start
        if parsed is None:
            return None
        name = parsed.session_name or self._session_name or recorder.default_session.session_name
        session = self.session = recorder.new_session(parsed.session_id, name)
        if parsed.sampled is not None:
            session.sampled = parsed.sampled
        if parsed.source:
            session.source = parsed.source
        self._previous = (current_span_var.get(), current_session_var.get())
        if session.sampled:
            current_span_var.set(_stand_in(recorder, session, parsed.remote))
        else:
            session.remote = parsed.remote
            current_span_var.set(None)
        current_session_var.set(session)
        return session

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        previous = self._previous
        if previous is None:
            return
        self._previous = None
        current_span_var.set(previous[0])
        current_session_var.set(previous[1])


class _Forget(list[int]):
    """A children list that keeps nothing (``Span.__init__`` appends a child's id to its parent's)."""

    def append(self, value: int, /) -> None:
        pass


_NO_CHILDREN: Final = _Forget()


def _stand_in(recorder: Recorder, session: Session, remote: RemoteParent) -> RemoteSpan:
    """The never-recorded ``Span`` for the remote parent (see ``RemoteSpan``)."""
    span = RemoteSpan.__new__(RemoteSpan)
    span.remote = remote
    span._recorder = recorder
    span._session = session
    span._parent = None
    span._parent_int = None
    span._event_name = "remote parent"
    span._event_type = "chain"
    span._id = remote.event_id.encode()  # type: ignore[assignment]  # a parent id as bytes: see Span._id
    span._tracked = False
    span._inputs = span._outputs = span._rare = span._error = span._deferred = None
    span._children = _NO_CHILDREN  # never exported: a long block's root spans are not listed
    span._ended = True
    span._start = span._end = 0
    return span


# -- writing headers ---------------------------------------------------------------------------


def _set(headers: MutableMapping[str, str], name: str, value: str) -> None:
    """Set *name*, replacing a differently-cased key of a plain dict (other mappings ignore case)."""
    if type(headers) is dict:
        for key in [key for key in headers if isinstance(key, str) and key != name and key.lower() == name]:
            del headers[key]
    headers[name] = value


def _encode(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def trace_headers(span: Span) -> dict[str, str]:
    """``traceparent``, ``tracestate`` and ``baggage`` for *span* (a local span or a stand-in)."""
    remote = remote_of(span)
    event_id = remote.event_id if type(span) is RemoteSpan and remote is not None else format_id(span._id)
    event_hex = event_id.replace("-", "")
    return _headers(span._session, event_hex[16:], f"{TRACESTATE_KEY}={event_hex}", remote)


def session_headers(session: Session) -> dict[str, str]:
    """The headers of *session* where no span is current in it: its own continued trace's parent
    when it has one (a sampled-out continued session), else a parent span id that maps back to the
    session id (``_otlp_mapping.event_id_for``), so that the callee's events are the session's
    root events. No ``tracestate`` entry of ours: there is no event to name."""
    remote = session.remote
    if remote is not None:
        return _headers(session, remote.span_id, None, remote)
    span_id = trace_id_for(session.session_id)[16:]
    return _headers(session, span_id if span_id.strip("0") else "0000000000000001", None, None)


def current_headers() -> dict[str, str] | None:
    """The trace headers of the current span, else of the current session, else None."""
    span = current_span_var.get()
    if span is not None:
        return trace_headers(span)
    session = current_session_var.get()
    return session_headers(session) if session is not None else None


def _headers(session: Session, span_id: str, own_entry: str | None, remote: RemoteParent | None) -> dict[str, str]:
    flags = "01" if session.sampled else "00"
    headers = {TRACEPARENT: f"00-{trace_id_for(session.session_id)}-{span_id}-{flags}"}
    members = [] if own_entry is None else [own_entry]
    if remote is not None:  # inside a continued trace: what it received is passed on
        members += remote.tracestate_rest[: MAX_TRACESTATE_MEMBERS - len(members)]
    tracestate = ",".join(members)
    while len(tracestate) > MAX_TRACESTATE_CHARS:  # drop from the right (W3C §3.3.1.1)
        members.pop()
        tracestate = ",".join(members)
    if tracestate:
        headers[TRACESTATE] = tracestate
    baggage = [f"{SESSION_ID_KEY}={_encode(session.session_id)}", f"{SOURCE_KEY}={_encode(session.source)}"]
    name = _encode(session.session_name)
    if len(name) <= MAX_BAGGAGE_NAME_CHARS:
        baggage.insert(1, f"{SESSION_NAME_KEY}={name}")
    size = sum(len(member) + 1 for member in baggage)
    if remote is not None:
        for member in remote.baggage_rest:
            size += len(member.encode()) + 1
            if size > MAX_BAGGAGE_BYTES or len(baggage) >= MAX_BAGGAGE_MEMBERS:
                break
            baggage.append(member)
    headers[BAGGAGE] = ",".join(baggage)
    return headers


Headers = TypeVar("Headers", bound=MutableMapping[str, str])


def inject(headers: Headers, span: Span | None = None) -> Headers:
    """Write the trace headers of *span* (default: the current span, else the current session, see
    ``current_headers``) into *headers* and return it; unchanged when there is neither or *headers*
    cannot be written to (one debug line)."""
    written = trace_headers(span) if span is not None else current_headers()
    if written is None:
        return headers
    if not isinstance(headers, MutableMapping):
        logger.debug("tracer: inject() needs a mutable mapping of headers, got %s", type(headers).__name__)
        return headers
    try:
        for name, value in written.items():
            _set(headers, name, value)
    except Exception as exc:  # the caller's mapping refused a write (read-only headers): theirs to know, not to raise
        logger.debug("tracer: inject() could not write to %s: %r", type(headers).__name__, exc)
    return headers
