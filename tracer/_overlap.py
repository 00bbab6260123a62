"""One call run on a short-lived helper thread while the delivery worker goes on with the next.

The worker's pass is: take events from the queue, encode them, export them and wait for the answers.
While it waits, nothing of this process runs but the exporter's senders, and those mostly wait
too (on the server, on gzip, on the GIL after each). When a burst leaves several passes to do,
the pipeline hands each pass's export to a helper from here and encodes the next pass meanwhile
(``BatchProcessor._drain``). One thread per handed-over export: starting and joining one took
0.35 ms (2,000 in a row, the machine busy), next to 30-80 ms for a pass of 8,192 events, and
nothing is left running between bursts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._threads import start_thread

__all__ = ["Helper", "on_helper"]

_state = threading.local()


def on_helper() -> bool:
    """True on a helper thread: it acts for the worker, so waiting there for the worker's progress
    (an exporter calling ``flush()``) would wait on itself."""
    return getattr(_state, "active", False)


class Helper:
    """``Helper.start(call)`` runs *call* on a new thread; ``wait()`` returns when it has ended."""

    __slots__ = ("_call", "_error", "_thread")

    def __init__(self, call: Callable[[], object], name: str) -> None:
        self._call = call
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @classmethod
    def start(cls, call: Callable[[], object], name: str) -> Helper | None:
        """The running helper, or None when no thread can be started (Python 3.12 refuses at
        interpreter shutdown): the caller then makes the call itself."""
        helper = cls(call, name)
        return helper if start_thread(helper._thread) else None

    def wait(self) -> BaseException | None:
        """Wait for the call to end; the exception it raised, if any (the caller reports it)."""
        self._thread.join()
        error, self._error = self._error, None
        return error

    def _run(self) -> None:
        _state.active = True
        try:
            self._call()
        except BaseException as exc:  # handed to the waiting worker, which reports it
            self._error = exc
