"""The open, mutable records: ``Session`` and ``Span`` (the handle users get from ``span()``).

A span is cheap to start and end; everything expensive (id formatting, limits, scrubbing,
encoding) happens later on the background thread, from the bytes captured at ``end()``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from . import _schema
from ._capture import snapshot
from ._deferred import SIZE_ESTIMATE, Deferred
from ._errors import report_internal_error, warn_once
from ._ids import format_id, new_id

if TYPE_CHECKING:
    from ._record import DeferredRecord
    from ._tracer import Tracer

__all__ = [
    "EVENT_TYPES",
    "Session",
    "Span",
    "as_fields",
    "describe_error",
    "format_traceback",
    "merge_fields",
    "safe_str",
]

EVENT_TYPES: Final = frozenset(_schema.EVENT_TYPES)

# The enrichable buckets (all JSON objects on the wire), in the order update() accepts them.
BUCKETS: Final = ("config", "metadata", "metrics", "feedback", "user_properties")

_perf_ns = time.perf_counter_ns
# Bytes charged per queued event on top of its captured fields: the record tuple, its ints and
# strings, the bytes objects' headers and allocator slack. Measured 358-367 bytes (RSS growth of
# 300,000 queued events minus their captured bytes, two event shapes: bench/memory.py --configs
# charge); 450 leaves room for child-id tuples and rare buckets. It was 700, which made a 100,000
# event burst (44 MB of memory) count as 77 MB and overflow the 64 MiB bound.
_ITEM_OVERHEAD: Final = 450


# What a bucket records when the user's mapping cannot be read (its keys()/items()/iteration
# raised): the type name under this key, and a warning logged once.
UNREADABLE_KEY: Final = "<unreadable>"
# The message recorded for an exception whose str() raises (or returns a non-str):
# "TypeName: <str() raised InnerError>". Python's own traceback says "<exception str() failed>".
UNPRINTABLE: Final = "<str() raised {}>"


def as_fields(value: Any, field: str, wrap_key: str = "value") -> dict[str, Any]:
    """*value* as the content of a bucket (a JSON object); never raises.

    A dict is returned as is (callers copy or merge it); any other mapping is copied; anything
    else is wrapped as ``{wrap_key: value}``. A mapping that cannot be read (its ``keys()``,
    ``__getitem__`` or iteration raises) becomes ``{"<unreadable>": "TypeName"}``, logged once.
    """
    if type(value) is dict:
        return value
    try:
        if isinstance(value, Mapping) or hasattr(type(value), "keys"):
            return dict(value)
    except Exception as exc:
        name = _type_name(value)
        warn_once(
            f"unreadable:{field}:{name}",
            "tracer: %s given as %s could not be read (%r); recorded as {%r: %r} (logged once)",
            field,
            name,
            exc,
            UNREADABLE_KEY,
            name,
        )
        return {UNREADABLE_KEY: name}
    return {wrap_key: value}


def merge_fields(target: dict[str, Any] | None, update: Any, field: str, wrap_key: str = "value") -> dict[str, Any]:
    """Shallow-merge *update* into a bucket (see ``as_fields`` for non-dicts); never raises."""
    if type(update) is not dict:
        update = as_fields(update, field, wrap_key)
    if target is None:
        return dict(update)
    try:
        target.update(update)
    except Exception:  # a dict subclass as *target* whose update() raises: start afresh
        return dict(update)
    return target


def _type_name(value: object) -> str:
    try:
        return type(value).__name__
    except Exception:  # pragma: no cover - a metaclass whose __name__ raises
        return "object"


def _plain_str(value: object) -> str:
    """``str(value)`` as an exact ``str`` (raises what the user's ``__str__`` raises)."""
    text = str(value)
    # A str subclass (str() returns it as is) would run the user's methods later on.
    return text if type(text) is str else str.__str__(text)


def safe_str(value: object) -> str:
    """``str(value)``, or ``"TypeName: <str() raised InnerError>"`` when that raises; never raises."""
    try:
        return _plain_str(value)
    except Exception as exc:
        return f"{_type_name(value)}: {UNPRINTABLE.format(_type_name(exc))}"


def describe_error(error: object, max_chars: int = 32768) -> str:
    """The ``error`` field: ``"TypeName: message"`` for an exception (``"TypeName"`` without a
    message), ``str(error)`` for anything else; never raises.

    When ``str()`` raises (or returns a non-str) the message is ``"<str() raised InnerError>"``,
    after the type name, exception or not. A message over *max_chars* keeps its head and states
    its length (the worker would cut it anyway; this keeps it from filling the queue).
    """
    try:
        message = _plain_str(error)
    except Exception as exc:
        return f"{_type_name(error)}: {UNPRINTABLE.format(_type_name(exc))}"
    if len(message) > max_chars:
        message = f"{message[:max_chars]}…[truncated: {len(message)} chars in total]"
    if not isinstance(error, BaseException):
        return message
    name = _type_name(error)
    return f"{name}: {message}" if message else name


def format_traceback(error: BaseException) -> str | None:
    """The formatted traceback of *error*, or None; never raises (the traceback module calls
    ``str()`` and ``repr()`` on the user's exceptions, their causes and notes)."""
    if error.__traceback__ is None:
        return None
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception as exc:
        warn_once(
            f"traceback:{_type_name(error)}",
            "tracer: the traceback of a %s could not be formatted (%r); not recorded (logged once)",
            _type_name(error),
            exc,
        )
        return None


class Session:
    """A group of events (one conversation, one request, one script run)."""

    __slots__ = (
        "config",
        "feedback",
        "inputs",
        "metadata",
        "metrics",
        "outputs",
        "sampled",
        "session_id",
        "session_name",
        "source",
        "start_ms",
        "tracer",
        "user_properties",
        "version",
    )

    def __init__(
        self,
        tracer: Tracer,
        session_id: str,
        session_name: str,
        source: str,
        sampled: bool,
        inputs: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        user_properties: dict[str, Any] | None = None,
    ) -> None:
        self.tracer = tracer
        self.session_id = session_id
        self.session_name = session_name
        self.source = source
        self.sampled = sampled
        self.inputs = inputs
        self.metadata = metadata
        self.user_properties = user_properties
        self.config: dict[str, Any] | None = None
        self.outputs: dict[str, Any] | None = None
        self.metrics: dict[str, Any] | None = None
        self.feedback: dict[str, Any] | None = None
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
    """An event being recorded. Use ``update()`` / ``set_error()`` while it is open.

    ``end()`` hands a snapshot of it to the delivery queue (an ``_record.EventRecord``); the span
    itself keeps the user's objects and is not read by the pipeline after that.
    """

    __slots__ = (
        "__weakref__",
        "children",
        "config",
        "deferred",
        "end_perf",
        "ended",
        "error",
        "event_name",
        "event_type",
        "feedback",
        "has_children",
        "id",
        "inputs",
        "metadata",
        "metrics",
        "outputs",
        "parent",
        "parent_int",
        "session",
        "start_perf",
        "tracer",
        "user_properties",
    )

    has_children: bool
    # The user's mappings (end() snapshots them into the queued record).
    inputs: Any
    outputs: Any
    config: Any
    metadata: Any
    metrics: Any
    feedback: Any
    user_properties: Any
    error: str | None
    children: list[int] | None
    # Fields shaped on the worker thread (LLM calls, see _deferred); set by the integrations.
    deferred: Deferred | None
    # Set by end(): before that they are not read.
    parent_int: int | None
    end_perf: int

    def __init__(
        self,
        tracer: Tracer,
        session: Session,
        parent: Span | None,
        event_name: str,
        event_type: str | None,
    ) -> None:
        # This runs for every traced call: keep it to plain stores (no calls but two cheap ones).
        self.tracer = tracer
        self.session = session
        self.parent = parent
        self.event_name = event_name
        self.event_type = event_type
        self.id = span_id = new_id()
        tracer._open_spans[span_id] = self  # so that spans left open at exit can be ended then
        self.inputs = self.outputs = self.config = self.metadata = None
        self.metrics = self.feedback = self.user_properties = None
        self.error = self.children = self.deferred = None
        self.has_children = self.ended = False
        if parent is not None:
            parent.has_children = True
        self.start_perf = _perf_ns()

    # -- public handle ------------------------------------------------------------------------

    @property
    def duration_ms(self) -> float | None:
        """Milliseconds from start to end (None while open)."""
        return (self.end_perf - self.start_perf) / 1_000_000 if self.ended else None

    @property
    def event_id(self) -> str:
        """This event's id (UUID4 string)."""
        return format_id(self.id)

    @property
    def session_id(self) -> str:
        """The id of the session this event belongs to."""
        return self.session.session_id

    @property
    def parent_id(self) -> str:
        """The parent event's id, or the session id for a root event (HoneyHive's convention)."""
        parent = self.parent_int if self.ended else (self.parent.id if self.parent is not None else None)
        return format_id(parent) if parent is not None else self.session.session_id

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
        if self.ended:
            self.tracer._late_update(self, locals())
            return
        if inputs is not None:
            self.inputs = merge_fields(self.inputs, inputs, "inputs")
        if outputs is not None:
            # "result", like a traced function's return value (sessions and late updates: "value")
            self.outputs = merge_fields(self.outputs, outputs, "outputs", "result")
        if config is not None:
            self.config = merge_fields(self.config, config, "config")
        if metadata is not None:
            self.metadata = merge_fields(self.metadata, metadata, "metadata")
        if metrics is not None:
            self.metrics = merge_fields(self.metrics, metrics, "metrics")
        if feedback is not None:
            self.feedback = merge_fields(self.feedback, feedback, "feedback")
        if user_properties is not None:
            self.user_properties = merge_fields(self.user_properties, user_properties, "user_properties")
        if error is not None:
            self.set_error(error)

    def set_error(self, error: BaseException | str) -> None:
        """Mark this event as failed: ``"Type: message"`` for an exception (traceback in metadata).

        Never raises, even for an exception whose ``str()`` raises (see ``describe_error``).
        """
        self.error = describe_error(error, self.tracer._limits.max_string_length)
        if isinstance(error, BaseException):
            trace = format_traceback(error)
            if trace is not None:
                self.metadata = merge_fields(self.metadata, {"traceback": trace}, "metadata")

    def end(self) -> None:
        """End the event now (idempotent). Called for you by decorators and ``with`` blocks."""
        if self.ended:
            return
        self.ended = True
        # Only the monotonic clock here; the worker maps it to wall time (see _clock).
        end_perf = self.end_perf = _perf_ns()
        try:
            self.tracer._open_spans.pop(self.id, None)
            # Snapshot every field to JSON bytes now (later mutation by the user changes nothing)
            # into the record the queue holds (see _record); inlined: this runs for every call.
            parent = self.parent
            parent_int: int | None
            if parent is not None:
                parent_int = self.parent_int = parent.id
                if not parent.ended:
                    children = parent.children
                    if children is None:
                        parent.children = [self.id]
                    else:
                        children.append(self.id)
                self.parent = None  # keep only the id: an ended span must not pin its ancestors
            else:
                parent_int = self.parent_int = None
            event_type = self.event_type
            if event_type is None:
                event_type = self.event_type = "chain" if self.has_children else "tool"
            deferred = self.deferred
            if deferred is not None:
                self._end_deferred(deferred, parent_int, event_type, end_perf)
                return
            size = _ITEM_OVERHEAD
            limits = self.tracer._limits  # only the converter (unusual values) reads them
            inputs = self.inputs
            if inputs is not None:
                inputs = snapshot(inputs, limits)
                size += len(inputs)
            outputs = self.outputs
            if outputs is not None:
                outputs = snapshot(outputs, limits)
                size += len(outputs)
            if (
                self.config is None
                and self.metadata is None
                and self.metrics is None
                and self.feedback is None
                and self.user_properties is None
            ):
                rare = None
            else:
                config, metadata, metrics, feedback, user_properties = (
                    None if value is None else snapshot(value, limits)
                    for value in (self.config, self.metadata, self.metrics, self.feedback, self.user_properties)
                )
                rare = (config, metadata, metrics, feedback, user_properties)
                size += sum(len(value) for value in rare if value is not None)
            children = self.children
            session = self.session
            record = (
                size,
                session.session_id,
                self.id,
                parent_int,
                # A lone child as a bare int: a nested tuple would keep the record GC-tracked a
                # generation longer (see _record).
                None if children is None else children[0] if len(children) == 1 else tuple(children),
                self.event_name,
                event_type,
                inputs,
                outputs,
                self.error,
                self.start_perf,
                end_perf,
                rare,
            )
            self.tracer._processor.on_end(record, session)
        except Exception as exc:  # a library failure must never reach the code that ended the span
            report_internal_error("finishing a span", exc)

    def _end_deferred(self, deferred: Deferred, parent_int: int | None, event_type: str, end_perf: int) -> None:
        """end() for a span whose fields the worker shapes: its own fields go along unserialized."""
        deferred.eager = self  # read by name (see _deferred.BUCKETS); an ended span's fields no longer change
        children = self.children
        session = self.session
        try:
            size = deferred.charged_size()
        except Exception as exc:
            report_internal_error("sizing an LLM event", exc)
            size = SIZE_ESTIMATE
        record: DeferredRecord = (
            _ITEM_OVERHEAD + size,
            session.session_id,
            self.id,
            parent_int,
            None if children is None else children[0] if len(children) == 1 else tuple(children),
            self.event_name,
            event_type,
            None,
            None,
            self.error,
            self.start_perf,
            end_perf,
            None,
            deferred,
        )
        self.deferred = None  # the record has it now
        self.tracer._processor.on_end(record, session)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "open"
        return f"<Span {self.event_type or '?'} {self.event_name!r} {self.event_id} {state}>"
