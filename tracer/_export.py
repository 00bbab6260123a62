"""The exporter interface: what the background pipeline hands to a destination, and what it
gets back. It belongs to the pipeline layer (the pipeline defines it; ``tracer.exporters``
implements it and re-exports it for users).

An exporter gets a ``Batch`` on the library's single background thread (or inline, with
``batch=False``), or during a burst on a helper thread acting for it (``_overlap``: one export at a
time, in order). It may block on I/O there; it should not assume any particular thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson

__all__ = ["Batch", "EventParts", "ExportResult", "Exporter"]

# ``Batch.parts``: each event's pieces as the encoder joins them into its JSON (JSON text where the
# event has JSON), for an exporter that writes another format without decoding the event again.
EventParts = tuple[
    bytes,  # PART_EVENT_ID: the event id, UUID text
    bytes,  # PART_PARENT_ID: the parent's id, or the session id for a root event
    bytes,  # PART_NAME: event_name as a JSON string (quotes included)
    str,  # PART_TYPE: event_type
    bytes | None,  # PART_IO: {"inputs":…,"outputs":…} (None: both empty)
    bytes | None,  # PART_ERROR: error as a JSON string (None: no error)
    int,  # PART_START_NS: start_time as sent (whole ms) in ns
    int,  # PART_END_NS: that plus the event's duration (ns), i.e. start_time + duration as sent
    tuple[bytes, bytes, bytes, bytes, bytes] | None,  # PART_RARE: config, metadata, metrics, feedback,
    # user_properties as JSON objects (None: all empty)
    bytes,  # PART_HEAD: '{"project":…,"source":…,"event_name":' (the same object for a run of one session)
    bytes,  # PART_ID_LOW: the event id's last 8 bytes (its UUID's low 64 bits)
    bytes | None,  # PART_PARENT_LOW: the same of the parent's id, when this process made it (else None:
    # a root event, or a parent continued from another service)
    int | tuple[int, ...] | None,  # PART_CHILDREN: the children's ids as the span keeps them (for the JSON)
    int,  # PART_END_MS: end_time as sent (whole ms; not always start_time + duration, which keeps the ns)
]
PART_EVENT_ID: Final = 0
PART_PARENT_ID: Final = 1
PART_NAME: Final = 2
PART_TYPE: Final = 3
PART_IO: Final = 4
PART_ERROR: Final = 5
PART_START_NS: Final = 6
PART_END_NS: Final = 7
PART_RARE: Final = 8
PART_HEAD: Final = 9
PART_ID_LOW: Final = 10
PART_PARENT_LOW: Final = 11
PART_CHILDREN: Final = 12
PART_END_MS: Final = 13


class Batch:
    """Finished events in their exact wire shape, plus what the events refer to.

    - ``encoded``: each event as compact JSON bytes (what is sent; cheapest to forward).
    - ``events()``: the same events decoded to dicts (decoded once, on first use).
    - ``session_ids``: the session id of each event, in the same order.
    - ``sessions``: ``session_properties`` of every session referenced, by session id.
    - ``updates``: late enrichments (``PUT /events`` bodies: ``event_id`` plus the changed buckets).
    - ``parts``: only for an exporter with ``uses_event_parts`` (else None): per event, the pieces
      its JSON is joined from (``EventParts``), or None for an event whose JSON is the only form
      (rewritten by the ``mask`` hook, trimmed to ``max_event_bytes``). A batch read back from
      the spool has none.

    A batch made by ``Batch.deferred`` (when every exporter writes from the parts) has not joined
    its events' JSON yet: ``encoded`` joins it all on first use, ``event_json(i)`` one event.
    """

    __slots__ = ("_build", "_decoded", "_encoded", "_size", "parts", "session_ids", "sessions", "updates")

    def __init__(
        self,
        encoded: list[bytes],
        session_ids: list[str],
        sessions: dict[str, dict[str, Any]],
        updates: list[dict[str, Any]] | None = None,
        parts: list[EventParts | None] | None = None,
    ) -> None:
        self._encoded: list[bytes | None] = encoded  # type: ignore[assignment]  # list is invariant
        self.session_ids = session_ids
        self.sessions = sessions
        self.updates = updates if updates is not None else []
        self.parts = parts
        self._decoded: list[dict[str, Any]] | None = None
        self._build: Callable[[EventParts, str], bytes] | None = None
        self._size = 0  # of a deferred batch (see json_bytes)

    @classmethod
    def deferred(
        cls,
        encoded: list[bytes | None],
        session_ids: list[str],
        sessions: dict[str, dict[str, Any]],
        updates: list[dict[str, Any]],
        parts: list[EventParts | None],
        build: Callable[[EventParts, str], bytes],
        size: int,
    ) -> Batch:
        """A batch whose events' JSON is joined only when asked for: an event with None in
        *encoded* has its pieces in *parts*, and ``build(pieces, session_id)`` joins them. *size*:
        at least the bytes of all the events' JSON (see ``json_bytes``)."""
        batch = cls([], session_ids, sessions, updates, parts)
        batch._encoded = encoded
        batch._build = build
        batch._size = size
        return batch

    @property
    def encoded(self) -> list[bytes]:
        """Each event's JSON (joined now, once, for a deferred batch)."""
        encoded = self._encoded
        build = self._build
        if build is not None:
            parts, session_ids = self.parts, self.session_ids
            assert parts is not None
            encoded = self._encoded = [
                raw if raw is not None else build(parts[index], session_ids[index])  # type: ignore[arg-type]
                for index, raw in enumerate(encoded)
            ]
            self._build = None
        return encoded  # type: ignore[return-value]  # no None left

    def event_json(self, index: int) -> bytes:
        """The JSON of the event at *index* (of a deferred batch: joined for this call, not kept)."""
        raw = self._encoded[index]
        if raw is None:
            assert self._build is not None and self.parts is not None
            raw = self._build(self.parts[index], self.session_ids[index])  # type: ignore[arg-type]
        return raw

    def json_bytes(self) -> int:
        """The bytes of the events' JSON; for a deferred batch not joined yet, a bound the encoder
        computed (never below the real size)."""
        if self._build is not None:
            return self._size
        return sum(map(len, self.encoded))

    def events(self) -> list[dict[str, Any]]:
        """The events as wire-shape dicts (a fresh decode per batch, shared by all callers)."""
        if self._decoded is None:
            self._decoded = [orjson.loads(raw) for raw in self.encoded]
        return self._decoded

    def __len__(self) -> int:
        return len(self._encoded)

    def split(self) -> tuple[Batch, Batch]:
        """Two halves of the events (used to retry a too-large request)."""
        encoded = self.encoded
        half = len(encoded) // 2
        parts = self.parts
        return (
            Batch(
                encoded[:half],
                self.session_ids[:half],
                self.sessions,
                self.updates,
                None if parts is None else parts[:half],
            ),
            Batch(encoded[half:], self.session_ids[half:], self.sessions, [], None if parts is None else parts[half:]),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ExportResult:
    """What became of a batch, and everything about it the pipeline counts in ``stats()``.

    ``failed`` events were given up on (counted as lost, by ``reason``); ``updates_failed`` of its
    late updates too (``updates_rejected`` of them refused by the destination, counted ``rejected``;
    the others ``export_failed``). An exporter counts nothing itself: it reports here.
    """

    delivered: int
    failed: int = 0
    reason: str | None = None
    updates_failed: int = 0
    # Indexes into batch.encoded / batch.updates of what was not delivered for a transient reason
    # (backend unreachable, 5xx/429/408 after the retries, export deadline, circuit open): the pipeline
    # may keep them and offer them again later instead of counting them lost. Also counted in failed / updates_failed.
    retry_events: tuple[int, ...] = ()
    retry_updates: tuple[int, ...] = ()
    updates_rejected: int = 0
    # Requests made for this batch that were sent again after a failure, and those given up on
    # (``stats()``'s ``retried_requests`` and ``failed_requests``).
    retried_requests: int = 0
    failed_requests: int = 0
    # The last error met, in words (``stats()["last_error"]``); None if there was none.
    last_error: str | None = None
    # Seconds the destination asked to be left alone (``Retry-After`` on the last 429/503 given up
    # on): a spool waits at least this long before probing it again. None if it asked nothing.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0


class Exporter:
    """Base class for destinations. Subclass and implement ``export``.

    ``export`` returns an ``ExportResult`` (or ``True``/``None`` for "all delivered", ``False``
    for "all lost"); raising counts the whole batch as lost. ``shutdown`` releases resources.
    """

    #: Name used in logs and ``stats()``.
    name: str = "exporter"
    #: Batches this exporter sends at once in ``export_batches``; the pipeline hands it at least that many.
    max_in_flight: int = 1
    #: True: the pipeline also fills ``Batch.parts`` (the events' JSON pieces) for it.
    uses_event_parts: bool = False

    def export(self, batch: Batch) -> ExportResult | bool | None:
        raise NotImplementedError

    def export_batches(self, batches: list[Batch], timeout: float | None = None) -> list[ExportResult | bool | None]:
        """Export several batches, one result per batch in the same order (raising: all lost).

        *timeout*: seconds the whole call may take, retries included, when the pipeline needs it
        shorter than the exporter's own limit (a batch it can keep in a spool is better kept there
        than retried for long); None: the exporter's own limit. An exporter that overrides this
        without the argument is called without it.

        The default sends them one by one with ``export`` (and has no retries to bound); an
        exporter that can have several requests in flight overrides it.
        """
        return [self.export(batch) for batch in batches]

    def interrupt(self) -> None:
        """Give up on waits in progress (retry backoff) so ``export`` returns soon.

        Called from another thread when shutdown runs out of time. Optional: the default does nothing.
        """

    def shutdown(self) -> None:
        """Release resources (files, connections). Called once, after the last export."""


def normalize_result(result: ExportResult | bool | None, size: int, updates: int = 0) -> ExportResult:
    """Map the permissive return values of ``Exporter.export`` onto an ``ExportResult`` (for a batch
    of *size* events and *updates* late updates)."""
    if isinstance(result, ExportResult):
        return result
    if result is False:
        return ExportResult(delivered=0, failed=size, reason="exporter reported failure", updates_failed=updates)
    return ExportResult(delivered=size)


def as_exporter_list(value: Exporter | Sequence[Exporter] | None) -> list[Exporter]:
    """Accept one exporter or several."""
    if value is None:
        return []
    if isinstance(value, Exporter):
        return [value]
    return list(value)
