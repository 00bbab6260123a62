"""Process exit and fork, in one place.

At interpreter exit one handler runs these phases in order, for every live tracer, so that what
was still happening is recorded and delivered:

1. end open LLM streams (``process_exit``, with what they received so far: they were registered
   by ``integrations._stream`` through ``track``);
2. end the spans of suspended generators (a generator never run to the end);
3. end every other open span (a daemon thread inside ``with tracer.span()`` or a traced function,
   a task never awaited to the end), innermost first, so that parents still list their children;
   a traced function's span is found on its thread's stack (``_decorators.running_call_spans``),
   the others in their recorder's ``open_spans``;
4. drain: each tracer's ``shutdown(exit_timeout)`` delivers what is queued.

Daemon threads, the delivery worker among them, still run while ``atexit`` handlers do.

Fork (``os.register_at_fork``, ``after_in_child``), each where the state lives: the id generator
draws new process keys (``_ids``), the worker forgets the parent's thread (``_worker``), each
``BatchProcessor`` starts with an empty queue and zeroed counters (the parent's events are the
parent's to send), each ``HttpClient`` drops the parent's connections and locks (``_http``), each
exporter ``SenderPool`` forgets the parent's sender threads (``exporters._senders``), and a
``TraceStore`` reopens its connection in the child (``store``).
"""

from __future__ import annotations

import atexit
import weakref
from typing import Protocol

from ._errors import report_internal_error

__all__ = ["Exiting", "Finishing", "at_exit", "finish_open_streams", "register", "track", "untrack"]


class Finishing(Protocol):
    """Something open (a stream) that can be ended with a reason."""

    def finish(self, reason: str) -> None: ...


class Exiting(Protocol):
    """A tracer, as the exit handler sees it (``Tracer`` implements it)."""

    def end_open_generators(self) -> None: ...

    def end_open_spans(self) -> None: ...

    def exit_shutdown(self) -> None:
        """Drain within the tracer's ``exit_timeout`` and stop."""
        ...


_tracers: weakref.WeakSet[Exiting] = weakref.WeakSet()
# A plain set: a recorder references neither its stream nor its proxy, so the garbage collection
# of an abandoned stream still ends its event (and untracks it).
_open: set[Finishing] = set()
_registered = False


def register(tracer: Exiting) -> None:
    """Have *tracer*'s open spans ended and its queue drained at exit (it is not kept alive for it).

    The handler is registered with ``atexit`` when the first tracer is, as a tracer's own was:
    ``atexit`` runs handlers last-registered first, so one the application registered before
    ``init()`` still runs after the drain (and sees final ``stats()``).
    """
    global _registered
    _tracers.add(tracer)
    if not _registered:
        _registered = True
        atexit.register(at_exit)


def track(item: Finishing) -> None:
    """End *item* with ``process_exit`` at exit unless it is untracked first."""
    _open.add(item)


def untrack(item: Finishing) -> None:
    _open.discard(item)


def _phase(what: str, action: object) -> None:
    try:
        action()  # type: ignore[operator]
    except Exception as exc:
        report_internal_error(what, exc)


def finish_open_streams() -> None:
    """Phase 1: end every stream still open."""
    for item in list(_open):
        _phase("ending open streams at exit", lambda item=item: item.finish("process_exit"))


def at_exit() -> None:
    """The exit handler (see the module docstring for its phases)."""
    finish_open_streams()
    tracers = list(_tracers)
    for tracer in tracers:
        _phase("ending suspended generators' spans at exit", tracer.end_open_generators)
    for tracer in tracers:
        _phase("ending open spans at exit", tracer.end_open_spans)
    for tracer in tracers:
        _phase("the exit hook", tracer.exit_shutdown)
