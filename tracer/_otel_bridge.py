"""Spans of every OpenTelemetry instrumentation in this process as ``tracer`` events, in the same trees.

Turned on by the ``otel_bridge`` setting (extra ``tracer[otel]``: OpenTelemetry's API and SDK). A
span processor on the global SDK ``TracerProvider`` (installed when none is set) mirrors each
OpenTelemetry span with a ``BridgedSpan``, one of our spans:

- **Parents, both ways.** When an OpenTelemetry span starts, its parent is the innermost of its
  OpenTelemetry parent (a bridged span) and our current span: an OpenTelemetry span started inside
  one of our spans is its child. Its ``BridgedSpan`` is then made our current span in the context
  that started it, until it ends there (and whenever OpenTelemetry attaches a context holding it,
  until that context is detached: the runtime context is wrapped for that). So our spans started
  inside an OpenTelemetry span are its children, also for instrumentations that start spans
  without making them current (OpenInference's LangChain callbacks). Threads and tasks follow our
  context propagation: an OpenTelemetry span started in a thread our context was carried into is a
  child of the span that started the thread, even where OpenTelemetry alone would start a new trace.
- **Fields.** When the OpenTelemetry span ends, the bridged span takes its event type and name
  from its attributes, its error from its status and exception event, and ends; the rest of its
  fields (GenAI semantic conventions, OpenInference ``llm.*``, ``honeyhive_*``: the mapping the
  OTLP exporter and the collector use, ``_otlp_mapping.span_to_event``) are worked out on the
  worker thread, like an LLM call's (``_deferred``). OpenTelemetry's resource is left out (the
  same for every span of the process).
- **Sessions.** A bridged span joins its parent's session; one with no parent joins the session
  current here (``tracer.session()``), else a session whose id is the OpenTelemetry trace id (the
  collector's rule for the same span).
- **Native integrations win.** An OpenTelemetry span that maps to a ``model`` event is dropped
  when our own LLM integration recorded the same call: when it started inside our patched call
  (an instrumentation wrapping the client deeper than ours), or when our call ran inside it (one
  wrapping it higher up, or a framework's LLM span such as LangChain's ``ChatOpenAI`` run). In the
  second case our event is held until the OpenTelemetry span ends, then handed on as the child of
  that span's parent (its place in the tree) if it is dropped, or unchanged if it is kept.
  A framework whose LLM span is started where it cannot become current (LangChain's ``ainvoke``
  runs OpenInference's callbacks in an executor) is asked for its run current here instead
  (``native_parent``).

Nothing here runs on our own spans' path: with the bridge off (the default), no OpenTelemetry
module is imported and no hook is installed. OpenTelemetry is imported through ``importlib`` as
``Any``: it is an optional dependency, typed or not.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any, Final

from . import _otlp_mapping as mapping
from ._context import current_session_var, current_span_var, inside_call, suppressed
from ._deferred import Deferred
from ._errors import ConfigError, logger, report_internal_error, warn_once
from ._span import Recorder, Session, Span, recorder_here

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._record import DeferredRecord

__all__ = [
    "BridgedSpan",
    "adopt_native_call",
    "check_available",
    "disable",
    "enable",
    "is_enabled",
    "native_parent",
]

_EXTRA_HINT: Final = "pip install 'tracer-ai[otel]' (opentelemetry-api and opentelemetry-sdk)"

# Attribute keys (by prefix) that carry prompts and completions: left out of metadata when
# capture_content is off (inputs and outputs are left out whole).
_CONTENT_PREFIXES: Final = (
    "input.",
    "output.",
    "llm.input_messages",
    "llm.output_messages",
    "llm.prompts",
    "llm.prompt_template",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "otel.events",
)
# Bytes charged against the queue's byte bound per attribute of a bridged span that is not text
# (text counts its length), until the worker shapes it: the same per-leaf charge as an LLM call's
# arguments (integrations/_llm.py, _LEAF_BYTES).
_LEAF_BYTES: Final = 64

# The attributes that name an event type (see _otlp_mapping.event_type_of).
_TYPE_KEYS: Final = frozenset(
    {
        "honeyhive_event_type",
        "honeyhive.event_type",
        "gen_ai.operation.name",
        "openinference.span.kind",
        "traceloop.span.kind",
    }
)
# What became of a bridged span's OpenTelemetry span.
_OPEN: Final = 0
_KEPT: Final = 1
_DROPPED: Final = 2

_lock = threading.RLock()
_active = False
_processor: Any = None  # the SpanProcessor added to the SDK TracerProvider (once per process)
_context_hook: _RuntimeContextHook | None = None
# Every open OpenTelemetry span by span id -> its BridgedSpan, or None for one not recorded (sampled
# out, tracing disabled, our exporters' own traffic), so that its children are not recorded either.
_by_otel: dict[int, BridgedSpan | None] = {}
# The default tracer's recorder: it records the OpenTelemetry spans that start outside our spans.
_default_recorder: Recorder | None = None
_MISSING: Final = object()


def check_available() -> None:
    """Raise ``ConfigError`` naming the setting and the extra when OpenTelemetry's SDK is missing."""
    try:
        found = importlib.util.find_spec("opentelemetry.sdk.trace") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"setting 'otel_bridge' needs OpenTelemetry's SDK, which is not installed: {_EXTRA_HINT}")
    # Following OpenTelemetry's current span means wrapping its runtime context, which its API
    # keeps in two private module attributes: an opentelemetry-api without them is one this bridge
    # does not know, which init() says rather than failing midway.
    missing = [
        f"{module}.{name}"
        for module, name in (
            ("opentelemetry.context", "_RUNTIME_CONTEXT"),
            ("opentelemetry.trace.propagation", "_SPAN_KEY"),
        )
        if not hasattr(importlib.import_module(module), name)
    ]
    if missing:
        raise ConfigError(
            f"setting 'otel_bridge' does not support the installed opentelemetry-api "
            f"({_api_version()}): it has no {', '.join(missing)}"
        )


def _api_version() -> str:
    try:
        return importlib.metadata.version("opentelemetry-api")
    except importlib.metadata.PackageNotFoundError:
        return "version unknown"


def is_enabled() -> bool:
    return _active


def enable(default_recorder: Recorder) -> None:
    """Bridge every OpenTelemetry span of the process from now on, those outside our spans into
    *default_recorder* (the default tracer's). Idempotent."""
    global _active, _processor, _context_hook, _default_recorder
    with _lock:
        _default_recorder = default_recorder
        if _processor is None:
            _processor = _make_processor()
            if not _add_to_global_provider(_processor):
                _processor = None
                return
        if _context_hook is None:
            context: Any = importlib.import_module("opentelemetry.context")
            _context_hook = _RuntimeContextHook(context._RUNTIME_CONTEXT)
            context._RUNTIME_CONTEXT = _context_hook
        _active = True


def disable() -> None:
    """Stop bridging (the processor stays on the provider, which has no way to remove it: it then
    passes everything by). Idempotent."""
    global _active, _context_hook
    with _lock:
        _active = False
        if _context_hook is not None:
            context: Any = importlib.import_module("opentelemetry.context")
            if context._RUNTIME_CONTEXT is _context_hook:
                context._RUNTIME_CONTEXT = _context_hook.inner
            _context_hook = None
        _by_otel.clear()


def _add_to_global_provider(processor: Any) -> bool:
    """Add *processor* to the global SDK TracerProvider, installing one if none is set."""
    trace_api: Any = importlib.import_module("opentelemetry.trace")
    sdk: Any = importlib.import_module("opentelemetry.sdk.trace")
    provider = trace_api.get_tracer_provider()
    if isinstance(provider, trace_api.ProxyTracerProvider):
        trace_api.set_tracer_provider(sdk.TracerProvider())
        provider = trace_api.get_tracer_provider()  # ours, or one set meanwhile by another thread
        logger.debug("tracer: installed OpenTelemetry's SDK TracerProvider for the OpenTelemetry bridge")
    if not isinstance(provider, sdk.TracerProvider):
        warn_once(
            "otel-bridge-provider",
            "tracer: the global OpenTelemetry TracerProvider is a %s, not the SDK's: its spans cannot be bridged",
            type(provider).__name__,
        )
        return False
    provider.add_span_processor(processor)
    return True


def _make_processor() -> Any:
    """The span processor (a subclass of the SDK's, which is only importable with the extra)."""
    sdk: Any = importlib.import_module("opentelemetry.sdk.trace")

    class BridgeSpanProcessor(sdk.SpanProcessor):  # type: ignore[misc]
        """Mirrors OpenTelemetry spans as tracer events (see the module docstring)."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            if _active:
                try:
                    _on_start(span)
                except Exception as exc:
                    report_internal_error("bridging an OpenTelemetry span", exc)

        def on_end(self, span: Any) -> None:
            if _active or _by_otel:
                try:
                    _on_end(span)
                except Exception as exc:
                    report_internal_error("bridging an ended OpenTelemetry span", exc)

    return BridgeSpanProcessor()


# -- the bridged span --------------------------------------------------------------------------


class BridgedSpan(Span):
    """One of our spans standing for an open OpenTelemetry span (see the module docstring)."""

    __slots__ = ("held", "native_ids", "otel_previous", "outcome", "within_native")

    held: list[tuple[DeferredRecord, Session]]
    native_ids: list[int]
    otel_previous: Span | None
    outcome: int
    within_native: bool

    def end(self) -> None:
        """End it now with what it has (at exit, for a span OpenTelemetry never ended)."""
        if self._ended:
            return
        self._release(_KEPT)
        Span.end(self)

    def _release(self, outcome: int) -> None:
        """Settle what became of it, and hand on the native LLM events held under it."""
        with _lock:
            if self.outcome != _OPEN:
                return
            self.outcome = outcome
            held, self.held = self.held, []
        for record, session in held:
            _hand_on_native(self, record, session)

    def _drop(self) -> None:
        """Record nothing for it: its native LLM calls take its place under its parent."""
        parent = self._parent
        if parent is not None and not parent._ended and parent._children is not None:
            siblings = parent._children
            if self._id in siblings:
                at = siblings.index(self._id)
                siblings[at : at + 1] = self.native_ids
        self._parent_int = parent._id if parent is not None else None  # where its native calls go
        self._parent = None
        self._ended = True
        if self._tracked:
            self._recorder.open_spans.pop(self._id, None)
        self._release(_DROPPED)


def _new_bridged(
    recorder: Recorder, session: Session, parent: Span | None, name: str, previous: Span | None
) -> BridgedSpan:
    span = BridgedSpan(recorder, session, parent, name, None)
    span.held = []
    span.native_ids = []
    span.otel_previous = previous
    span.outcome = _OPEN
    span.within_native = inside_call.get()
    return span


def _openinference_langchain(module: Any) -> Any:
    # Asked only once instrumented: its get_current_span() prints a warning otherwise.
    if not module.LangChainInstrumentor().is_instrumented_by_opentelemetry:
        return None
    return module.get_current_span()


# Frameworks that keep their current run in a context of their own, not OpenTelemetry's: their
# instrumentation's module, and how to ask it for the OpenTelemetry span current here by it.
# LangChain's ``ainvoke`` runs OpenInference's callbacks in an executor (a copied context, another thread), so
# the span of the chat model run is never current where the model's client call is made; the run
# of its caller (LangChain's ``var_child_runnable_config``) is carried into the task.
_FRAMEWORK_SPANS: Final = (("openinference.instrumentation.langchain", _openinference_langchain),)


def native_parent(current: Span | None) -> Span | None:
    """The parent of our LLM call starting here under *current*: the framework's LLM span, started
    in another thread, that stands for this very call, when one is open; else *current*.

    The framework names the run current here (the chat model's caller, a chain); the call's own span
    is the newest open leaf under it (in the synchronous case it is current here already, below the
    framework's run: *current* is kept). Two runs open at once under one run (a parallel step) may
    take each other's calls: two chat models are both dropped for them, in the same place of the
    tree; a tool's span running beside the chat model would get the call as its child.
    """
    for module_name, current_span_of in _FRAMEWORK_SPANS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        try:
            framework_span = current_span_of(module)
            if framework_span is None:
                continue
            run = _by_otel.get(framework_span.get_span_context().span_id)
        except Exception as exc:
            report_internal_error(f"asking {module_name} for its current span", exc)
            continue
        if not isinstance(run, BridgedSpan) or (current is not None and not _descends(run, current)):
            continue  # not recorded, or ours is inside it: ours is the innermost
        with _lock:
            leaves = [
                span
                for span in _by_otel.values()
                if span is not None
                and span._parent is run
                and span.outcome == _OPEN
                and not span.native_ids
                and span._children is None
            ]
        return leaves[-1] if leaves else current
    return current


def adopt_native_call(parent: BridgedSpan, native: Span, call: Deferred) -> None:
    """Our LLM integration started *native* (its event shaped by *call*) under *parent*: hold its
    event until *parent*'s OpenTelemetry span ends (see the module docstring)."""
    with _lock:
        if parent.outcome == _OPEN:
            parent.native_ids.append(native._id)
    call.redirect = functools.partial(_native_ended, parent)


def _native_ended(parent: BridgedSpan, record: DeferredRecord, session: Session) -> None:
    with _lock:
        if parent.outcome == _OPEN:
            parent.held.append((record, session))
            return
    _hand_on_native(parent, record, session)


def _hand_on_native(parent: BridgedSpan, record: DeferredRecord, session: Session) -> None:
    """Hand on a native LLM event of *parent*: in its place when it was dropped."""
    if parent.outcome == _DROPPED:
        record = (*record[:3], parent._parent_int, *record[4:])
    try:
        session.recorder.hand_on(record, session)
    except Exception as exc:
        report_internal_error("handing on an LLM event", exc)


# -- OpenTelemetry's side ----------------------------------------------------------------------


def _descends(span: Span | None, ancestor: Span) -> bool:
    """True if *ancestor* is *span* or one of its open ancestors."""
    while span is not None:
        if span is ancestor:
            return True
        span = span._parent
    return False


def _on_start(otel_span: Any) -> None:
    span_id: int = otel_span.context.span_id
    if suppressed.get():  # our exporters' own requests
        _by_otel[span_id] = None
        return
    current = current_span_var.get()
    parent = current
    otel_parent = otel_span.parent
    if otel_parent is not None and otel_parent.is_valid:
        known = _by_otel.get(otel_parent.span_id, _MISSING)
        if known is None:
            _by_otel[span_id] = None  # its parent is not recorded: nor is it
            return
        if isinstance(known, BridgedSpan) and not _descends(current, known):
            parent = known  # an explicit parent, or ours started before it: the innermost wins
    recorder = recorder_here(parent) or _default_recorder
    if recorder is None or recorder.disabled:
        _by_otel[span_id] = None
        return
    if parent is not None and parent._recorder is not recorder:
        parent = None
    if parent is not None:
        session = parent._session
    else:
        here = current_session_var.get()
        if here is not None and here.recorder is recorder:
            session = here
        else:
            trace_id = f"{otel_span.context.trace_id:032x}"
            session = recorder.new_session(str(uuid.UUID(hex=trace_id)), recorder.default_session.session_name)
    if not session.sampled:
        _by_otel[span_id] = None
        return
    bridged = _new_bridged(recorder, session, parent, str(otel_span.name), current)
    _by_otel[span_id] = bridged
    current_span_var.set(bridged)


def _on_end(otel_span: Any) -> None:
    bridged = _by_otel.pop(otel_span.context.span_id, None)
    if bridged is None:
        return
    if current_span_var.get() is bridged:  # ended where it started: what was current comes back
        current_span_var.set(bridged.otel_previous)
    bridged.otel_previous = None
    if bridged._ended:  # ended at exit already
        return
    span = _mapping_span(otel_span)
    event_type = mapping.event_type_of(span.attributes)
    if event_type == "model" and (bridged.native_ids or bridged.within_native):
        bridged._drop()  # our native integration recorded this call
        return
    name = span.attributes.get("honeyhive_event_name")
    bridged._event_name = name if isinstance(name, str) and name else span.name
    if event_type == "tool" and bridged._children is not None and not _TYPE_KEYS.intersection(span.attributes):
        event_type = "chain"  # no type said: like our own spans, chain when it had children
    bridged._event_type = event_type
    bridged._error = mapping.error_of(span)
    fields = SpanFields(span, bridged._recorder.capture_content)
    bridged._deferred = fields
    bridged.end()


def _attribute(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _mapping_span(otel_span: Any) -> mapping.Span:
    """The encoding-free span of ``_otlp_mapping`` for an ended SDK span (its attributes copied)."""
    context = otel_span.context
    parent = otel_span.parent
    status = otel_span.status
    scope = otel_span.instrumentation_scope
    return mapping.Span(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent is not None and parent.is_valid else "",
        name=str(otel_span.name),
        start_time_unix_nano=int(otel_span.start_time or 0),
        end_time_unix_nano=int(otel_span.end_time or otel_span.start_time or 0),
        kind=int(otel_span.kind.value) + 1,  # the SDK counts from INTERNAL = 0, OTLP from 1
        attributes={str(key): _attribute(value) for key, value in (otel_span.attributes or {}).items()},
        events=[
            mapping.SpanEvent(
                str(event.name),
                int(event.timestamp or 0),
                {str(key): _attribute(value) for key, value in (event.attributes or {}).items()},
            )
            for event in otel_span.events
        ],
        status_code=int(status.status_code.value) if status is not None else mapping.STATUS_UNSET,
        status_message=str(status.description or "") if status is not None else "",
        scope_name=str(scope.name) if scope is not None else "",
    )


class SpanFields(Deferred):
    """A bridged span's fields, mapped from its OpenTelemetry span on the worker thread."""

    __slots__ = ("capture", "size", "span")

    def __init__(self, span: mapping.Span, capture: bool) -> None:
        super().__init__()
        self.span: mapping.Span | None = span
        self.capture = capture
        self.size = sum(len(v) if isinstance(v, str) else _LEAF_BYTES for v in span.attributes.values())

    def charged_size(self) -> int:
        return self.size

    def shape(self) -> dict[str, Mapping[str, Any] | None]:
        span, self.span = self.span, None
        if span is None:
            return {}
        event, _ = mapping.span_to_event(span)
        metadata = event["metadata"]
        for key in ("otel.trace_id", "otel.span_id"):  # ids to find the span in other OpenTelemetry backends
            metadata[key] = getattr(span, key[5:])
        fields: dict[str, Mapping[str, Any] | None] = {
            name: event[name] for name in ("config", "metadata", "metrics", "feedback", "user_properties")
        }
        if self.capture:
            fields["inputs"] = event["inputs"]
            fields["outputs"] = event["outputs"]
        else:
            fields["metadata"] = {key: v for key, v in metadata.items() if not key.startswith(_CONTENT_PREFIXES)}
        return fields


# -- OpenTelemetry's current context, seen by our spans ------------------------------------------


class _Restore:
    """The token of an ``attach`` that also changed our current span: what to put back at ``detach``."""

    __slots__ = ("inner", "previous")

    def __init__(self, inner: Any, previous: Span | None) -> None:
        self.inner = inner
        self.previous = previous


class _RuntimeContextHook:
    """OpenTelemetry's runtime context, wrapped: attaching a context whose span is a bridged one makes
    that span our current span too, until the context is detached."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._span_key: str = importlib.import_module("opentelemetry.trace.propagation")._SPAN_KEY

    def attach(self, context: Any) -> Any:
        token = self.inner.attach(context)
        if not _active:
            return token
        try:
            otel_span = context.get(self._span_key)
            if otel_span is None:
                return token
            bridged = _by_otel.get(otel_span.get_span_context().span_id)
            previous = current_span_var.get()
            if bridged is None or previous is bridged:
                return token
            current_span_var.set(bridged)
            return _Restore(token, previous)
        except Exception as exc:
            report_internal_error("following OpenTelemetry's current span", exc)
            return token

    def detach(self, token: Any) -> None:
        if isinstance(token, _Restore):
            self.inner.detach(token.inner)
            current_span_var.set(token.previous)
        else:
            self.inner.detach(token)

    def get_current(self) -> Any:
        return self.inner.get_current()
