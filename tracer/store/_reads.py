"""The store's reads: the sessions list, one session and its events, events by arrival, the collector's search.

What ``tracer sessions`` / ``show`` / ``tail`` / ``export`` and ``GET /events`` ask for. Every
function here runs inside a read transaction the caller holds (``TraceStore``), so each answer is
one consistent snapshot; events come back with their updates merged.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from ._sql import StoreError, chunks, placeholders

__all__ = [
    "FILTER_COLUMNS",
    "SessionSummary",
    "StoredEvent",
    "check_filters",
    "count_events",
    "count_sessions",
    "events_after",
    "events_page",
    "last_seq",
    "query_events",
    "raw_event",
    "recent_events",
    "resolve_session",
    "session_events",
    "session_ids",
    "session_summaries",
    "session_summary",
    "session_timeline",
    "tree_order",
]

_MIN_PARTIAL: Final = 4  # characters of a session id that `tracer show` accepts as a prefix or suffix

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


# -- sessions -------------------------------------------------------------------------------------


def _summaries(db: sqlite3.Connection, inner: str, params: Sequence[Any]) -> list[SessionSummary]:
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


def session_summaries(db: sqlite3.Connection, limit: int, offset: int) -> list[SessionSummary]:
    """The most recently started sessions, newest first."""
    inner = "SELECT * FROM sessions ORDER BY start_time DESC, created_at DESC LIMIT ? OFFSET ?"
    return _summaries(db, inner, (limit, offset))


def session_summary(db: sqlite3.Connection, session_id: str) -> SessionSummary | None:
    found = _summaries(db, "SELECT * FROM sessions WHERE session_id = ?", (session_id,))
    return found[0] if found else None


def count_sessions(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM sessions").fetchone()[0])


def session_ids(db: sqlite3.Connection) -> list[str]:
    """Every session id, oldest first."""
    return [row[0] for row in db.execute("SELECT session_id FROM sessions ORDER BY start_time, created_at")]


def resolve_session(db: sqlite3.Connection, ref: str, path: str) -> str:
    """A session id from ``last``, a full id, or a unique start or end of one (4+ characters)."""
    text = ref.strip().lower()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates: no id has them
        raise StoreError(f"no session {ref!r} in {path} (see `tracer sessions`)") from None
    if text in ("last", "latest", ""):
        row = db.execute("SELECT session_id FROM sessions ORDER BY start_time DESC, created_at DESC LIMIT 1")
        found = row.fetchone()
        if found is None:
            raise StoreError(f"no sessions in {path} yet")
        return str(found[0])
    if db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (ref.strip(),)).fetchone():
        return ref.strip()
    matches: list[str] = []
    if len(text) >= _MIN_PARTIAL:
        # Ids starting with *text*: those from it up to (not including) *text* with its last
        # character bumped; a last character of U+10FFFF has no successor, so no upper bound.
        bound, params = "", [text]
        if ord(text[-1]) < sys.maxunicode:
            bound = " AND session_id < ?"
            params.append(text[:-1] + chr(ord(text[-1]) + 1))
        matches = [
            row[0]
            for row in db.execute(f"SELECT session_id FROM sessions WHERE session_id >= ?{bound} LIMIT 6", params)
            if str(row[0]).startswith(text)
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
        raise StoreError(f"no session {ref!r} in {path} (see `tracer sessions`)")
    if len(matches) > 1:
        shown = ", ".join(matches[:5])
        raise StoreError(f"session id {ref!r} is ambiguous ({shown}…); give more characters")
    return str(matches[0])


def _span_ms(first: Any, last: Any, start: int, end: int | None) -> float | None:
    """A session's duration: over its events when it has any, else from its own times."""
    if first is not None and last is not None:
        return max(float(last) - float(first), 0.0)
    return None if end is None else float(max(end - start, 0))


# -- events ---------------------------------------------------------------------------------------


def session_events(db: sqlite3.Connection, session_id: str, limit: int = -1, offset: int = 0) -> list[dict[str, Any]]:
    """The session's events (updates merged), by start time: *limit* (negative: all) from *offset*."""
    rows = db.execute(
        "SELECT coalesce(current, raw) FROM events WHERE session_id = ? ORDER BY start_time, seq LIMIT ? OFFSET ?",
        (session_id, limit, offset),
    ).fetchall()
    return [orjson.loads(row[0]) for row in rows]


def session_timeline(db: sqlite3.Connection, session_id: str) -> tuple[float, float] | None:
    """The first start and the last end (epoch ms) of the session's events, or None when it has none."""
    first, last = db.execute(
        "SELECT min(start_time), max(start_time + coalesce(duration, end_time - start_time, 0)) "
        "FROM events WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    if first is None:
        return None
    return float(first), max(float(last if last is not None else first), float(first))


# The walk of a session's tree, depth first, children by start time: the recursive query's queue
# is ordered deepest first, so each subtree is finished before the next sibling is taken, and its
# LIMIT stops the walk after that many rows (the first page costs that page, not the session).
# The children lookup needs an index on parent, which the store does not have (writing one would
# cost every write): a temporary table of the session's (seq, parent's seq, start) has one, all
# integers (a 200,000-event session: 0.29 s, against 0.57 s for the same table keyed by id text).
_TREE_NODES: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS tree_nodes (seq INTEGER PRIMARY KEY, parent INTEGER, start_time INTEGER)",
    "CREATE INDEX IF NOT EXISTS temp.tree_children ON tree_nodes(parent, start_time, seq)",
    "DELETE FROM temp.tree_nodes",
)
_TREE_FILL: Final = """
INSERT INTO temp.tree_nodes
SELECT e.seq, CASE WHEN p.seq = e.seq THEN NULL ELSE p.seq END, e.start_time
FROM events AS e LEFT JOIN events AS p ON p.event_id = e.parent_id AND p.session_id = e.session_id
WHERE e.session_id = ?
"""
# The walk over temp.tree_nodes, depth first: its queue is ordered deepest first, so LIMIT stops it
# after that many rows (a first page costs that page). Followed by the SELECT of what a caller needs.
TREE_WALK: Final = """
WITH RECURSIVE walk(seq, depth, start_time) AS (
    SELECT seq, 0, start_time FROM temp.tree_nodes WHERE parent IS NULL
    UNION ALL
    SELECT c.seq, walk.depth + 1, c.start_time FROM temp.tree_nodes AS c JOIN walk ON c.parent = walk.seq
    ORDER BY 2 DESC, 3, 1
    LIMIT ? OFFSET ?
)
"""
_TREE_WALK: Final = TREE_WALK + "SELECT seq, depth FROM walk"


def tree_order(db: sqlite3.Connection, session_id: str, limit: int, offset: int = 0) -> list[tuple[int, int]]:
    """``(seq, depth)`` of the session's events in tree order (depth first, children by start
    time), rows *offset* to *offset* + *limit* (``limit < 0``: all). Events in a parent-id cycle
    are not reachable from a root and are left out."""
    for statement in _TREE_NODES:
        db.execute(statement)
    db.execute(_TREE_FILL, (session_id,))
    try:
        return [(int(seq), int(depth)) for seq, depth in db.execute(_TREE_WALK, (limit, offset))]
    finally:
        db.execute("DELETE FROM temp.tree_nodes")


def last_seq(db: sqlite3.Connection) -> int:
    """The arrival number of the newest event (0 when empty)."""
    return int(db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


def events_after(db: sqlite3.Connection, seq: int, limit: int, session_id: str | None) -> list[StoredEvent]:
    """Events stored after arrival number *seq*, oldest first (``tracer tail``)."""
    where, params = "seq > ?", [seq]
    if session_id is not None:
        where += " AND session_id = ?"
        params.append(session_id)  # type: ignore[arg-type]
    rows = db.execute(
        f"SELECT seq, coalesce(current, raw) FROM events WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)
    ).fetchall()
    return [StoredEvent(row[0], orjson.loads(row[1])) for row in rows]


def recent_events(db: sqlite3.Connection, count: int, session_id: str | None) -> list[StoredEvent]:
    """The last *count* events stored (of one session, if given), oldest first."""
    where, params = ("WHERE session_id = ?", [session_id]) if session_id is not None else ("", [])
    rows = db.execute(
        f"SELECT seq, coalesce(current, raw) FROM events {where} ORDER BY seq DESC LIMIT ?", (*params, count)
    ).fetchall()
    return [StoredEvent(row[0], orjson.loads(row[1])) for row in reversed(rows)]


def check_filters(filters: Mapping[str, str]) -> None:
    """Raise ``ValueError`` naming the filters that are not ``FILTER_COLUMNS``."""
    unknown = set(filters) - FILTER_COLUMNS
    if unknown:
        raise ValueError(f"cannot filter on {sorted(unknown)}; filterable: {', '.join(sorted(FILTER_COLUMNS))}")


def query_events(
    db: sqlite3.Connection, filters: Mapping[str, str], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Events whose columns equal *filters* (checked by ``check_filters``), by start time, and how many match."""
    where = " AND ".join(f"{name} = ?" for name in sorted(filters)) or "1"
    params = [filters[name] for name in sorted(filters)]
    total = int(db.execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0])
    rows = db.execute(
        f"SELECT coalesce(current, raw) FROM events WHERE {where} ORDER BY start_time, seq LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return [orjson.loads(row[0]) for row in rows], total


def matching_page(
    db: sqlite3.Connection, filters: Mapping[str, str], after: int, page: int
) -> list[tuple[int, int | None, dict[str, Any]]]:
    """Up to *page* events' (seq, start time, event with updates merged) whose columns equal
    *filters* (checked by ``check_filters``), after arrival number *after*, in arrival order."""
    where = "".join(f" AND {name} = ?" for name in sorted(filters))
    params = [filters[name] for name in sorted(filters)]
    rows = db.execute(
        f"SELECT seq, start_time, coalesce(current, raw) FROM events WHERE seq > ?{where} ORDER BY seq LIMIT ?",
        (after, *params, page),
    ).fetchall()
    return [(int(seq), start, orjson.loads(text)) for seq, start, text in rows]


def events_by_seq(db: sqlite3.Connection, seqs: Sequence[int]) -> list[dict[str, Any]]:
    """The events with these arrival numbers, in the order given (missing ones left out)."""
    found: dict[int, dict[str, Any]] = {}
    for chunk in chunks(seqs):
        for seq, text in db.execute(
            f"SELECT seq, coalesce(current, raw) FROM events WHERE seq IN ({placeholders(len(chunk))})", tuple(chunk)
        ):
            found[seq] = orjson.loads(text)
    return [found[seq] for seq in seqs if seq in found]


def count_events(db: sqlite3.Connection, session_ids: Sequence[str] | None) -> int:
    if session_ids is None:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    total = 0
    for chunk in chunks(session_ids):
        total += db.execute(
            f"SELECT count(*) FROM events WHERE session_id IN ({placeholders(len(chunk))})", tuple(chunk)
        ).fetchone()[0]
    return int(total)


def events_page(
    db: sqlite3.Connection, after: int, session_ids: Sequence[str] | None, page: int
) -> list[tuple[int, str]]:
    """Up to *page* events' (seq, JSON with updates merged) after arrival number *after*, in arrival order."""
    where, params = "seq > ?", [after]
    if session_ids is not None:
        where += f" AND session_id IN ({placeholders(len(session_ids))})"
        params.extend(session_ids)  # type: ignore[arg-type]
    rows = db.execute(
        f"SELECT seq, coalesce(current, raw) FROM events WHERE {where} ORDER BY seq LIMIT ?",
        (*params, page),
    ).fetchall()
    return [(int(seq), str(text)) for seq, text in rows]


def raw_event(db: sqlite3.Connection, event_id: str) -> str | None:
    """An event's JSON exactly as it was first received."""
    row = db.execute("SELECT raw FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else str(row[0])
