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

__all__ = [
    "EVENT_LEN",
    "IO",
    "RARE",
    "SESSION_ID",
    "SIZE",
    "UPDATE_FIELDS",
    "UPDATE_ID",
    "UPDATE_LEN",
    "DeferredRecord",
    "EventRecord",
    "Item",
    "UpdateRecord",
    "make_update",
]

# An ended span: (size, session id, id, parent id, child ids, name, type, inputs and outputs,
# error, start, end, rare buckets). Ids are the ints of ``_ids.new_id`` (a parent id may be the bytes
# of a remote parent's event id instead: see ``_propagation.RemoteSpan``); child ids are None, one
# int, or a tuple of several; inputs and outputs are one JSON object ``{"inputs": {...},
# "outputs": {...}}`` (``_capture.snapshot_io``: one serialization for the two usual buckets) or
# None when neither is set; times are ``perf_counter_ns`` values; rare buckets are None or the
# snapshots of config, metadata, metrics, feedback and user_properties, in that order (None where
# unset).
#
# Nested tuples are kept to the rare cases: the collector untracks a tuple only once the tuples
# inside it are untracked, and it may visit them in the other order, so a record holding one
# stays tracked for one more (older-generation) collection.
EventRecord: TypeAlias = tuple[
    int,
    str,
    int,
    "int | bytes | None",
    "int | tuple[int, ...] | None",
    str,
    str,
    "bytes | None",
    "str | None",
    int,
    int,
    "tuple[bytes | None, bytes | None, bytes | None, bytes | None, bytes | None] | None",
]
# An ended span whose fields are shaped on the worker (``_deferred``): an EventRecord whose
# inputs/outputs and rare buckets are None, followed by the Deferred that provides them. Only LLM
# calls' events are deferred; unlike plain records these stay tracked by the collector.
DeferredRecord: TypeAlias = tuple[
    int,
    str,
    int,
    "int | bytes | None",
    "int | tuple[int, ...] | None",
    str,
    str,
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
IO: Final = 7
RARE: Final = 11
UPDATE_ID: Final = 2
UPDATE_FIELDS: Final = 3
UPDATE_LEN: Final = 4  # an update's length; event records are longer
EVENT_LEN: Final = 12  # a plain event record's length; a DeferredRecord has one more field

# Bytes charged per update on top of its fields (a small dict and a tuple).
_UPDATE_OVERHEAD: Final = 256


def make_update(event_id: str, session_id: str, fields: dict[str, bytes]) -> UpdateRecord:
    size = _UPDATE_OVERHEAD + sum(len(value) for value in fields.values())
    return (size, session_id, event_id, fields)
