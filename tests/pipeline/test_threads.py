"""``_threads.start_thread``: the library's threads start from an empty context, and a refusal at
interpreter shutdown is an answer, not an error."""

from __future__ import annotations

import contextvars
import threading

from tracer._threads import start_thread

from ..processes import run_at_exit

_value: contextvars.ContextVar[str] = contextvars.ContextVar("_value", default="unset")


def test_a_started_thread_sees_none_of_the_callers_context() -> None:
    seen: list[str] = []
    token = _value.set("the caller's span")
    try:
        thread = threading.Thread(target=lambda: seen.append(_value.get()))
        assert start_thread(thread)
        thread.join(5)
    finally:
        _value.reset(token)
    assert seen == ["unset"]


def test_at_interpreter_shutdown_a_refused_start_is_reported_not_raised() -> None:
    # Whether the interpreter refuses depends on its version (this machine's 3.12.1 refuses in an
    # atexit handler, its 3.11.7 and 3.13.0 do not): start_thread answers what a plain start() does,
    # without raising.
    plain, (ours,) = run_at_exit(
        """
        from tracer._threads import start_thread
        return ["started" if start_thread(threading.Thread(target=lambda: None)) else "refused"]
        """
    )
    assert ours == plain
