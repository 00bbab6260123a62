"""``TraceStore``: one store file's connection and transactions; its public methods read and write it.

- WAL mode: readers never block the writer; writers (threads or processes) are serialized by
  SQLite, each write is one ``BEGIN IMMEDIATE`` transaction that waits (``timeout``) for the lock.
- One connection per store object, per process (a forked child opens its own), guarded by a lock.

The SQL lives with its job: ``_schema`` (tables, migrations, opening), ``_writes`` (events, sessions,
updates), ``_reads`` (what the CLI and the collector show), ``_deliveries`` (``tracer send``'s
bookkeeping). Each method here runs one of them inside one transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from . import _deliveries, _reads, _writes
from ._deliveries import Delivery
from ._reads import SessionSummary, StoredEvent
from ._schema import open_database, open_read_only
from ._sql import StoreError, now_ms, retry_busy

__all__ = ["TraceStore"]

_T = TypeVar("_T")


class TraceStore:
    """An open store. Thread-safe; use ``with TraceStore(path) as store:`` or call ``close()``.

    ``create=False`` refuses to create a missing file. ``read_only=True`` (the read commands and
    the viewer) opens an existing store without ever changing the file (``open_read_only``);
    writing through it raises ``StoreError``.
    ``timeout`` is how long a write waits for other writers.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, read_only: bool = False, timeout: float = 30.0
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.timeout = timeout
        self.read_only = read_only
        if (read_only or not create) and not os.path.exists(self.path):
            raise StoreError(f"no trace store at {self.path}")
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        with self._lock:
            self._connection()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TraceStore({self.path!r})"

    # -- connection -------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The open connection (opened, configured and migrated on first use). Call under the lock."""
        if self._closed:
            raise StoreError(f"the trace store {self.path} is closed")
        if self._db is None:
            opener = open_read_only if self.read_only else open_database
            self._db = opener(self.path, self.timeout)
        return self._db

    def close(self) -> None:
        """Close the connection (idempotent). A forked child's inherited connection is left alone."""
        with self._lock:
            db, self._db = self._db, None
            self._closed = True
            if db is not None and self._pid == os.getpid():
                db.close()

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            # The parent's connection (and a lock its threads may have held) are not ours to use.
            self._lock = threading.Lock()
            self._db = None
            self._pid = pid

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction: ``BEGIN IMMEDIATE`` to write (waits for other writers), a snapshot to read."""
        self._check_fork()
        if write and self.read_only:
            raise StoreError(f"the trace store {self.path} is open read-only")
        with self._lock:
            db = self._connection()
            try:
                retry_busy(lambda: db.execute("BEGIN IMMEDIATE" if write else "BEGIN"))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {'write' if write else 'read'} the trace store {self.path}: {exc}") from None
            try:
                yield db
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"cannot {'write' if write else 'read'} the trace store {self.path}: {exc}") from None
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")

    # -- writing ----------------------------------------------------------------------------------

    def write(
        self,
        events: Sequence[tuple[Mapping[str, Any], str]] = (),
        sessions: Mapping[str, Mapping[str, Any]] | None = None,
        updates: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Store wire-shape events (each with its exact JSON text), merge session properties and
        apply ``PUT /events`` bodies, in one transaction. Returns how many events were new."""
        now = now_ms()
        prepared = _writes.prepare_events(events, now)
        with self._transaction(write=True) as db:
            return _writes.write_prepared(db, prepared, sessions or {}, updates, now)

    def _upsert_sessions(
        self,
        db: sqlite3.Connection,
        sessions: Mapping[str, Mapping[str, Any]],
        spans: Mapping[str, list[Any]],
        now: int,
    ) -> list[str]:
        """``_writes.upsert_sessions`` inside the caller's transaction (the spool writes its own events)."""
        return _writes.upsert_sessions(db, sessions, spans, now)

    # -- reading ----------------------------------------------------------------------------------

    def sessions(self, limit: int = 20, offset: int = 0) -> list[SessionSummary]:
        """The most recently started sessions, newest first."""
        with self._transaction(write=False) as db:
            return _reads.session_summaries(db, limit, offset)

    def session(self, session_id: str) -> SessionSummary | None:
        with self._transaction(write=False) as db:
            return _reads.session_summary(db, session_id)

    def snapshot(self, read: Callable[[sqlite3.Connection], _T]) -> _T:
        """*read* run on the connection inside one read transaction (a consistent snapshot): for
        the store layer's own readers (the viewer's ``_browse``), which must not write."""
        with self._transaction(write=False) as db:
            return read(db)

    def count_sessions(self) -> int:
        with self._transaction(write=False) as db:
            return _reads.count_sessions(db)

    def session_ids(self) -> list[str]:
        """Every session id, oldest first."""
        with self._transaction(write=False) as db:
            return _reads.session_ids(db)

    def resolve_session(self, ref: str) -> str:
        """A session id from ``last``, a full id, or a unique start or end of one (4+ characters)."""
        with self._transaction(write=False) as db:
            return _reads.resolve_session(db, ref, self.path)

    def session_events(self, session_id: str, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """The session's events (updates merged), by start time (*limit* of them from *offset*; None: all)."""
        with self._transaction(write=False) as db:
            return _reads.session_events(db, session_id, -1 if limit is None else limit, offset)

    def session_tree(
        self, session_id: str, limit: int | None = None, offset: int = 0
    ) -> list[tuple[int, dict[str, Any]]]:
        """``(depth, event)`` of the session's events in tree order (depth first, children by start
        time): *limit* of them from *offset* (None: all), read without loading the others."""
        with self._transaction(write=False) as db:
            order = _reads.tree_order(db, session_id, -1 if limit is None else limit, offset)
            events = _reads.events_by_seq(db, [seq for seq, _ in order])
        return [(depth, event) for (_, depth), event in zip(order, events, strict=True)]

    def session_timeline(self, session_id: str) -> tuple[float, float] | None:
        """The first start and last end (epoch ms) of the session's events (None when it has none)."""
        with self._transaction(write=False) as db:
            return _reads.session_timeline(db, session_id)

    def last_seq(self) -> int:
        """The arrival number of the newest event (0 when empty)."""
        with self._transaction(write=False) as db:
            return _reads.last_seq(db)

    def events_after(self, seq: int, limit: int = 500, session_id: str | None = None) -> list[StoredEvent]:
        """Events stored after arrival number *seq*, oldest first (``tracer tail``)."""
        with self._transaction(write=False) as db:
            return _reads.events_after(db, seq, limit, session_id)

    def recent_events(self, count: int, session_id: str | None = None) -> list[StoredEvent]:
        """The last *count* events stored (of one session, if given), oldest first."""
        with self._transaction(write=False) as db:
            return _reads.recent_events(db, count, session_id)

    def query_events(
        self, filters: Mapping[str, str] | None = None, limit: int = 1000, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Events whose columns equal *filters* (``FILTER_COLUMNS``), by start time, and how many match."""
        filters = filters or {}
        _reads.check_filters(filters)
        with self._transaction(write=False) as db:
            return _reads.query_events(db, filters, limit, offset)

    def scan_events(
        self, filters: Mapping[str, str] | None = None, page: int = 1000
    ) -> Iterator[tuple[int, int | None, dict[str, Any]]]:
        """``(seq, start_time, event)`` of every event whose columns equal *filters*, in arrival
        order, read in pages (no lock held between): for queries the columns cannot answer."""
        filters = filters or {}
        _reads.check_filters(filters)
        cursor = 0
        while True:
            with self._transaction(write=False) as db:
                rows = _reads.matching_page(db, filters, cursor, page)
            if not rows:
                return
            for seq, start, event in rows:
                cursor = seq
                yield seq, start, event

    def events_by_seq(self, seqs: Sequence[int]) -> list[dict[str, Any]]:
        """The events with these arrival numbers, in the order given (missing ones left out)."""
        with self._transaction(write=False) as db:
            return _reads.events_by_seq(db, seqs)

    def count_events(self, session_ids: Sequence[str] | None = None) -> int:
        with self._transaction(write=False) as db:
            return _reads.count_events(db, session_ids)

    def iter_events(self, session_ids: Sequence[str] | None = None, page: int = 1000) -> Iterator[str]:
        """Every event's JSON (updates merged), in arrival order, read in pages (no lock held between)."""
        targets = list(session_ids) if session_ids is not None else None
        cursor = 0
        while True:
            with self._transaction(write=False) as db:
                rows = _reads.events_page(db, cursor, targets, page)
            if not rows:
                return
            for seq, text in rows:
                cursor = seq
                yield text

    def raw_event(self, event_id: str) -> str | None:
        """An event's JSON exactly as it was first received."""
        with self._transaction(write=False) as db:
            return _reads.raw_event(db, event_id)

    def integrity_check(self) -> str:
        """``ok``, or SQLite's description of the damage."""
        with self._transaction(write=False) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    def schema_version(self) -> int:
        with self._transaction(write=False) as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    # -- delivery bookkeeping (``tracer send``) ----------------------------------------------------

    def pending_delivery(self, server: str, session_id: str) -> Delivery:
        """What of *session_id* is not yet on *server*: one consistent snapshot."""
        with self._transaction(write=False) as db:
            return _deliveries.pending_delivery(db, server, session_id, self.path)

    def pending_updates(self, server: str, session_ids: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
        """Updates of these sessions (or their events) not sent to *server*, whose target is there."""
        with self._transaction(write=False) as db:
            return _deliveries.pending_updates(db, server, session_ids)

    def mark_delivered(self, server: str, kind: str, keys: Iterable[str | int]) -> None:
        """Record that *keys* (event ids, session ids or update seqs) are on *server*."""
        rows = _deliveries.delivery_rows(server, kind, keys, now_ms())
        if not rows:
            return
        with self._transaction(write=True) as db:
            _deliveries.mark_delivered(db, rows)
