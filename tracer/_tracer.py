"""``Tracer``: owns the settings, the sessions and the pipeline; the default instance behind the module API."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from . import _lifecycle, _otel_bridge, _schema
from ._capture import Limits, Sanitizer
from ._config import Config, resolve_config
from ._context import bind_context, install_thread_propagation, uninstall_thread_propagation
from ._decorators import TraceSpec, make_decorator, running_call_spans, validate_event_type
from ._encode import Encoder
from ._errors import ConfigError, logger, report_internal_error
from ._export import Exporter, as_exporter_list
from ._fields import merge_fields, safe_str
from ._ids import format_id, new_id, parse_uuid
from ._pipeline import BatchProcessor, Processor, Stats, SyncProcessor
from ._propagation import Headers, TraceScope, inject
from ._scopes import SessionScope, SpanScope
from ._span import Recorder, RecorderRef, Session, Span
from ._spool import Spool

__all__ = ["Tracer", "recorder_of", "trace_with"]

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")
S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


class Tracer:
    """Records events and ships them. ``tracer.init()`` configures the default one.

    Arguments left as ``None`` fall back to the environment, then to the defaults (README table).
    """

    def __init__(
        self,
        project: str | None = None,
        api_key: str | None = None,
        server_url: str | None = None,
        source: str | None = None,
        session_name: str | None = None,
        exporter: Exporter | Sequence[Exporter] | None = None,
        **options: Any,
    ) -> None:
        self._lock = threading.RLock()
        # The interface its spans, decorators and scopes see (settings, starting and handing on
        # spans, the open spans ended at exit); updated in place by configure().
        self._recorder = Recorder()
        # True for the tracer behind the module-level API (see _default): the only one whose
        # configuration changes process-wide state.
        self._is_default = False
        self.configure(project, api_key, server_url, source, session_name, exporter, **options)

    # -- configuration --------------------------------------------------------------------------

    def configure(
        self,
        project: str | None = None,
        api_key: str | None = None,
        server_url: str | None = None,
        source: str | None = None,
        session_name: str | None = None,
        exporter: Exporter | Sequence[Exporter] | None = None,
        **options: Any,
    ) -> Tracer:
        """(Re)configure in place: validates everything first, then swaps the pipeline.

        Calling it again replaces the exporters and the default session; the previous pipeline
        is drained and its worker stopped, so nothing is duplicated.
        """
        config = resolve_config(
            {
                "project": project,
                "api_key": api_key,
                "server_url": server_url,
                "source": source,
                "session_name": session_name,
                **options,
            }
        )
        if config.otel_bridge:
            _otel_bridge.check_available()
        exporters = as_exporter_list(exporter)
        for item in exporters:
            if not isinstance(item, Exporter):
                raise ConfigError(
                    f"setting 'exporter' must be an Exporter or a list of them, got {type(item).__name__}"
                )
        if not exporters:
            exporters = self._default_exporters(config)
        limits = Limits(
            max_string_length=config.max_string_length,
            max_depth=config.max_depth,
            max_items=config.max_items,
            max_event_bytes=config.max_event_bytes,
            scrub=config.scrub,
            scrub_keys=config.scrub_keys,
            scrub_patterns=config.scrub_patterns,
        )
        sanitizer = Sanitizer(limits)
        stats = Stats()
        encoder = Encoder(config.project, sanitizer, config.mask)
        processor: Processor
        if config.batch:
            processor = BatchProcessor(
                exporters,
                encoder,
                stats,
                spools=self._spools(config, exporters),
                max_queue_size=config.max_queue_size,
                max_queue_bytes=config.max_queue_bytes,
                max_batch_size=config.max_batch_size,
                max_batch_bytes=config.max_batch_bytes,
                flush_interval=config.flush_interval,
                first_flush_interval=config.first_flush_interval,
            )
        else:
            processor = SyncProcessor(exporters, encoder, stats)
        with self._lock:
            old: Processor | None = getattr(self, "_processor", None)
            self.config = config
            self._sanitizer = sanitizer
            self._stats = stats
            self._processor: Processor = processor
            self.exporters = exporters
            recorder = self._recorder
            recorder.disabled = config.disabled
            recorder.capture_content = config.capture_content
            recorder.limits = limits
            recorder.sample_rate = config.sample_rate
            recorder.source = config.source
            recorder.hand_on = processor.on_end
            recorder.default_session = self._new_session(None, config.session_name, None, None, None)
        if old is not None:
            # Exporters handed on to the new pipeline must stay open.
            old.shutdown(config.exit_timeout, keep=exporters)
        if config.debug:
            logger.setLevel("DEBUG")
        if self._is_default:
            self._apply_process_settings()
        _lifecycle.register(self)  # open spans ended and the queue drained at exit
        return self

    def _apply_process_settings(self) -> None:
        """Apply the settings that change the whole process (LLM patching, thread propagation).

        Only the default tracer (``init()``) does this: a ``Tracer`` built by a library or a test
        must not undo what the application's ``init()`` set up.
        """
        config = self.config
        if config.propagate_to_threads and not config.disabled:
            install_thread_propagation()
        else:
            uninstall_thread_propagation()
        # False (or disabled) still goes through auto_instrument: it undoes what an earlier
        # init() patched, and keeps what instrument() was asked for explicitly.
        self._instrument(config.instrument if not config.disabled else False)
        self._propagate_http(config.propagate_http and not config.disabled)
        self._bridge_otel(config.otel_bridge and not config.disabled)

    def _propagate_http(self, on: bool) -> None:
        """Turn trace headers on outgoing httpx/requests calls on (never to our own endpoints) or off."""
        try:
            from .integrations import _propagate
        except ImportError:  # the integrations package is optional in a minimal install
            return
        try:
            if on:
                _propagate.enable(self._own_endpoints())
            else:
                _propagate.disable()
        except Exception as exc:
            report_internal_error("patching HTTP clients for trace propagation", exc)

    def _own_endpoints(self) -> list[str]:
        """The URLs this tracer sends to: the server URL and every exporter's endpoint."""
        urls = [self.config.server_url]
        for exporter in self.exporters:
            for name in ("server_url", "endpoint"):
                value = getattr(exporter, name, None)
                if isinstance(value, str):
                    urls.append(value)
        return urls

    def _bridge_otel(self, on: bool) -> None:
        """Turn the OpenTelemetry bridge on or off (``otel_bridge``: a process-wide hook)."""
        try:
            if on:
                _otel_bridge.enable(self._recorder)
            elif _otel_bridge.is_enabled():
                _otel_bridge.disable()
        except Exception as exc:
            report_internal_error("bridging OpenTelemetry", exc)

    def _instrument(self, names: bool | tuple[str, ...]) -> None:
        """Patch the installed LLM client libraries (now, or when they are imported later)."""
        try:
            from .integrations import auto_instrument
        except ImportError:  # the integrations package is optional in a minimal install
            return
        try:
            auto_instrument((None if names else ()) if isinstance(names, bool) else names)
        except Exception as exc:
            report_internal_error("instrumenting LLM clients", exc)

    def _default_exporters(self, config: Config) -> list[Exporter]:
        """With an API key: the HoneyHive exporter; with ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``: the
        OTLP exporter (both when both are set; plus the local store if ``store`` is set);
        with neither: the local store, ``./.tracer/traces.db`` by default, announced once on stderr."""
        exporters: list[Exporter] = []
        if config.api_key:
            from .exporters.honeyhive import HoneyHiveExporter

            exporters.append(
                HoneyHiveExporter(
                    config.api_key,
                    config.server_url,
                    gzip=config.gzip,
                    export_timeout=config.export_timeout,
                    max_in_flight=config.max_in_flight,
                    project=config.project,
                )
            )
        from .exporters.otlp import otlp_exporter_from_env

        otlp = otlp_exporter_from_env(os.environ, config.project, config.export_timeout, config.max_in_flight)
        if otlp is not None:
            exporters.append(otlp)
        if exporters and config.store is None:
            return exporters
        from .store import SQLiteExporter, announce

        local = SQLiteExporter(config.store)
        if not exporters:
            announce(local.path)
        exporters.append(local)
        return exporters

    def _spools(self, config: Config, exporters: list[Exporter]) -> list[Spool | None]:
        """A spool for each exporter that can fail transiently (HoneyHive-compatible and OTLP ones), or None.

        The first gets the ``spool`` path itself (``./.tracer/spool.db`` by default); any other
        one the same path with its position in the list, so that each spool is replayed only to
        the exporter that could not deliver it. Files are opened later, on the worker thread.
        """
        if config.spool is False:
            return [None] * len(exporters)
        from .exporters.honeyhive import HoneyHiveExporter
        from .exporters.otlp import OTLPExporter
        from .store.spool import SQLiteSpool, default_spool_path

        path = default_spool_path(None if config.spool is True else config.spool)
        spools: list[Spool | None] = []
        count = 0
        for exporter in exporters:
            if not isinstance(exporter, (HoneyHiveExporter, OTLPExporter)):
                spools.append(None)
                continue
            root, ext = os.path.splitext(path)
            spools.append(SQLiteSpool(path if count == 0 else f"{root}-{count}{ext}", config.max_spool_bytes))
            count += 1
        return spools

    def _new_session(
        self,
        session_id: str | None,
        session_name: str,
        inputs: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        user_properties: Mapping[str, Any] | None,
    ) -> Session:
        sid = parse_uuid(session_id, "session_id") if session_id is not None else format_id(new_id())
        return self._recorder.new_session(sid, session_name, inputs, metadata, user_properties)

    # -- public API -----------------------------------------------------------------------------

    @overload
    def trace(self, func: F, /) -> F: ...

    @overload
    def trace(
        self,
        func: None = None,
        /,
        *,
        event_type: str | None = None,
        event_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        capture_inputs: bool = True,
        capture_output: bool = True,
        ignore_inputs: Iterable[str] = (),
    ) -> Callable[[F], F]: ...

    def trace(
        self,
        func: F | None = None,
        /,
        *,
        event_type: str | None = None,
        event_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        capture_inputs: bool = True,
        capture_output: bool = True,
        ignore_inputs: Iterable[str] = (),
    ) -> F | Callable[[F], F]:
        """Trace a function, coroutine, generator or method: ``@tracer.trace`` or ``@tracer.trace(...)``."""
        decorated: F | Callable[[F], F] = trace_with(
            RecorderRef(self._recorder),
            func,
            event_type,
            event_name,
            config,
            metadata,
            capture_inputs,
            capture_output,
            ignore_inputs,
        )
        return decorated

    def span(
        self,
        event_name: str,
        event_type: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SpanScope:
        """``with tracer.span("name") as s:`` (or ``async with``) records one event for the block.

        A bad ``event_type`` raises ``ValueError`` here, before anything starts (a programming
        error, like a bad decorator argument); other bad arguments never raise (see ``as_fields``).
        """
        if type(event_name) is not str:
            event_name = safe_str(event_name)  # the wire schema wants a string
        return SpanScope(self._recorder, event_name, validate_event_type(event_type), inputs, config, metadata)

    def session(
        self,
        session_name: str | None = None,
        session_id: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_properties: Mapping[str, Any] | None = None,
    ) -> SessionScope:
        """``with tracer.session(...)``: events inside belong to a new session (e.g. one per request)."""
        session = self._new_session(
            session_id, session_name or self.config.session_name, inputs, metadata, user_properties
        )
        return SessionScope(session)

    def inject(self, headers: Headers) -> Headers:
        """Write W3C ``traceparent``, ``tracestate`` and ``baggage`` for the current span (else the
        current session, flagged not sampled if it is sampled out) into *headers* (a dict or other
        mutable mapping) and return it; unchanged with neither."""
        return inject(headers)

    def continue_trace(self, headers: Any, session_name: str | None = None) -> TraceScope:
        """``with tracer.continue_trace(request.headers):`` (or ``async with``): events inside join
        the caller's session as children of its span. Headers without a valid trace context change
        nothing (the block yields None); *session_name* names a session the caller did not name."""
        return TraceScope(self._recorder, headers, session_name)

    def current_span(self) -> Span | None:
        """The innermost open span of this context, or None."""
        return self._recorder.current_span()

    def current_session(self) -> Session:
        """The session events started now would join."""
        return self._recorder.current_session()

    def enrich_span(
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
    ) -> bool:
        """Merge fields into the current span. Returns False (and logs at debug) when there is none."""
        span = self.current_span()
        if span is None:
            logger.debug("tracer: enrich_span() called outside of any span; ignored")
            return False
        span.update(
            inputs=inputs,
            outputs=outputs,
            config=config,
            metadata=metadata,
            metrics=metrics,
            feedback=feedback,
            user_properties=user_properties,
            error=error,
        )
        return True

    def enrich_session(
        self,
        *,
        inputs: Any = None,
        outputs: Any = None,
        config: Any = None,
        metadata: Any = None,
        metrics: Any = None,
        feedback: Any = None,
        user_properties: Any = None,
    ) -> None:
        """Merge fields into the current session (sent with its events and as a session update)."""
        session = self.current_session()
        fields = {
            "inputs": inputs,
            "outputs": outputs,
            "config": config,
            "metadata": metadata,
            "metrics": metrics,
            "feedback": feedback,
            "user_properties": user_properties,
        }
        with self._lock:
            for name in _schema.BUCKETS:
                value = fields[name]
                if value is not None:
                    setattr(session, name, merge_fields(getattr(session, name), value, name))
            session.version += 1
        self._recorder.enqueue_update(session.session_id, session, fields)

    @overload
    def bind_context(self, fn: Generator[Y, S, R]) -> Generator[Y, S, R]: ...

    @overload
    def bind_context(self, fn: AsyncGenerator[Y, S]) -> AsyncGenerator[Y, S]: ...

    @overload
    def bind_context(self, fn: Iterator[Y]) -> Iterator[Y]: ...

    @overload
    def bind_context(self, fn: AsyncIterator[Y]) -> AsyncIterator[Y]: ...

    @overload
    def bind_context(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def bind_context(self, fn: Any) -> Any:
        """Make *fn* (a function, or a generator, async generator or other iterator) run under the
        current span and session, wherever it is called or iterated."""
        return bind_context(fn)

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver everything finished so far; True only if all of it was accepted (since the last flush)."""
        processor = self._processor
        return processor.flush(timeout)

    async def aflush(self, timeout: float = 5.0) -> bool:
        """``flush()`` without blocking the event loop."""
        processor = self._processor
        if isinstance(processor, BatchProcessor):
            return await processor.aflush(timeout)
        return self.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Drain, stop the worker and close exporters. Events ended afterwards are counted as dropped."""
        if self._is_default and self.config.propagate_http:
            self._propagate_http(False)  # nothing is recorded any more: outgoing calls go out as sent
        self._processor.shutdown(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters: events created, queued, sent, dropped by reason, requests retried/failed, queue now."""
        stats = self._stats
        processor = self._processor
        size, size_bytes = processor.queue_size()
        spool_backlog, spool_bytes = processor.spool_backlog()
        accepted = processor.accepted()
        with stats.lock:
            dropped = dict(stats.dropped)
            return {
                # Every ended event is offered to the pipeline: accepted, or refused after shutdown.
                "created": accepted + dropped["after_shutdown"],
                "queued": accepted,
                "sent": stats.sent,
                "updates_sent": stats.updates_sent,
                "spooled": stats.spooled,
                "replayed": stats.replayed,
                "spool_backlog": spool_backlog,
                "spool_bytes": spool_bytes,
                "dropped": dropped,
                "dropped_total": sum(dropped.values()),
                "retried_requests": stats.retried_requests,
                "failed_requests": stats.failed_requests,
                "queue_size": size,
                "queue_bytes": size_bytes,
                "last_error": stats.last_error,
            }

    # -- exit (the _lifecycle.Exiting protocol) -------------------------------------------------

    def end_open_generators(self) -> None:
        """End the spans of generators suspended mid-iteration (at exit)."""
        self._recorder.end_open_generators()

    def end_open_spans(self) -> None:
        """End every span still open, innermost first (at exit)."""
        self._recorder.end_open_spans(running_call_spans())

    def exit_shutdown(self) -> None:
        """Drain within ``exit_timeout`` and stop (at exit)."""
        self.shutdown(self.config.exit_timeout)


def recorder_of(tracer: Tracer) -> Recorder:
    """The ``Recorder`` of *tracer* (for the module API and the integrations)."""
    return tracer._recorder


def trace_with(
    recorder: RecorderRef,
    func: Any,
    event_type: str | None,
    event_name: str | None,
    config: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    capture_inputs: bool,
    capture_output: bool,
    ignore_inputs: Iterable[str],
) -> Any:
    spec = TraceSpec(event_type, event_name, config, metadata, capture_inputs, capture_output, tuple(ignore_inputs))

    def decorate(fn: Any) -> Any:
        return make_decorator(fn, recorder, spec)

    if func is None:
        return decorate
    return decorate(func)
