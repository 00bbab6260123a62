"""The sessions of the records waiting in a queue (records name their session by id, see _record)."""

from __future__ import annotations

from ._record import SESSION_ID, Item
from ._span import Session

__all__ = ["SessionRegistry"]


class SessionRegistry:
    """The ``Session`` of every record waiting in a queue, by session id.

    ``note()`` runs on the app thread for every event, under the processor's lock: one identity
    check in the common case of many events of the same session. ``prune()`` forgets sessions no
    queued record refers to any more; the processor calls it when the queue is drained (cheap:
    nothing is left) or has grown far past the queue (a scan of the queue).
    """

    __slots__ = ("_by_id", "last")

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self.last: Session | None = None  # the session noted last (read by the processor, see note())

    def note(self, session: Session) -> None:
        if session is not self.last:
            self.last = session
            self._by_id[session.session_id] = session

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def prune(self, still_queued: list[Item] | None = None) -> None:
        """Keep only the sessions of *still_queued* (and the last one noted, which ``note()`` skips)."""
        keep: dict[str, Session] = {}
        last = self.last
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
