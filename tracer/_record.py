"""What the delivery queue holds: ended events and late updates as plain tuples.

Why tuples and not the ``Span`` objects: in a burst the queue can hold hundreds of thousands of
ended events. Every live ``Span`` is tracked by CPython's cyclic garbage collector, so a deep
backlog made each full collection traverse all of them (five collections of ~65 ms each while
300,000 events were queued: about 15% of delivery throughput, measured with ``gc.callbacks``). A
tuple that holds only ints, strings, bytes, None and such tuples is untracked by the collector at
its first young collection, so queued events cost it nothing. For the same reason a record names
its session by id; the processor keeps the ``Session`` objects (see ``SessionRegistry``).

Records are built once, on the thread that ends the span, and only read afterwards.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from ._deferred import Deferred
from ._span import Session

__all__ = [
    "EVENT_LEN",
    "INPUTS",
    "OUTPUTS",
    "RARE",
    "SESSION_ID",
    "SIZE",
    "UPDATE_FIELDS",
    "UPDATE_ID",
    "UPDATE_LEN",
    "DeferredRecord",
    "EventRecord",
    "Item",
    "SessionRegistry",
    "UpdateRecord",
    "make_update",
]

# An ended span: (size, session id, id, parent id, child ids, name, type, inputs, outputs, error,
# start, end, rare buckets). Ids are the ints of ``_ids.new_id``; child ids are None, one int, or a
# tuple of several; captured fields are JSON bytes; times are ``perf_counter_ns`` values; rare
# buckets are None or the snapshots of config, metadata, metrics, feedback and user_properties, in
# that order (None where unset).
#
# Nested tuples are kept to the rare cases: the collector untracks a tuple only once the tuples
# inside it are untracked, and it may visit them in the other order, so a record holding one
# stays tracked for one more (older-generation) collection.
EventRecord: TypeAlias = tuple[
    int,
    str,
    int,
    "int | None",
    "int | tuple[int, ...] | None",
    str,
    str,
    "bytes | None",
    "bytes | None",
    "str | None",
    int,
    int,
    "tuple[bytes | None, bytes | None, bytes | None, bytes | None, bytes | None] | None",
]
# An ended span whose fields are shaped on the worker (``_deferred``): an EventRecord whose
# inputs, outputs and rare buckets are None, followed by the Deferred that provides them. Only LLM
# calls' events are deferred; unlike plain records these stay tracked by the collector.
DeferredRecord: TypeAlias = tuple[
    int,
    str,
    int,
    "int | None",
    "int | tuple[int, ...] | None",
    str,
    str,
    None,
    None,
    "str | None",
    int,
    int,
    None,
    Deferred,
]
# A change to an already handed-on event or session (a ``PUT /events`` body): (size, session id,
# event id, bucket name -> snapshot bytes).
UpdateRecord: TypeAlias = tuple[int, str, str, dict[str, bytes]]
Item: TypeAlias = EventRecord | DeferredRecord | UpdateRecord

# Positions read by index (the encoder unpacks event records whole, in the order above); mypy
# reads Final ints as literal indices and checks each field's type.
SIZE: Final = 0  # both kinds: bytes charged against the queue's byte bound
SESSION_ID: Final = 1  # both kinds
INPUTS: Final = 7
OUTPUTS: Final = 8
RARE: Final = 12
UPDATE_ID: Final = 2
UPDATE_FIELDS: Final = 3
UPDATE_LEN: Final = 4  # an update's length; event records are longer
EVENT_LEN: Final = 13  # a plain event record's length; a DeferredRecord has one more field

# Bytes charged per update on top of its fields (a small dict and a tuple).
_UPDATE_OVERHEAD: Final = 256


def make_update(event_id: str, session_id: str, fields: dict[str, bytes]) -> UpdateRecord:
    size = _UPDATE_OVERHEAD + sum(len(value) for value in fields.values())
    return (size, session_id, event_id, fields)


class SessionRegistry:
    """The ``Session`` of every record waiting in a queue, by session id.

    ``note()`` runs on the app thread for every event, under the processor's lock: one identity
    check in the common case of many events of the same session. ``prune()`` forgets sessions no
    queued record refers to any more; the processor calls it when the queue is drained (cheap:
    nothing is left) or has grown far past the queue (a scan of the queue).
    """

    __slots__ = ("_by_id", "_last")

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._last: Session | None = None

    def note(self, session: Session) -> None:
        if session is not self._last:
            self._last = session
            self._by_id[session.session_id] = session

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def prune(self, still_queued: list[Item] | None = None) -> None:
        """Keep only the sessions of *still_queued* (and the last one noted, which ``note()`` skips)."""
        keep: dict[str, Session] = {}
        last = self._last
        if last is not None:
            keep[last.session_id] = last
        if still_queued:
            by_id = self._by_id
            for item in still_queued:
                session_id = item[SESSION_ID]
                if session_id not in keep:
                    session = by_id.get(session_id)
                    if session is not None:
                        keep[session_id] = session
        self._by_id = keep
