"""The context managers behind ``tracer.span()`` and ``tracer.session()``, and the detached span
handed out when nothing is recorded (tracing disabled, session sampled out)."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

from ._errors import report_internal_error
from ._fields import as_fields
from ._span import Recorder, Session, Span, current_session_var, current_span_var

__all__ = ["AlsoAsync", "SessionScope", "SpanScope"]

_Entered = TypeVar("_Entered")


class AlsoAsync(Generic[_Entered]):
    """Makes a ``with`` block usable as ``async with``: nothing in entering or leaving these scopes
    awaits, so the async forms are the sync ones (one definition, here)."""

    __slots__ = ()

    def __enter__(self) -> _Entered:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> _Entered:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class SpanScope(AlsoAsync[Span]):
    """The context manager behind ``tracer.span()``; yields the ``Span`` handle."""

    __slots__ = ("_args", "_previous", "_recorder", "_span")

    def __init__(
        self,
        recorder: Recorder,
        event_name: str,
        event_type: str | None,
        inputs: Mapping[str, Any] | None,
        config: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        self._recorder = recorder
        self._args = (event_name, event_type, inputs, config, metadata)
        self._span: Span | None = None
        self._previous: Span | None = None

    def __enter__(self) -> Span:
        recorder = self._recorder
        event_name, event_type, inputs, config, metadata = self._args
        # Everything that can fail is done before the span becomes current: a bad argument is
        # recorded as best it can be (see as_fields), and the context is changed last.
        try:
            span = None if recorder.disabled else recorder.start(event_name, event_type)
            if span is None:
                # Disabled or not sampled: hand out a detached span that is never exported.
                span = _detached_span(recorder, event_name, event_type)
            if inputs is not None and recorder.capture_content:
                span._inputs = dict(as_fields(inputs, "inputs"))
            if config is not None:
                span.update(config=config)
            if metadata is not None:
                span.update(metadata=metadata)
        except Exception as exc:
            report_internal_error("starting a span block", exc)
            span = _detached_span(recorder, event_name, event_type)
        if span._recorder is recorder:
            self._span = span
            self._previous = current_span_var.get()
            current_span_var.set(span)
        else:
            span._ended = True  # detached: updates are kept locally, end() does nothing
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if span is None:
            return
        current_span_var.set(self._previous)
        try:
            try:
                if exc is not None:
                    span.set_error(exc)
            finally:
                span.end()  # whatever happened above: a span left open would be lost for good
        except Exception as internal:
            report_internal_error("ending a span block", internal)


# Behind the spans handed out when nothing is recorded (disabled or sampled out): keeps no open
# spans, hands nothing on, and late updates (the span is ended from the start) go nowhere.
_DETACHED: Final = Recorder(track_open=False)


def _detached_span(recorder: Recorder, event_name: str, event_type: str | None) -> Span:
    span = Span(_DETACHED, recorder.default_session, None, event_name, event_type)
    span._parent_int = None
    return span


class SessionScope(AlsoAsync[Session]):
    """The context manager behind ``tracer.session()``; yields the ``Session``."""

    __slots__ = ("_previous_session", "_previous_span", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self._previous_session: Session | None = None
        self._previous_span: Span | None = None

    def __enter__(self) -> Session:
        self._previous_session = current_session_var.get()
        self._previous_span = current_span_var.get()
        current_session_var.set(self.session)
        current_span_var.set(None)  # events in a new session are its roots
        return self.session

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        current_session_var.set(self._previous_session)
        current_span_var.set(self._previous_span)
