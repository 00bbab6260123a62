"""``TraceStore``: wire-shape events and sessions in one SQLite file, safe for several writers.

- WAL mode: readers never block the writer; writers (threads or processes) are serialized by
  SQLite, each write is one ``BEGIN IMMEDIATE`` transaction that waits (``timeout``) for the lock.
- Idempotent: an event id is stored once (``INSERT OR IGNORE``); session properties and
  ``PUT /events`` updates are merged, bucket by bucket. An update that arrives before its event
  is kept and merged when the event arrives, so the order writers deliver in does not matter.
- Each event keeps its wire JSON exactly as received (``raw``), so it can be re-sent unchanged,
  plus the same event with later updates merged (what readers and ``tracer send`` use).
- One connection per store object, per process (a forked child opens its own).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import orjson

from ._events import event_columns, merge_session_properties, merge_update
from ._schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SessionSummary", "StoreError", "StoredEvent", "TraceStore"]

_CHUNK: Final = 500  # ids per IN (...) list
_BUSY_RETRIES: Final = 5
_MIN_PARTIAL: Final = 4  # characters of a session id that `tracer show` accepts as a prefix or suffix

_INSERT_EVENT: Final = """
INSERT OR IGNORE INTO events (
    event_id, session_id, parent_id, event_type, event_name, start_time, end_time, duration, error,
    model, prompt_tokens, completion_tokens, total_tokens, raw, stored_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_SUMMARY: Final = """
SELECT s.session_id, s.session_name, s.source, s.project, s.properties, s.start_time, s.end_time,
       count(e.seq), count(e.error),
       coalesce(sum(CASE WHEN e.event_type = 'model' THEN e.prompt_tokens END), 0),
       coalesce(sum(CASE WHEN e.event_type = 'model' THEN e.completion_tokens END), 0),
       coalesce(sum(CASE WHEN e.event_type = 'model' THEN e.total_tokens END), 0),
       (SELECT r.event_name FROM events AS r WHERE r.session_id = s.session_id
        ORDER BY r.start_time, r.seq LIMIT 1),
       min(e.start_time), max(e.start_time + coalesce(e.duration, e.end_time - e.start_time, 0))
FROM ({inner}) AS s
LEFT JOIN events AS e ON e.session_id = s.session_id
GROUP BY s.session_id
ORDER BY s.start_time DESC, s.created_at DESC
"""

# Columns GET /events may filter on (all indexed or cheap to scan per session).
FILTER_COLUMNS: Final = frozenset({"session_id", "event_id", "event_type", "event_name", "parent_id"})


class StoreError(Exception):
    """A store that cannot be opened, read or written; the message is one line for the user."""


@dataclasses.dataclass(frozen=True, slots=True)
class SessionSummary:
    """One session as ``tracer sessions`` lists it (times in epoch ms, tokens of model events)."""

    session_id: str
    session_name: str
    source: str | None
    project: str | None
    start_time: int
    end_time: int | None
    event_count: int
    error_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    properties: dict[str, Any]
    #: Milliseconds from the first event's start to the last event's end (sub-ms precise).
    duration_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["duration"] = data.pop("duration_ms")
        return data


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event (updates merged) and its arrival number in the store."""

    seq: int
    event: dict[str, Any]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class TraceStore:
    """An open store. Thread-safe; use ``with TraceStore(path) as store:`` or call ``close()``.

    ``create=False`` refuses to create a missing file (the read-only commands use it).
    ``timeout`` is how long a write waits for other writers before giving up.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, timeout: float = 30.0) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.timeout = timeout
        if not create and not os.path.exists(self.path):
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
        db = self._db
        if db is not None:
            return db
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of the trace store {self.path}: {exc}") from None
        try:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the trace store {self.path}: {exc}") from None
        try:
            self._retry(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
            db.execute("PRAGMA synchronous=NORMAL")
            self._migrate(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(f"{self.path} is not a tracer store (not a valid SQLite database)") from None
            raise StoreError(f"cannot open the trace store {self.path}: {exc}") from None
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _retry(self, action: Any) -> Any:
        """Run *action*, retrying briefly when SQLite reports busy without waiting (WAL recovery)."""
        for attempt in range(_BUSY_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == _BUSY_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the trace store {self.path} has schema version {version}, newer than this tracer "
                f"understands ({SCHEMA_VERSION}); upgrade tracer"
            )
        self._retry(lambda: db.execute("BEGIN IMMEDIATE"))
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])  # another process may have won
            if version == 0:
                foreign = db.execute("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()
                if foreign[0]:
                    raise StoreError(f"{self.path} is an SQLite database, but not a tracer store")
            for migration in MIGRATIONS[version:]:
                for statement in migration:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

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
        with self._lock:
            db = self._connection()
            try:
                self._retry(lambda: db.execute("BEGIN IMMEDIATE" if write else "BEGIN"))
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
        sessions = sessions or {}
        now = _now_ms()
        rows: list[tuple[Any, ...]] = []
        spans: dict[str, list[Any]] = {}  # session id -> [first start, last end, source, project]
        for event, text in events:
            columns = event_columns(event)
            rows.append((*columns, text, now))
            span = spans.get(columns[1])
            if span is None:
                spans[columns[1]] = [columns[5], columns[6], event.get("source"), event.get("project")]
            else:
                if columns[5] is not None and (span[0] is None or columns[5] < span[0]):
                    span[0] = columns[5]
                if columns[6] is not None and (span[1] is None or columns[6] > span[1]):
                    span[1] = columns[6]
        with self._transaction(write=True) as db:
            created = self._upsert_sessions(db, sessions, spans, now)
            before = db.total_changes
            if rows:
                db.executemany(_INSERT_EVENT, rows)
            inserted = db.total_changes - before
            if (inserted or created) and db.execute("SELECT 1 FROM updates WHERE applied = 0 LIMIT 1").fetchone():
                self._apply_pending(db, [row[0] for row in rows] + created)
            for update in updates:
                self._record_update(db, update, now)
        return inserted

    def _upsert_sessions(
        self,
        db: sqlite3.Connection,
        sessions: Mapping[str, Mapping[str, Any]],
        spans: Mapping[str, list[Any]],
        now: int,
    ) -> list[str]:
        """Create or merge the sessions named; returns the ids of those created."""
        ids = list(dict.fromkeys([*sessions, *spans]))
        existing: dict[str, tuple[str, int, int | None]] = {}
        for chunk in _chunks(ids):
            marks = _marks(len(chunk))
            for sid, text, start, end in db.execute(
                f"SELECT session_id, properties, start_time, end_time FROM sessions WHERE session_id IN ({marks})",
                tuple(chunk),
            ):
                existing[sid] = (text, start, end)
        created: list[str] = []
        for sid in ids:
            incoming = sessions.get(sid)
            first, last, source, project = spans.get(sid) or (None, None, None, None)
            old = existing.get(sid)
            props: dict[str, Any]
            if old is None:
                props = {"session_id": sid}
                if incoming:
                    merge_session_properties(props, incoming)
                if source is not None and "source" not in props:
                    props["source"] = source
                start = first if first is not None else _as_ms(props.get("start_time"), now)
                end = last if last is not None else _as_ms(props.get("end_time"), None)
                db.execute(
                    "INSERT INTO sessions (session_id, session_name, source, project, properties, start_time, "
                    "end_time, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sid,
                        _str_or_none(props.get("session_name")),
                        _str_or_none(props.get("source")),
                        _str_or_none(project if project is not None else props.get("project")),
                        orjson.dumps(props).decode(),
                        start,
                        end,
                        now,
                        now,
                    ),
                )
                created.append(sid)
                continue
            old_text, old_start, old_end = old
            start = old_start if first is None else min(old_start, first)
            end = old_end if last is None else (last if old_end is None else max(old_end, last))
            text = old_text
            if incoming:
                merged = merge_session_properties(orjson.loads(old_text), incoming)
                text = orjson.dumps(merged).decode()
            if text == old_text and start == old_start and end == old_end:
                continue
            props = orjson.loads(text)
            db.execute(
                "UPDATE sessions SET properties = ?, session_name = coalesce(?, session_name), "
                "source = coalesce(?, source), start_time = ?, end_time = ?, updated_at = ? WHERE session_id = ?",
                (
                    text,
                    _str_or_none(props.get("session_name")),
                    _str_or_none(props.get("source")),
                    start,
                    end,
                    now,
                    sid,
                ),
            )
        return created

    def _record_update(self, db: sqlite3.Connection, update: Mapping[str, Any], now: int) -> None:
        target = str(update["event_id"])
        applied = self._apply(db, target, update, now)
        db.execute(
            "INSERT INTO updates (event_id, body, applied, stored_at) VALUES (?, ?, ?, ?)",
            (target, orjson.dumps(dict(update)).decode(), int(applied), now),
        )

    def _apply(self, db: sqlite3.Connection, target: str, update: Mapping[str, Any], now: int) -> bool:
        """Merge *update* into the event (or else the session) *target*; False when neither is stored."""
        row = db.execute(
            "SELECT coalesce(current, raw), session_id FROM events WHERE event_id = ?", (target,)
        ).fetchone()
        if row is not None:
            event = merge_update(orjson.loads(row[0]), update)
            columns = event_columns(event)
            db.execute(
                "UPDATE events SET current = ?, end_time = ?, duration = ?, error = ?, model = ?, "
                "prompt_tokens = ?, completion_tokens = ?, total_tokens = ? WHERE event_id = ?",
                (orjson.dumps(event).decode(), *columns[6:], target),
            )
            if columns[6] is not None:
                db.execute(
                    "UPDATE sessions SET end_time = max(coalesce(end_time, ?), ?) WHERE session_id = ?",
                    (columns[6], columns[6], row[1]),
                )
            return True
        row = db.execute("SELECT properties FROM sessions WHERE session_id = ?", (target,)).fetchone()
        if row is None:
            return False
        props = merge_session_properties(orjson.loads(row[0]), update)
        db.execute(
            "UPDATE sessions SET properties = ?, updated_at = ? WHERE session_id = ?",
            (orjson.dumps(props).decode(), now, target),
        )
        return True

    def _apply_pending(self, db: sqlite3.Connection, targets: Sequence[str]) -> None:
        now = _now_ms()
        pending: list[tuple[int, str, str]] = []
        for chunk in _chunks(targets):
            pending.extend(
                db.execute(
                    f"SELECT seq, event_id, body FROM updates WHERE applied = 0 AND event_id IN ({_marks(len(chunk))})",
                    tuple(chunk),
                )
            )
        for seq, target, body in sorted(pending):
            if self._apply(db, target, orjson.loads(body), now):
                db.execute("UPDATE updates SET applied = 1 WHERE seq = ?", (seq,))

    # -- reading ----------------------------------------------------------------------------------

    def _summaries(self, db: sqlite3.Connection, inner: str, params: Sequence[Any]) -> list[SessionSummary]:
        result = []
        for row in db.execute(_SUMMARY.format(inner=inner), tuple(params)):
            props = orjson.loads(row[4])
            result.append(
                SessionSummary(
                    session_id=row[0],
                    session_name=row[1] or row[12] or "unknown",
                    source=row[2],
                    project=row[3],
                    start_time=row[5],
                    end_time=row[6],
                    event_count=row[7],
                    error_count=row[8],
                    prompt_tokens=row[9],
                    completion_tokens=row[10],
                    total_tokens=row[11],
                    properties=props,
                    duration_ms=_span_ms(row[13], row[14], row[5], row[6]),
                )
            )
        return result

    def sessions(self, limit: int = 20, offset: int = 0) -> list[SessionSummary]:
        """The most recently started sessions, newest first."""
        inner = "SELECT * FROM sessions ORDER BY start_time DESC, created_at DESC LIMIT ? OFFSET ?"
        with self._transaction(write=False) as db:
            return self._summaries(db, inner, (limit, offset))

    def session(self, session_id: str) -> SessionSummary | None:
        with self._transaction(write=False) as db:
            found = self._summaries(db, "SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        return found[0] if found else None

    def count_sessions(self) -> int:
        with self._transaction(write=False) as db:
            return int(db.execute("SELECT count(*) FROM sessions").fetchone()[0])

    def resolve_session(self, ref: str) -> str:
        """A session id from ``last``, a full id, or a unique start or end of one (4+ characters)."""
        text = ref.strip().lower()
        with self._transaction(write=False) as db:
            if text in ("last", "latest", ""):
                row = db.execute("SELECT session_id FROM sessions ORDER BY start_time DESC, created_at DESC LIMIT 1")
                found = row.fetchone()
                if found is None:
                    raise StoreError(f"no sessions in {self.path} yet")
                return str(found[0])
            if db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (ref.strip(),)).fetchone():
                return ref.strip()
            matches: list[str] = []
            if len(text) >= _MIN_PARTIAL:
                upper = text[:-1] + chr(ord(text[-1]) + 1)
                matches = [
                    row[0]
                    for row in db.execute(
                        "SELECT session_id FROM sessions WHERE session_id >= ? AND session_id < ? LIMIT 6",
                        (text, upper),
                    )
                ]
                if not matches:  # the end of an id (what `tracer sessions` shows)
                    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                    matches = [
                        row[0]
                        for row in db.execute(
                            "SELECT session_id FROM sessions WHERE session_id LIKE ? ESCAPE '\\' LIMIT 6", (pattern,)
                        )
                    ]
        if not matches:
            raise StoreError(f"no session {ref!r} in {self.path} (see `tracer sessions`)")
        if len(matches) > 1:
            shown = ", ".join(matches[:5])
            raise StoreError(f"session id {ref!r} is ambiguous ({shown}…); give more characters")
        return str(matches[0])

    def session_events(self, session_id: str) -> list[dict[str, Any]]:
        """The session's events (updates merged), by start time."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT coalesce(current, raw) FROM events WHERE session_id = ? ORDER BY start_time, seq",
                (session_id,),
            ).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def last_seq(self) -> int:
        """The arrival number of the newest event (0 when empty)."""
        with self._transaction(write=False) as db:
            return int(db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def events_after(self, seq: int, limit: int = 500, session_id: str | None = None) -> list[StoredEvent]:
        """Events stored after arrival number *seq*, oldest first (``tracer tail``)."""
        where, params = "seq > ?", [seq]
        if session_id is not None:
            where += " AND session_id = ?"
            params.append(session_id)  # type: ignore[arg-type]
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT seq, coalesce(current, raw) FROM events WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)
            ).fetchall()
        return [StoredEvent(row[0], orjson.loads(row[1])) for row in rows]

    def recent_events(self, count: int, session_id: str | None = None) -> list[StoredEvent]:
        """The last *count* events stored (of one session, if given), oldest first."""
        where, params = ("WHERE session_id = ?", [session_id]) if session_id is not None else ("", [])
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT seq, coalesce(current, raw) FROM events {where} ORDER BY seq DESC LIMIT ?", (*params, count)
            ).fetchall()
        return [StoredEvent(row[0], orjson.loads(row[1])) for row in reversed(rows)]

    def query_events(
        self, filters: Mapping[str, str] | None = None, limit: int = 1000, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Events whose columns equal *filters* (``FILTER_COLUMNS``), by start time, and how many match."""
        filters = filters or {}
        unknown = set(filters) - FILTER_COLUMNS
        if unknown:
            raise ValueError(f"cannot filter on {sorted(unknown)}; filterable: {', '.join(sorted(FILTER_COLUMNS))}")
        where = " AND ".join(f"{name} = ?" for name in sorted(filters)) or "1"
        params = [filters[name] for name in sorted(filters)]
        with self._transaction(write=False) as db:
            total = int(db.execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0])
            rows = db.execute(
                f"SELECT coalesce(current, raw) FROM events WHERE {where} ORDER BY start_time, seq LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return [orjson.loads(row[0]) for row in rows], total

    def count_events(self, session_ids: Sequence[str] | None = None) -> int:
        with self._transaction(write=False) as db:
            if session_ids is None:
                return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
            total = 0
            for chunk in _chunks(session_ids):
                total += db.execute(
                    f"SELECT count(*) FROM events WHERE session_id IN ({_marks(len(chunk))})", tuple(chunk)
                ).fetchone()[0]
            return total

    def iter_events(self, session_ids: Sequence[str] | None = None, page: int = 1000) -> Iterator[str]:
        """Every event's JSON (updates merged), in arrival order, read in pages (no lock held between)."""
        targets = list(session_ids) if session_ids is not None else None
        cursor = 0
        while True:
            where, params = "seq > ?", [cursor]
            if targets is not None:
                where += f" AND session_id IN ({_marks(len(targets))})"
                params.extend(targets)  # type: ignore[arg-type]
            with self._transaction(write=False) as db:
                rows = db.execute(
                    f"SELECT seq, coalesce(current, raw) FROM events WHERE {where} ORDER BY seq LIMIT ?",
                    (*params, page),
                ).fetchall()
            if not rows:
                return
            for seq, text in rows:
                cursor = seq
                yield text

    def raw_event(self, event_id: str) -> str | None:
        """An event's JSON exactly as it was first received."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT raw FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else str(row[0])

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
            row = db.execute(
                "SELECT properties, session_name, source FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no session {session_id!r} in {self.path}")
            props = orjson.loads(row[0])
            props.setdefault("session_id", session_id)
            props["session_name"] = props.get("session_name") or row[1] or _first_name(db, session_id)
            props["source"] = props.get("source") or row[2] or "unknown"
            session_sent = _delivered(db, server, "session", session_id)
            events = db.execute(
                "SELECT event_id, coalesce(current, raw) FROM events AS e WHERE session_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM deliveries AS d WHERE d.server = ? AND d.kind = 'event' AND d.key = e.event_id) "
                "ORDER BY start_time, seq",
                (session_id, server),
            ).fetchall()
            folded: dict[str, list[int]] = {}
            ids = [event_id for event_id, _ in events] + [session_id]
            for chunk in _chunks(ids):
                for seq, target in db.execute(
                    f"SELECT seq, event_id FROM updates WHERE applied = 1 AND event_id IN ({_marks(len(chunk))})",
                    tuple(chunk),
                ):
                    folded.setdefault(target, []).append(seq)
        return Delivery(
            session_id=session_id,
            properties=props,
            session_sent=session_sent,
            events=[(event_id, text) for event_id, text in events],
            folded=folded,
        )

    def pending_updates(self, server: str, session_ids: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
        """Updates of these sessions (or their events) not sent to *server*, whose target is there."""
        result: list[tuple[int, dict[str, Any]]] = []
        with self._transaction(write=False) as db:
            for chunk in _chunks(session_ids):
                marks = _marks(len(chunk))
                rows = db.execute(
                    "SELECT u.seq, u.body FROM updates AS u WHERE u.applied = 1 "
                    "AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.server = ? AND d.kind = 'update' "
                    "AND d.key = CAST(u.seq AS TEXT)) "
                    "AND EXISTS (SELECT 1 FROM deliveries AS t WHERE t.server = ? AND t.kind IN ('event', 'session') "
                    "AND t.key = u.event_id) "
                    f"AND (u.event_id IN ({marks}) "
                    f"OR u.event_id IN (SELECT event_id FROM events WHERE session_id IN ({marks})))",
                    (server, server, *chunk, *chunk),
                ).fetchall()
                result.extend((seq, orjson.loads(body)) for seq, body in rows)
        result.sort(key=lambda item: item[0])
        return result

    def mark_delivered(self, server: str, kind: str, keys: Iterable[str | int]) -> None:
        """Record that *keys* (event ids, session ids or update seqs) are on *server*."""
        now = _now_ms()
        rows = [(server, kind, str(key), now) for key in keys]
        if not rows:
            return
        with self._transaction(write=True) as db:
            db.executemany("INSERT OR IGNORE INTO deliveries (server, kind, key, sent_at) VALUES (?, ?, ?, ?)", rows)

    def session_ids(self) -> list[str]:
        """Every session id, oldest first."""
        with self._transaction(write=False) as db:
            return [row[0] for row in db.execute("SELECT session_id FROM sessions ORDER BY start_time, created_at")]


@dataclasses.dataclass(slots=True)
class Delivery:
    """A session's share of a ``send``: its properties, and events not yet on the server.

    ``folded`` maps an event id (or the session id) to the seqs of the updates already merged
    into what will be sent, so that they are not sent again as ``PUT /events``.
    """

    session_id: str
    properties: dict[str, Any]
    session_sent: bool
    events: list[tuple[str, str]]
    folded: dict[str, list[int]]


def _delivered(db: sqlite3.Connection, server: str, kind: str, key: str) -> bool:
    row = db.execute("SELECT 1 FROM deliveries WHERE server = ? AND kind = ? AND key = ?", (server, kind, key))
    return row.fetchone() is not None


def _first_name(db: sqlite3.Connection, session_id: str) -> str:
    row = db.execute(
        "SELECT event_name FROM events WHERE session_id = ? ORDER BY start_time, seq LIMIT 1", (session_id,)
    ).fetchone()
    return str(row[0]) if row is not None else "unknown"


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _as_ms(value: Any, default: int | None) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return default
    return int(value)


def _span_ms(first: Any, last: Any, start: int, end: int | None) -> float | None:
    """A session's duration: over its events when it has any, else from its own times."""
    if first is not None and last is not None:
        return max(float(last) - float(first), 0.0)
    return None if end is None else float(max(end - start, 0))
