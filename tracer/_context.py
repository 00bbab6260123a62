"""Carrying the ``contextvars`` stack of open spans into threads, executors and streams.

The current span and session are ``ContextVar``s (defined with ``Span`` in ``_span``, re-exported
here); a span's parent link makes the stack. We always restore
by ``var.set(previous)`` rather than ``var.reset(token)``: a token is bound to the ``Context`` it was
made in, and generators and streams are resumed from other contexts, where ``reset`` raises
("was created in a different Context"), the log flood peers are known for.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import threading
import types
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any, ParamSpec, TypeVar, overload

from ._span import Session, Span, current_session_var, current_span_var

__all__ = [
    "bind_context",
    "current_session_var",
    "current_span_var",
    "inside_call",
    "install_thread_propagation",
    "suppressed",
    "uninstall_thread_propagation",
]

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")
S = TypeVar("S")

# "Don't trace this": set on the worker and sender threads, so that auto-instrumentation never
# traces the exporters' own HTTP calls.
suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar("tracer.suppressed", default=False)
# True while one of the LLM integrations' wrappers runs the client method: a patched layer called
# by another patched layer (a stream helper calling create, a re-entrant wrapper) records nothing more.
inside_call: contextvars.ContextVar[bool] = contextvars.ContextVar("tracer.integrations.inside", default=False)


@overload
def bind_context(fn: Generator[Y, S, R]) -> Generator[Y, S, R]: ...


@overload
def bind_context(fn: AsyncGenerator[Y, S]) -> AsyncGenerator[Y, S]: ...


@overload
def bind_context(fn: Iterator[Y]) -> Iterator[Y]: ...


@overload
def bind_context(fn: AsyncIterator[Y]) -> AsyncIterator[Y]: ...


@overload
def bind_context(fn: Callable[P, R]) -> Callable[P, R]: ...


def bind_context(fn: Any) -> Any:
    """Make *fn* run under the span and session current *now*, wherever it is called or iterated.

    A function: use it for pools and callbacks the library does not propagate into by itself
    (``ThreadPoolExecutor`` and ``threading.Thread`` are handled automatically). A generator,
    async generator or other (async) iterator: every step of it runs under them, e.g. a traced
    stream created in a request handler and iterated by the framework after the handler returned
    (``StreamingResponse(tracer.bind_context(answer_stream(question)))``).
    """
    span = current_span_var.get()
    session = current_session_var.get()
    if span is None and session is None:
        return fn
    if isinstance(fn, types.GeneratorType):
        return _bound_generator(fn, span, session)
    if isinstance(fn, types.AsyncGeneratorType):
        return _bound_async_generator(fn, span, session)
    if isinstance(fn, Iterator):
        return _bound_iterator(fn, span, session)
    if isinstance(fn, AsyncIterator):
        return _bound_async_iterator(fn, span, session)

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        previous = _enter(span, session)
        try:
            return fn(*args, **kwargs)
        finally:
            _leave(previous)

    return bound


_Current = tuple["Span | None", "Session | None"]


def _enter(span: Span | None, session: Session | None) -> _Current:
    """Make *span* and *session* current; returns what was (for ``_leave``)."""
    previous = (current_span_var.get(), current_session_var.get())
    current_span_var.set(span)
    current_session_var.set(session)
    return previous


def _leave(previous: _Current) -> None:
    current_span_var.set(previous[0])
    current_session_var.set(previous[1])


def _bound_generator(
    gen: Generator[Any, Any, Any], span: Span | None, session: Session | None
) -> Generator[Any, Any, Any]:
    """*gen*, each step (next, send, throw, close) run under *span* and *session*."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        previous = _enter(span, session)
        try:
            if to_throw is not None:
                exc, to_throw = to_throw, None
                item = gen.throw(exc)
            else:
                item = gen.send(to_send)
        except StopIteration as stop:
            return stop.value
        finally:
            _leave(previous)
        try:
            to_send = yield item
        except GeneratorExit:
            previous = _enter(span, session)
            try:
                gen.close()
            finally:
                _leave(previous)
            raise
        except BaseException as exc:
            to_throw = exc


async def _bound_async_generator(
    agen: AsyncGenerator[Any, Any], span: Span | None, session: Session | None
) -> AsyncGenerator[Any, Any]:
    """*agen*, each step (anext, asend, athrow, aclose) run under *span* and *session*."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        previous = _enter(span, session)
        try:
            if to_throw is not None:
                exc, to_throw = to_throw, None
                item = await agen.athrow(exc)
            else:
                item = await agen.asend(to_send)
        except StopAsyncIteration:
            return
        finally:
            _leave(previous)
        try:
            to_send = yield item
        except GeneratorExit:
            previous = _enter(span, session)
            try:
                await agen.aclose()
            finally:
                _leave(previous)
            raise
        except BaseException as exc:
            to_throw = exc


def _bound_iterator(it: Iterator[Any], span: Span | None, session: Session | None) -> Iterator[Any]:
    """*it* (an iterator that is not a generator), each ``next()`` and its ``close()`` if it has
    one run under *span* and *session*."""
    while True:
        previous = _enter(span, session)
        try:
            item = next(it)
        except StopIteration:
            return
        finally:
            _leave(previous)
        try:
            yield item
        except GeneratorExit:
            close = getattr(it, "close", None)
            if callable(close):
                previous = _enter(span, session)
                try:
                    close()
                finally:
                    _leave(previous)
            raise


async def _bound_async_iterator(
    ait: AsyncIterator[Any], span: Span | None, session: Session | None
) -> AsyncIterator[Any]:
    """*ait* (an async iterator that is not an async generator), each ``__anext__()`` and its
    ``aclose()`` if it has one run under *span* and *session*."""
    while True:
        previous = _enter(span, session)
        try:
            item = await ait.__anext__()
        except StopAsyncIteration:
            return
        finally:
            _leave(previous)
        try:
            yield item
        except GeneratorExit:
            aclose = getattr(ait, "aclose", None)
            if callable(aclose):
                previous = _enter(span, session)
                try:
                    await aclose()
                finally:
                    _leave(previous)
            raise


# -- automatic propagation into threads --------------------------------------------------------

_lock = threading.Lock()
_original_submit: Any = None
_original_start: Any = None


def _submit(self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    # Not bind_context(fn): its checks and functools.wraps cost 1.8 µs per submit, and libraries
    # submit per call (litellm's logging: about ten per completion, bench/llm_overhead.py); the
    # span and session go along as arguments instead (0.3 µs).
    span = current_span_var.get()
    session = current_session_var.get()
    if span is None and session is None:
        return _original_submit(self, fn, *args, **kwargs)
    return _original_submit(self, _run_under, span, session, fn, *args, **kwargs)


def _run_under(span: Span | None, session: Session | None, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    previous = _enter(span, session)
    try:
        return fn(*args, **kwargs)
    finally:
        _leave(previous)


def _start(self: threading.Thread) -> None:
    if current_span_var.get() is not None or current_session_var.get() is not None:
        # Instance attribute shadows the class's run(), so subclasses that override run() work too.
        self.run = bind_context(self.run)  # type: ignore[method-assign]
    _original_start(self)


def install_thread_propagation() -> None:
    """Make ``ThreadPoolExecutor.submit`` (so ``map``, ``run_in_executor``, ``to_thread``) and
    ``Thread.start`` carry the current span into the new thread. Idempotent."""
    global _original_submit, _original_start
    with _lock:
        if _original_submit is None:
            _original_submit = concurrent.futures.ThreadPoolExecutor.submit
            concurrent.futures.ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign,assignment]
        if _original_start is None:
            _original_start = threading.Thread.start
            threading.Thread.start = _start  # type: ignore[method-assign]


def uninstall_thread_propagation() -> None:
    """Restore the original ``submit`` and ``start``. Idempotent."""
    global _original_submit, _original_start
    with _lock:
        if _original_submit is not None:
            concurrent.futures.ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]
            _original_submit = None
        if _original_start is not None:
            threading.Thread.start = _original_start  # type: ignore[method-assign]
            _original_start = None
