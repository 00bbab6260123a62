"""The pipeline's view of an on-disk spool: what it needs from one, and its per-exporter state.

When an exporter cannot deliver for a transient reason (backend unreachable, 5xx after the retries,
circuit open), or the in-memory queue is past its high-water mark while delivery is failing or
behind, the worker writes the events to that exporter's spool instead of counting them lost. Once
the backend answers again the worker replays the spool to that exporter, oldest first, interleaved
with new events (see ``_pipeline.BatchProcessor``).

This module defines the interface only: the implementation (an SQLite file in the local store's
format) lives with the store, a higher layer that the pipeline must not import; ``Tracer.configure``
wires them together.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from ._export import Batch, Exporter

__all__ = ["PROBE_INTERVAL", "Spool", "SpoolClaim", "SpoolError", "SpoolTarget", "SpoolWrite"]

# Seconds between two attempts to reach a backend that failed while spooled events wait: the
# delivery of a backlog starts within about this long (+ one probe) of the backend's return.
PROBE_INTERVAL: Final = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolWrite:
    """What a write did: events stored, and older events dropped to stay within the size limit."""

    written: int
    dropped_oldest: int = 0


@dataclasses.dataclass(slots=True)
class SpoolClaim:
    """Events (or, once none is left, late updates) taken from a spool to be sent; ``keys`` and
    ``update_keys`` identify them for ``Spool.release``."""

    batch: Batch
    keys: list[int]
    update_keys: list[int] = dataclasses.field(default_factory=list)


class Spool(Protocol):
    """A bounded, ordered, persistent store of encoded events waiting for one exporter.

    Methods run on the worker thread (or in ``tracer send``), never on a traced call.
    """

    path: str

    def may_hold_events(self) -> bool:
        """True if events left by an earlier process may wait (checked once, at start)."""
        ...

    def write(
        self, batch: Batch, indexes: tuple[int, ...] | None = None, update_indexes: tuple[int, ...] = ()
    ) -> SpoolWrite:
        """Append the events of *batch* (only those at *indexes*, if given) and its updates at
        *update_indexes*, dropping the oldest events of the spool if it would outgrow its size limit.
        Updates are sent after every event spooled before them."""
        ...

    def lease(self) -> bool:
        """Try to become the one process replaying this spool (non-blocking); True on success."""
        ...

    def unlease(self) -> None:
        """Give up the replay lease (no-op when not held)."""
        ...

    def claim(self, max_events: int, max_bytes: int) -> SpoolClaim | None:
        """The oldest events (under the lease), or None when the spool is empty."""
        ...

    def release(
        self, claim: SpoolClaim, keep: frozenset[int] = frozenset(), keep_updates: frozenset[int] = frozenset()
    ) -> None:
        """The claimed events and updates were delivered (or refused for good), except those at the
        indexes *keep* / *keep_updates*: the others are not offered again."""
        ...

    def tidy(self) -> bool:
        """Reclaim space of delivered events (a bounded step); True if more is left to reclaim."""
        ...

    def backlog(self) -> tuple[int, int]:
        """(events waiting, bytes of the file in use), as last seen by this process."""
        ...

    def close(self) -> None: ...


class SpoolError(Exception):
    """A spool that cannot be read or written (its one-line reason); the events concerned are counted."""


class SpoolTarget:
    """An exporter with its spool, and what the worker knows of its backend (worker thread only)."""

    __slots__ = (
        "attempts",
        "down",
        "export_cost",
        "exporter",
        "next_probe",
        "next_replay",
        "pending",
        "spill_cost",
        "spool",
        "untidy",
    )

    def __init__(self, exporter: Exporter, spool: Spool, spill_cost: float) -> None:
        self.exporter = exporter
        self.spool = spool
        self.down = False  # the last real attempt failed transiently: spill without trying
        self.next_probe = 0.0  # monotonic time of the next attempt while down
        self.next_replay = 0.0  # monotonic time before which another process holds the replay lease
        self.attempts = 0  # real attempts to reach the backend that ended (read by flush())
        self.untidy = False  # delivered events still take space in the spool (see Spool.tidy)
        # The spool may hold events: written by this process, or left by an earlier one (the file
        # exists at start). Cleared when a replay finds it empty.
        self.pending = spool.may_hold_events()
        # Seconds per event, running averages: sending to the backend, writing the spool. When the
        # queue is behind, the worker spills only if that is the cheaper of the two.
        self.export_cost = 0.0
        self.spill_cost = spill_cost

    def failed(self, now: float, retry_after: float | None = None) -> None:
        """The backend failed transiently; probe it again in PROBE_INTERVAL, or after the
        *retry_after* seconds it asked for (a 429/503's ``Retry-After``), whichever is later."""
        self.attempts += 1
        self.down = True
        self.next_probe = now + max(PROBE_INTERVAL, retry_after or 0.0)

    def answered(self) -> None:
        self.attempts += 1
        self.down = False

    def lease_busy(self, now: float) -> None:
        self.next_replay = now + PROBE_INTERVAL

    def may_try(self, now: float) -> bool:
        """Whether a new batch may be sent now (else it is spooled)."""
        return not self.down or now >= self.next_probe

    def may_replay(self, now: float) -> bool:
        return self.may_try(now) and now >= self.next_replay

    def due_at(self) -> float | None:
        """When the worker should come back for this spool's backlog (None: nothing waits)."""
        if not self.pending:
            return None
        return max(self.next_probe if self.down else 0.0, self.next_replay)
