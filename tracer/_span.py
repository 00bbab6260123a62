"""The open, mutable records (``Session`` and ``Span``, the handle users get from ``span()``) and
the ``Recorder``: the small named interface between a tracer and the spans it records.

A span is cheap to start and end; everything expensive (id formatting, limits, scrubbing,
encoding) happens later on the background thread, from the bytes captured at ``end()``.

Spans, decorators and scopes see their tracer only through its ``Recorder``: the settings they
read, how a span starts (``start_under``) and where an ended one goes (``hand_on``). ``Tracer``
builds one and updates it in place when reconfigured; nothing here imports the tracer.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

from . import _schema
from ._capture import COPY_BELOW, DEFAULT_LIMITS, DUMPS_OPTIONS, NO_FIELDS, Limits, checked_io, snapshot, snapshot_io
from ._deferred import SIZE_ESTIMATE, Deferred
from ._errors import report_internal_error
from ._fields import as_fields, describe_error, format_traceback, merge_fields
from ._ids import format_id, new_id
from ._record import make_update

if TYPE_CHECKING:
    from ._record import DeferredRecord, Item

__all__ = [
    "EVENT_TYPES",
    "RARE_BUCKETS",
    "Recorder",
    "RecorderRef",
    "RemoteParent",
    "Session",
    "Span",
    "attach_deferred",
    "current_session_var",
    "current_span_var",
    "is_ended",
    "is_open_model_span",
    "recorder_here",
    "rename",
    "span_fields",
]

EVENT_TYPES: Final = frozenset(_schema.EVENT_TYPES)

# The buckets most events never set; an ended span snapshots them only when one is set. Their
# order is the record's (see _record.EventRecord).
RARE_BUCKETS: Final = ("config", "metadata", "metrics", "feedback", "user_properties")

# The current span and session (see _context for carrying them into threads and streams).
current_span_var: contextvars.ContextVar[Span | None] = contextvars.ContextVar("tracer.span", default=None)
current_session_var: contextvars.ContextVar[Session | None] = contextvars.ContextVar("tracer.session", default=None)

_perf_ns = time.perf_counter_ns
_dumps = orjson.dumps
# Bytes charged per queued event on top of its captured fields: the record tuple, its ints and
# strings, the bytes objects' headers and allocator slack; and on top of that for an event with a
# rare bucket set (its tuple of five, the buckets' bytes headers). Measured 2026-12-06 as the RSS
# growth of 300,000 queued events minus their captured bytes (bench/memory.py --configs charge):
# 312-321 bytes for a function with a string or a dict and for bench/overhead.py's 3-level chain,
# 135 more with metadata set. Charged with 8-13 % to spare (the queue's byte bound is meant to be
# the memory it holds, issue 10). It was 450 for every event: 129-138 bytes (~30 %) too many for
# the usual ones, so the bound held a quarter fewer of them and a 60,000-event burst of the chain
# woke the worker at half the 64 MiB bound before its end, and 4 too few for one with metadata.
_ITEM_OVERHEAD: Final = 360
_RARE_OVERHEAD: Final = 160


def _nowhere(item: Item, session: Session) -> None:
    """``Recorder.hand_on`` of a recorder no pipeline was attached to (and of detached spans)."""


class Recorder:
    """What spans, decorators and scopes need from the tracer that records them.

    Settings are plain attributes (read on every traced call); ``hand_on`` is the pipeline's
    ``on_end``. ``open_spans`` and ``open_generators`` are what the exit handler ends (see
    ``_lifecycle``).
    """

    __slots__ = (
        "capture_content",
        "default_session",
        "disabled",
        "hand_on",
        "limits",
        "open_generators",
        "open_spans",
        "sample_rate",
        "source",
    )

    def __init__(self, *, track_open: bool = True) -> None:
        self.disabled = False
        self.capture_content = True
        self.limits: Limits = DEFAULT_LIMITS
        self.sample_rate = 1.0
        self.source = "dev"
        self.hand_on: Callable[[Item, Session], None] = _nowhere
        # Every open span by id (added by Span.__init__, removed by Span.end; a traced function's
        # own span is not listed, see Span): what the exit handler ends.
        self.open_spans: dict[int, Span] = {} if track_open else _Discard()
        # Spans of generators that are mid-iteration, with how to end them (at interpreter exit).
        self.open_generators: weakref.WeakKeyDictionary[Span, Callable[[Span, str], None]] = weakref.WeakKeyDictionary()
        self.default_session = Session(self, format_id(new_id()), "default", self.source, True)

    def new_session(
        self,
        session_id: str,
        session_name: str,
        inputs: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_properties: Mapping[str, Any] | None = None,
    ) -> Session:
        """A session of this recorder; sampled by its id (the same answer in every process)."""
        rate = self.sample_rate
        sampled = rate >= 1.0 or (rate > 0.0 and int(session_id.replace("-", "")[-8:], 16) / 0xFFFFFFFF < rate)
        session = Session(self, session_id, session_name, self.source, sampled)
        session.inputs = dict(as_fields(inputs, "inputs")) if inputs is not None else None
        session.metadata = dict(as_fields(metadata, "metadata")) if metadata is not None else None
        session.user_properties = (
            dict(as_fields(user_properties, "user_properties")) if user_properties is not None else None
        )
        return session

    # -- hot path -------------------------------------------------------------------------------

    def start(self, event_name: str, event_type: str | None) -> Span | None:
        return self.start_under(current_span_var.get(), event_name, event_type)

    def start_under(
        self, parent: Span | None, event_name: str, event_type: str | None, tracked: bool = True
    ) -> Span | None:
        """A new span, child of *parent* if it is one of ours; None when the session is sampled out
        (*tracked*: see ``Span``)."""
        if parent is not None and parent._recorder is self:
            session = parent._session
        else:
            parent = None
            current = current_session_var.get()
            session = current if current is not None and current.recorder is self else self.default_session
        if not session.sampled:
            return None
        return Span(self, session, parent, event_name, event_type, tracked)

    def current_span(self) -> Span | None:
        """The innermost open span of this context (whichever recorder it belongs to), or None."""
        span = current_span_var.get()
        return span if span is not None and not span._ended else None

    def current_session(self) -> Session:
        """The session events started now would join."""
        span = current_span_var.get()
        if span is not None and span._recorder is self:
            return span._session
        session = current_session_var.get()
        return session if session is not None and session.recorder is self else self.default_session

    def track_open(self, span: Span, finish: Callable[[Span, str], None]) -> None:
        """Remember a generator's span so that it can be ended if the process exits mid-stream.

        *finish* must not reference *span* (it is the value of a weak-keyed mapping).
        """
        self.open_generators[span] = finish

    def enqueue_update(self, event_id: str, session: Session, fields: Mapping[str, Any]) -> None:
        """Queue a ``PUT /events``-style change: never ``inputs`` (folded into metadata), objects only."""
        limits = self.limits
        payload: dict[str, bytes] = {}
        metadata = dict(as_fields(fields["metadata"], "metadata")) if fields.get("metadata") is not None else {}
        if fields.get("inputs") is not None:
            metadata["inputs"] = fields["inputs"]
        if fields.get("error") is not None:
            metadata["error"] = describe_error(fields["error"], limits.max_string_length)
        for name in _schema.ENRICHABLE:
            if name == "metadata":
                continue  # built above, with inputs and error folded in
            value = fields.get(name)
            if value is None:
                continue
            payload[name] = snapshot(as_fields(value, name), limits)
        if metadata:
            payload["metadata"] = snapshot(metadata, limits)
        if payload:
            self.hand_on(make_update(event_id, session.session_id, payload), session)

    # -- exit (see _lifecycle) ------------------------------------------------------------------

    def end_open_generators(self) -> None:
        """End the spans of generators suspended mid-iteration."""
        for span, finish in list(self.open_generators.items()):
            if not span._ended:
                finish(span, "process_exit")

    def end_open_spans(self, untracked: list[Span] | None = None) -> None:
        """End every span still open (with *untracked* ones found elsewhere), innermost first, so
        that parents still list their children."""
        spans = list(self.open_spans.values()) + [span for span in untracked or () if span._recorder is self]
        for span in sorted(spans, key=_span_order, reverse=True):
            if not span._ended:
                span.update(metadata={"ended_early": True, "end_reason": "process_exit"})
                span.end()


class RecorderRef:
    """The recorder a decorated function records with, read on every call (one attribute load):
    fixed for a ``Tracer``'s own decorators; for the module-level ``@tracer.trace``, the default
    tracer's, set by ``_default`` when it is created or replaced, and made on first use."""

    __slots__ = ("_make", "recorder")

    def __init__(self, recorder: Recorder | None = None, make: Callable[[], Recorder] | None = None) -> None:
        self.recorder = recorder
        self._make = make

    def get(self) -> Recorder:
        recorder = self.recorder
        if recorder is None:
            assert self._make is not None, "a RecorderRef needs a recorder or a way to make one"
            recorder = self._make()
        return recorder


def _span_order(span: Span) -> int:
    return span._id  # ids grow with creation: a child's is larger than its parent's


class _Discard(dict[int, "Span"]):
    """An ``open_spans`` that keeps nothing (the recorder behind detached spans)."""

    def __setitem__(self, key: int, value: Span) -> None:
        pass


class RemoteParent:
    """A continued trace (``_propagation``): the caller's ids and the headers to pass on."""

    __slots__ = ("baggage_rest", "event_id", "span_id", "trace_id", "tracestate_rest")

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        event_id: str,
        tracestate_rest: list[str],
        baggage_rest: list[str],
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.event_id = event_id
        self.tracestate_rest = tracestate_rest  # received members other than ours, in order
        self.baggage_rest = baggage_rest  # received members other than ours, as received


class Session:
    """A group of events (one conversation, one request, one script run)."""

    __slots__ = (
        "config",
        "feedback",
        "inputs",
        "metadata",
        "metrics",
        "outputs",
        "recorder",
        "remote",
        "sampled",
        "session_id",
        "session_name",
        "source",
        "start_ms",
        "user_properties",
        "version",
    )

    def __init__(self, recorder: Recorder, session_id: str, session_name: str, source: str, sampled: bool) -> None:
        self.recorder = recorder
        self.session_id = session_id
        self.session_name = session_name
        self.source = source
        self.sampled = sampled
        self.inputs: dict[str, Any] | None = None
        self.metadata: dict[str, Any] | None = None
        self.user_properties: dict[str, Any] | None = None
        self.config: dict[str, Any] | None = None
        self.outputs: dict[str, Any] | None = None
        self.metrics: dict[str, Any] | None = None
        self.feedback: dict[str, Any] | None = None
        # The continued trace of a sampled-out session (``_propagation.TraceScope``): with no span
        # current in it, its outgoing headers pass that trace on, marked not sampled.
        self.remote: RemoteParent | None = None
        self.start_ms = time.time_ns() // 1_000_000
        # Bumped on every enrichment, so exporters can tell a changed session from a known one.
        self.version = 0

    def properties(self) -> dict[str, Any]:
        """The session's ``session_properties`` (wire shape; only the fields that are set)."""
        props: dict[str, Any] = {
            "session_id": self.session_id,
            "session_name": self.session_name,
            "source": self.source,
        }
        for name in _schema.BUCKETS:
            value = getattr(self, name)
            if value:
                props[name] = value
        return props


class Span:
    """An event being recorded: ``event_id``, ``session_id``, ``parent_id``; ``update()`` /
    ``set_error()`` while it is open, ``end()``.

    ``end()`` hands a snapshot of it to the delivery queue (an ``_record.EventRecord``); the span
    itself keeps the user's objects and is not read by the pipeline after that. Its fields are
    internal (the integrations and decorators of this package set them; ``span_fields`` reads them).
    """

    __slots__ = (
        "__weakref__",
        "_children",
        "_deferred",
        "_end",
        "_ended",
        "_error",
        "_event_name",
        "_event_type",
        "_id",
        "_inputs",
        "_outputs",
        "_parent",
        "_parent_int",
        "_rare",
        "_recorder",
        "_session",
        "_start",
        "_tracked",
    )

    # Buckets hold plain dicts only (so that end() can serialize them without checking): set
    # through merge_fields / as_fields, or to a dict built here.
    _inputs: dict[str, Any] | None
    _outputs: dict[str, Any] | None
    # The other buckets (RARE_BUCKETS) by name, None while none is set: one slot for the five
    # that most events never set keeps starting and ending a span a few stores shorter.
    _rare: dict[str, dict[str, Any]] | None
    _error: str | None
    # The ids of the children started under this span (listed as they start, so that a span
    # whose children are all still running at its end is still a chain).
    _children: list[int] | None
    # Fields shaped on the worker thread (LLM calls, see _deferred); set by the integrations.
    _deferred: Deferred | None
    # This span's id (``_ids.new_id``). A continued trace's remote parent (``_propagation.RemoteSpan``,
    # never ended or recorded) has its event id there as ASCII bytes instead, so that its children
    # copy it as their parent id with no check on this path; only ``parent_id`` and the encoder see it.
    _id: int
    # Set by end(): before that they are not read. Bytes: the remote parent's id (see _id).
    _parent_int: int | bytes | None
    _end: int

    def __init__(
        self,
        recorder: Recorder,
        session: Session,
        parent: Span | None,
        event_name: str,
        event_type: str | None,
        tracked: bool = True,
    ) -> None:
        # This runs for every traced call: keep it to plain stores (no calls but two cheap ones).
        # *tracked*: listed in the recorder's open_spans, so that the exit handler finds it. A
        # traced function's span is not (it is on its thread's stack while open, where the exit
        # handler looks: _decorators.running_call_spans); 0.1 µs per span, bench/overhead.py.
        self._recorder = recorder
        self._session = session
        self._parent = parent
        self._event_name = event_name
        self._event_type = event_type
        self._id = span_id = new_id()
        self._tracked = tracked
        if tracked:
            recorder.open_spans[span_id] = self
        self._inputs = self._outputs = self._rare = self._error = self._children = self._deferred = None
        self._ended = False
        if parent is not None:
            siblings = parent._children
            if siblings is None:
                parent._children = [span_id]
            else:
                siblings.append(span_id)
        self._start = _perf_ns()

    # -- public handle ------------------------------------------------------------------------

    @property
    def duration_ms(self) -> float | None:
        """Milliseconds from start to end (None while open)."""
        return (self._end - self._start) / 1_000_000 if self._ended else None

    @property
    def event_name(self) -> str:
        return self._event_name

    @property
    def event_type(self) -> str | None:
        """``model``, ``tool`` or ``chain``; None while open if not given (decided at the end)."""
        return self._event_type

    @property
    def event_id(self) -> str:
        """This event's id (UUID4 string)."""
        return format_id(self._id)

    @property
    def session_id(self) -> str:
        """The id of the session this event belongs to."""
        return self._session.session_id

    @property
    def parent_id(self) -> str:
        """The parent event's id, or the session id for a root event (HoneyHive's convention)."""
        parent = self._parent_int if self._ended else (self._parent._id if self._parent is not None else None)
        if parent is None:
            return self._session.session_id
        return format_id(parent) if isinstance(parent, int) else parent.decode()

    def update(
        self,
        *,
        inputs: Any = None,
        outputs: Any = None,
        config: Any = None,
        metadata: Any = None,
        metrics: Any = None,
        feedback: Any = None,
        user_properties: Any = None,
        error: Any = None,
    ) -> None:
        """Merge fields into this event (mappings, merged key by key; see ``as_fields``). Never raises."""
        if self._ended:
            self._recorder.enqueue_update(format_id(self._id), self._session, locals())
            return
        if inputs is not None:
            self._inputs = merge_fields(self._inputs, inputs, "inputs")
        if outputs is not None:
            # "result", like a traced function's return value (sessions and late updates: "value")
            self._outputs = merge_fields(self._outputs, outputs, "outputs", "result")
        if config is not None:
            self._merge_rare("config", config)
        if metadata is not None:
            self._merge_rare("metadata", metadata)
        if metrics is not None:
            self._merge_rare("metrics", metrics)
        if feedback is not None:
            self._merge_rare("feedback", feedback)
        if user_properties is not None:
            self._merge_rare("user_properties", user_properties)
        if error is not None:
            self.set_error(error)

    def _merge_rare(self, name: str, value: Any) -> None:
        rare = self._rare
        if rare is None:
            rare = self._rare = {}
        rare[name] = merge_fields(rare.get(name), value, name)

    def set_error(self, error: BaseException | str) -> None:
        """Mark this event as failed: ``"Type: message"`` for an exception (traceback in metadata).

        Never raises, even for an exception whose ``str()`` raises (see ``describe_error``).
        """
        self._error = describe_error(error, self._recorder.limits.max_string_length)
        if isinstance(error, BaseException):
            trace = format_traceback(error)
            if trace is not None:
                self._merge_rare("metadata", {"traceback": trace})

    def end(self) -> None:
        """End the event now (idempotent). Called for you by decorators and ``with`` blocks."""
        if self._ended:
            return
        self._ended = True
        # Only the monotonic clock here; the worker maps it to wall time (see _clock).
        end_perf = self._end = _perf_ns()
        try:
            recorder = self._recorder
            if self._tracked:
                recorder.open_spans.pop(self._id, None)
            # Snapshot every field to JSON bytes now (later mutation by the user changes nothing)
            # into the record the queue holds (see _record); inlined: this runs for every call.
            parent = self._parent
            parent_int: int | None
            if parent is not None:
                parent_int = self._parent_int = parent._id
                self._parent = None  # keep only the id: an ended span must not pin its ancestors
            else:
                parent_int = self._parent_int = None
            children = self._children
            event_type = self._event_type
            if event_type is None:
                event_type = self._event_type = "tool" if children is None else "chain"
            deferred = self._deferred
            if deferred is not None:
                self._end_deferred(deferred, parent_int, event_type, end_perf)
                return
            inputs = self._inputs
            outputs = self._outputs
            if inputs is None and outputs is None:
                io = None
                size = _ITEM_OVERHEAD
            else:
                # _capture.snapshot_io, its first step inlined (see DUMPS_OPTIONS there).
                try:
                    io = _dumps(
                        {
                            "inputs": NO_FIELDS if inputs is None else inputs,
                            "outputs": NO_FIELDS if outputs is None else outputs,
                        },
                        None,
                        DUMPS_OPTIONS,
                    )
                except Exception:
                    io = snapshot_io(inputs, outputs, recorder.limits)
                else:
                    if len(io) <= COPY_BELOW and io.find(b"null") < 0:
                        io = b"%b" % io  # _capture._copy
                    else:
                        io = checked_io(io, inputs, outputs, recorder.limits)
                size = _ITEM_OVERHEAD + len(io)
            rare_fields = self._rare
            if rare_fields is None:
                rare = None
            else:
                limits = recorder.limits
                config, metadata, metrics, feedback, user_properties = (
                    None if value is None else snapshot(value, limits) for value in map(rare_fields.get, RARE_BUCKETS)
                )
                rare = (config, metadata, metrics, feedback, user_properties)
                size += _RARE_OVERHEAD + sum(len(value) for value in rare if value is not None)
            session = self._session
            recorder.hand_on(
                (
                    size,
                    session.session_id,
                    self._id,
                    parent_int,
                    # A lone child as a bare int: a nested tuple would keep the record GC-tracked a
                    # generation longer (see _record).
                    None if children is None else children[0] if len(children) == 1 else tuple(children),
                    self._event_name,
                    event_type,
                    io,
                    self._error,
                    self._start,
                    end_perf,
                    rare,
                ),
                session,
            )
        except Exception as exc:  # a library failure must never reach the code that ended the span
            report_internal_error("finishing a span", exc)

    def _end_deferred(self, deferred: Deferred, parent_int: int | None, event_type: str, end_perf: int) -> None:
        """end() for a span whose fields the worker shapes: its own fields go along unserialized."""
        deferred.eager = self  # read with span_fields(); an ended span's fields no longer change
        children = self._children
        session = self._session
        try:
            size = deferred.charged_size()
        except Exception as exc:
            report_internal_error("sizing an LLM event", exc)
            size = SIZE_ESTIMATE
        record: DeferredRecord = (
            _ITEM_OVERHEAD + size,
            session.session_id,
            self._id,
            parent_int,
            None if children is None else children[0] if len(children) == 1 else tuple(children),
            self._event_name,
            event_type,
            None,
            self._error,
            self._start,
            end_perf,
            None,
            deferred,
        )
        self._deferred = None  # the record has it now
        redirect = deferred.redirect
        if redirect is not None:
            redirect(record, session)
        else:
            self._recorder.hand_on(record, session)

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open"
        return f"<Span {self._event_type or '?'} {self._event_name!r} {self.event_id} {state}>"


def span_fields(span: Span) -> dict[str, dict[str, Any] | None]:
    """The buckets set on *span* by name (``_schema.BUCKETS``), for merging with shaped ones."""
    fields: dict[str, dict[str, Any] | None] = dict.fromkeys(RARE_BUCKETS)
    if span._rare is not None:
        fields.update(span._rare)
    fields["inputs"] = span._inputs
    fields["outputs"] = span._outputs
    return fields


# -- for the LLM integrations (which must not reach into spans either) --------------------------


def recorder_here(parent: Span | None) -> Recorder | None:
    """The recorder of *parent*, else of the current session; None when neither is set."""
    if parent is not None:
        return parent._recorder
    session = current_session_var.get()
    return session.recorder if session is not None else None


def is_open_model_span(span: Span, recorder: Recorder) -> bool:
    """True for an open ``model`` span of *recorder* (an LLM call inside it records into it)."""
    return span._event_type == "model" and span._recorder is recorder and not span._ended


def is_ended(span: Span) -> bool:
    return span._ended


def rename(span: Span, event_name: str) -> None:
    """Give an open *span* another name (a request's, once the framework has routed it)."""
    span._event_name = event_name


def attach_deferred(span: Span, deferred: Deferred) -> None:
    """Have *deferred* shape *span*'s fields on the worker thread (see _deferred)."""
    span._deferred = deferred
