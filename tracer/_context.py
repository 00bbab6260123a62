"""The one ``contextvars`` stack of open spans, and carrying it into threads and executors.

The current span is a ``ContextVar``; a span's ``parent`` link makes the stack. We always restore
by ``var.set(previous)`` rather than ``var.reset(token)``: a token is bound to the ``Context`` it was
made in, and generators and streams are resumed from other contexts, where ``reset`` raises
("was created in a different Context"), the log flood peers are known for.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._span import Session, Span

__all__ = [
    "bind_context",
    "current_session_var",
    "current_span_var",
    "install_thread_propagation",
    "uninstall_thread_propagation",
]

P = ParamSpec("P")
R = TypeVar("R")

current_span_var: contextvars.ContextVar[Span | None] = contextvars.ContextVar("tracer.span", default=None)
current_session_var: contextvars.ContextVar[Session | None] = contextvars.ContextVar("tracer.session", default=None)


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap *fn* so it runs under the span and session current *now*, wherever it is called.

    Use it for pools and callbacks the library does not propagate into by itself
    (``ThreadPoolExecutor`` and ``threading.Thread`` are handled automatically).
    """
    span = current_span_var.get()
    session = current_session_var.get()
    if span is None and session is None:
        return fn

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        prev_span = current_span_var.get()
        prev_session = current_session_var.get()
        current_span_var.set(span)
        current_session_var.set(session)
        try:
            return fn(*args, **kwargs)
        finally:
            current_span_var.set(prev_span)
            current_session_var.set(prev_session)

    return bound


# -- automatic propagation into threads --------------------------------------------------------

_lock = threading.Lock()
_original_submit: Any = None
_original_start: Any = None


def _submit(self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return _original_submit(self, bind_context(fn), *args, **kwargs)


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
