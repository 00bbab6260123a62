"""``_threads.start_thread``: the library's threads start from an empty context, and a refusal at
interpreter shutdown is an answer, not an error."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import textwrap
import threading

from tracer._threads import start_thread

from ..processes import clean_env

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
    script = textwrap.dedent(
        """
        import atexit, threading
        from tracer._threads import start_thread

        def at_exit():
            try:
                threading.Thread(target=lambda: None).start()
                plain = "started"
            except RuntimeError:
                plain = "refused"
            ours = "started" if start_thread(threading.Thread(target=lambda: None)) else "refused"
            print(plain, ours, flush=True)

        atexit.register(at_exit)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=clean_env(), check=False
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    plain, ours = done.stdout.split()
    assert ours == plain
