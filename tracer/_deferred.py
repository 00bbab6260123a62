"""Event fields computed on the worker thread instead of the thread that ends the span.

An LLM call's event is mostly derived data: request parameters picked out of the call's arguments,
the reply's text, token counts and ids read out of the SDK's response objects. Deriving and
serializing them is most of what instrumentation adds to a call, and none of it has to happen
while the caller waits. So an integration attaches a ``Deferred`` to its span: the span's end
queues a record that holds the ``Deferred`` (see ``_record.DeferredRecord``), and the worker calls
``shape()`` just before encoding the event (``_encode``).

What a ``Deferred`` reads must not change after the span ends: the integrations hold copies of
the user's mutable arguments (the message list) and the SDK's response objects, which are not
changed once returned. Fields set on the span itself (an error, a stream's end reason) are kept
as they are and win over the shaped ones, key by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from . import _schema

__all__ = ["BUCKETS", "SIZE_ESTIMATE", "Deferred"]

# The span's own fields a Deferred is merged with.
BUCKETS: Final = _schema.BUCKETS

# Bytes charged against the queue's byte bound for a deferred event that cannot say better
# (``Deferred.charged_size``): a typical chat call's request and reply.
SIZE_ESTIMATE: Final = 4096


class Deferred:
    """Fields of one event, shaped on the worker thread by ``shape()``."""

    __slots__ = ("eager", "redirect")

    def __init__(self) -> None:
        # Set by Span.end(): the ended span, whose own fields (see BUCKETS) take precedence.
        self.eager: Any = None
        # Where the ended span's record goes instead of its recorder's ``hand_on`` (same
        # signature), when set: the OpenTelemetry bridge holds an LLM call's event until it knows
        # whether the OpenTelemetry span around the call is a duplicate of it (see _otel_bridge).
        self.redirect: Any = None

    def shape(self) -> dict[str, Mapping[str, Any] | None]:
        """Bucket name (one of BUCKETS) -> its fields. Runs once, on the worker thread."""
        raise NotImplementedError

    def charged_size(self) -> int:
        """Bytes this event holds until it is shaped (what the queue's byte bound counts), measured
        cheaply when its span ends, on the calling thread."""
        return SIZE_ESTIMATE
