"""The viewer's reads: the sessions list (filters, sort, paging, aggregates), one session, its
events in waterfall order, one event, and what changed after an arrival number.

Every function runs inside a read transaction the caller holds (``TraceStore``), on a connection
that may be read-only: nothing here writes the store (the waterfall's walk uses a TEMP table, which
lives outside the file). Rows are plain JSON-ready dicts in the viewer API's shapes (README,
"Viewer API"); times are epoch milliseconds.
"""

from __future__ import annotations

import array
import dataclasses
import sqlite3
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from ._reads import _TREE_FILL, _TREE_NODES, TREE_WALK
from ._sql import chunks, now_ms, placeholders

if TYPE_CHECKING:
    from ._store import TraceStore

__all__ = [
    "ERROR_PREVIEW",
    "EVENT_TYPES",
    "LIVE_WINDOW_MS",
    "SORTS",
    "Browser",
    "SessionQuery",
    "changed_sessions",
    "event_detail",
    "light_rows",
    "list_sessions",
    "new_rows",
    "session_detail",
    "waterfall_count",
    "waterfall_order",
    "waterfall_page",
]

#: A session is live when an event arrived within this (or it has no end yet).
LIVE_WINDOW_MS: Final = 60_000
#: Characters of an event's error in a light row (the detail has all of it).
ERROR_PREVIEW: Final = 300
EVENT_TYPES: Final = ("model", "tool", "chain", "session")

# The sort keys, each an SQL expression over the sessions row ``s`` and its aggregates ``a``.
SORTS: Final = {
    "start": "s.start_time",
    "duration": "(s.end_time - s.start_time)",
    "events": "a.events",
    "errors": "a.errors",
    "tokens": "a.total_tokens",
    "name": "lower(coalesce(s.session_name, ''))",
}
# Aggregates of every session, for the sorts that need them: each read from an index alone
# (events_by_session, events_failed, events_model_tokens: schema version 2).
_ALL_AGGREGATES: Final = """
SELECT c.session_id, c.events, coalesce(f.errors, 0) AS errors, coalesce(t.total_tokens, 0) AS total_tokens
FROM (SELECT session_id, count(*) AS events FROM events GROUP BY session_id) AS c
LEFT JOIN (SELECT session_id, count(*) AS errors FROM events WHERE error IS NOT NULL GROUP BY session_id) AS f
  ON f.session_id = c.session_id
LEFT JOIN (SELECT session_id, sum(total_tokens) AS total_tokens FROM events WHERE event_type = 'model'
           GROUP BY session_id) AS t
  ON t.session_id = c.session_id
"""
_LIGHT_COLUMNS: Final = (
    "seq, event_id, parent_id, event_type, event_name, start_time, end_time, duration, error, model, "
    "prompt_tokens, completion_tokens"
)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionQuery:
    """The sessions list's filters, sort and page (checked by the caller)."""

    text: str | None = None
    event_type: str | None = None
    model: str | None = None
    errors_only: bool = False
    since: int | None = None
    until: int | None = None
    sort: str = "start"
    descending: bool = True
    limit: int = 50
    offset: int = 0


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(query: SessionQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.text:
        pattern = _like(query.text)
        clauses.append(
            "(s.session_name LIKE ? ESCAPE '\\' OR s.source LIKE ? ESCAPE '\\' OR s.session_id LIKE ? ESCAPE '\\')"
        )
        params += [pattern, pattern, pattern]
    if query.event_type and query.event_type != "session":  # every session is a session event
        clauses.append("EXISTS (SELECT 1 FROM events AS x WHERE x.session_id = s.session_id AND x.event_type = ?)")
        params.append(query.event_type)
    if query.model:
        clauses.append("EXISTS (SELECT 1 FROM events AS x WHERE x.session_id = s.session_id AND x.model = ?)")
        params.append(query.model)
    if query.errors_only:
        clauses.append("EXISTS (SELECT 1 FROM events AS x WHERE x.session_id = s.session_id AND x.error IS NOT NULL)")
    if query.since is not None:
        clauses.append("s.start_time >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("s.start_time <= ?")
        params.append(query.until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_sessions(db: sqlite3.Connection, query: SessionQuery, now: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the sessions *query* selects, with their aggregates, and how many it selects."""
    where, params = _where(query)
    total = int(db.execute(f"SELECT count(*) FROM sessions AS s{where}", params).fetchone()[0])
    direction = "DESC" if query.descending else "ASC"
    order = f"{SORTS[query.sort]} {direction}, s.start_time {direction}, s.session_id {direction}"
    if query.sort in ("events", "errors", "tokens"):
        sql = (
            f"SELECT s.session_id FROM sessions AS s JOIN ({_ALL_AGGREGATES}) AS a ON a.session_id = s.session_id"
            f"{where} ORDER BY {order} LIMIT ? OFFSET ?"
        )
        # Sessions without events have no aggregates row: they sort as zeros, after (desc) the rest.
        sql = sql.replace("JOIN (", "LEFT JOIN (", 1)
        order_nulls = order.replace(SORTS[query.sort], f"coalesce({SORTS[query.sort]}, 0)")
        sql = sql.replace(order, order_nulls)
    else:
        sql = f"SELECT s.session_id FROM sessions AS s{where} ORDER BY {order} LIMIT ? OFFSET ?"
    ids = [row[0] for row in db.execute(sql, (*params, query.limit, query.offset))]
    rows = _session_rows(db, ids, now)
    return [rows[sid] for sid in ids if sid in rows], total


def _session_rows(db: sqlite3.Connection, ids: Sequence[str], now: int) -> dict[str, dict[str, Any]]:
    """The list's row of each session: its columns and aggregates (each from an index)."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids):
        marks = placeholders(len(chunk))
        for sid, name, source, start, end, updated in db.execute(
            "SELECT session_id, session_name, source, start_time, end_time, updated_at FROM sessions "
            f"WHERE session_id IN ({marks})",
            tuple(chunk),
        ):
            found[sid] = {
                "session_id": sid,
                "session_name": name,
                "source": source,
                "start_ms": start,
                "end_ms": end,
                "duration_ms": None if end is None else max(end - start, 0),
                "events": 0,
                "errors": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
                "models": [],
                "live": end is None or updated >= now - LIVE_WINDOW_MS,
            }
        # count and newest arrival from the (session_id, start_time) index alone (seq is its rowid);
        # the newest event's stored_at says whether the session is live (updated_at moves only
        # when the session's row changes, not for an event inside its time span).
        for sid, count, newest in db.execute(
            f"SELECT session_id, count(*), max(seq) FROM events WHERE session_id IN ({marks}) GROUP BY session_id",
            tuple(chunk),
        ):
            found[sid]["events"] = count
            if not found[sid]["live"]:
                (stored,) = db.execute("SELECT stored_at FROM events WHERE seq = ?", (newest,)).fetchone()
                found[sid]["live"] = stored >= now - LIVE_WINDOW_MS
        for sid, count in db.execute(
            f"SELECT session_id, count(*) FROM events WHERE session_id IN ({marks}) AND error IS NOT NULL "
            "GROUP BY session_id",
            tuple(chunk),
        ):
            found[sid]["errors"] = count
        for sid, prompt, completion, total in db.execute(
            "SELECT session_id, coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
            f"coalesce(sum(total_tokens), 0) FROM events WHERE session_id IN ({marks}) AND event_type = 'model' "
            "GROUP BY session_id",
            tuple(chunk),
        ):
            found[sid].update(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)
        for sid, model in db.execute(
            f"SELECT DISTINCT session_id, model FROM events WHERE session_id IN ({marks}) AND model IS NOT NULL "
            "ORDER BY session_id, model",
            tuple(chunk),
        ):
            found[sid]["models"].append(model)
    # A session without a name shows its first event's name, as `tracer sessions` does.
    for sid, row in found.items():
        if not row["session_name"]:
            first = db.execute(
                "SELECT event_name FROM events WHERE session_id = ? ORDER BY start_time, seq LIMIT 1", (sid,)
            ).fetchone()
            row["session_name"] = first[0] if first else "unknown"
    return found


def session_detail(db: sqlite3.Connection, session_id: str, now: int) -> dict[str, Any] | None:
    """The session's list row plus its ``properties`` and ``max_seq`` (its newest event's arrival)."""
    rows = _session_rows(db, [session_id], now)
    row = rows.get(session_id)
    if row is None:
        return None
    (text,) = db.execute("SELECT properties FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
    row["properties"] = orjson.loads(text)
    row["max_seq"] = int(
        db.execute("SELECT coalesce(max(seq), 0) FROM events WHERE session_id = ?", (session_id,)).fetchone()[0]
    )
    return row


# -- the waterfall --------------------------------------------------------------------------------

# The walk of ``_reads.tree_order`` with each row's number of children.
_WALK: Final = (
    TREE_WALK + "SELECT seq, depth, (SELECT count(*) FROM temp.tree_nodes AS k WHERE k.parent = walk.seq) FROM walk"
)


def waterfall_order(db: sqlite3.Connection, session_id: str, limit: int, offset: int) -> list[tuple[int, int, int]]:
    """``(seq, depth, children)`` of the session's events in waterfall order (depth first, siblings
    by start time; events whose parent is not in the session are roots), rows *offset* to
    *offset* + *limit* (``limit < 0``: all). Events in a parent-id cycle are left out."""
    for statement in _TREE_NODES:
        db.execute(statement)
    db.execute(_TREE_FILL, (session_id,))
    try:
        return [(int(a), int(b), int(c)) for a, b, c in db.execute(_WALK, (limit, offset))]
    finally:
        db.execute("DELETE FROM temp.tree_nodes")


def waterfall_count(db: sqlite3.Connection, session_id: str) -> tuple[int, int]:
    """How many events the session has, and the arrival number of its newest (0: none)."""
    count, newest = db.execute(
        "SELECT count(*), coalesce(max(seq), 0) FROM events WHERE session_id = ?", (session_id,)
    ).fetchone()
    return int(count), int(newest)


def light_rows(db: sqlite3.Connection, order: Sequence[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """The light rows (no inputs/outputs) of ``(seq, depth, children)``, in that order."""
    found: dict[int, dict[str, Any]] = {}
    for chunk in chunks([seq for seq, _, _ in order]):
        for row in db.execute(
            f"SELECT {_LIGHT_COLUMNS} FROM events WHERE seq IN ({placeholders(len(chunk))})", tuple(chunk)
        ):
            found[row[0]] = _light(row)
    result = []
    for seq, depth, children in order:
        item = found.get(seq)
        if item is not None:
            result.append({**item, "depth": depth, "children": children})
    return result


def waterfall_page(db: sqlite3.Connection, session_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
    """Rows *offset* to *offset* + *limit* of the session's waterfall, as light rows."""
    return light_rows(db, waterfall_order(db, session_id, limit, offset))


def _light(row: Sequence[Any]) -> dict[str, Any]:
    seq, event_id, parent, kind, name, start, end, duration, error, model, prompt, completion = row
    return {
        "event_id": event_id,
        "parent_id": parent,
        "event_type": kind,
        "event_name": name,
        "start_ms": start,
        "end_ms": end,
        "duration_ms": duration,
        "error": None if error is None else error[:ERROR_PREVIEW],
        "model": model,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "seq": seq,
    }


def event_detail(db: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    """The event as stored, late updates merged (what ``tracer show --json`` prints), with its ``seq``."""
    row = db.execute("SELECT seq, coalesce(current, raw) FROM events WHERE event_id = ?", (event_id,)).fetchone()
    if row is None:
        return None
    event: dict[str, Any] = orjson.loads(row[1])
    event["seq"] = int(row[0])
    return event


# -- what changed ---------------------------------------------------------------------------------


def max_seq(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


def data_version(db: sqlite3.Connection) -> int:
    """SQLite's ``PRAGMA data_version``: the same number on this connection until another
    connection commits a change to the store (no read of any table)."""
    return int(db.execute("PRAGMA data_version").fetchone()[0])


def changed_sessions(
    db: sqlite3.Connection, after: int, updated_since: int | None = None, limit: int = 1000
) -> tuple[list[str], int]:
    """The sessions that gained events after arrival number *after*, or whose row changed at or
    after *updated_since* (epoch ms: new sessions without events, properties, ends), at most
    *limit*; and the newest arrival number."""
    newest = max_seq(db)
    ids: list[str] = []
    if newest > after:
        ids = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT session_id FROM events WHERE seq > ? AND seq <= ? LIMIT ?", (after, newest, limit)
            )
        ]
    if updated_since is not None:
        seen = set(ids)
        for (sid,) in db.execute(
            "SELECT session_id FROM sessions WHERE updated_at >= ? LIMIT ?", (updated_since, limit)
        ):
            if sid not in seen:
                ids.append(sid)
                seen.add(sid)
    return ids, newest


def new_rows(
    db: sqlite3.Connection, session_id: str, after: int, limit: int = 1000
) -> tuple[list[dict[str, Any]], int]:
    """The session's events stored after arrival number *after* (oldest first, at most *limit*) as
    light rows with their depth and children, and the last arrival number they cover."""
    rows = db.execute(
        f"SELECT {_LIGHT_COLUMNS} FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (session_id, after, limit),
    ).fetchall()
    if not rows:
        return [], after
    result = [_light(row) for row in rows]
    ids = [item["event_id"] for item in result]
    children: dict[str, int] = {}
    for chunk in chunks(ids):
        # One pass over the session's rows per batch (there is no index on parent_id).
        for parent, count in db.execute(
            "SELECT parent_id, count(*) FROM events WHERE session_id = ? "
            f"AND parent_id IN ({placeholders(len(chunk))}) GROUP BY parent_id",
            (session_id, *chunk),
        ):
            children[parent] = count
    for row, item in zip(rows, result, strict=True):
        item["depth"] = _depth(db, session_id, row[2], item["event_id"])
        item["children"] = children.get(item["event_id"], 0)
    return result, int(rows[-1][0])


_MAX_DEPTH: Final = 10_000  # a parent chain longer than this is a cycle (or absurd): stop there


def _depth(db: sqlite3.Connection, session_id: str, parent: str | None, event_id: str) -> int:
    """How many ancestors of the event are in its session (parent ids followed by the unique index)."""
    depth, seen = 0, {event_id}
    while parent is not None and parent not in seen and depth < _MAX_DEPTH:
        seen.add(parent)
        row = db.execute(
            "SELECT parent_id FROM events WHERE event_id = ? AND session_id = ?", (parent, session_id)
        ).fetchone()
        if row is None:
            break
        depth += 1
        parent = row[0]
    return depth


# Whole waterfall orders kept in memory: three 8-byte integers per event (a 200,000-event session: 4.8 MB).
_CACHED_ORDERS: Final = 4


def _packed(order: Sequence[tuple[int, int, int]]) -> tuple[array.array[int], array.array[int], array.array[int]]:
    return (
        array.array("q", (row[0] for row in order)),
        array.array("q", (row[1] for row in order)),
        array.array("q", (row[2] for row in order)),
    )


class Browser:
    """The viewer's reads over one open store, each in its own snapshot (``TraceStore.snapshot``)."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._orders: dict[tuple[str, int, int], tuple[array.array[int], array.array[int], array.array[int]]] = {}

    def sessions(self, query: SessionQuery) -> tuple[list[dict[str, Any]], int]:
        now = now_ms()
        return self.store.snapshot(lambda db: list_sessions(db, query, now))

    def session(self, session_id: str) -> dict[str, Any] | None:
        now = now_ms()
        return self.store.snapshot(lambda db: session_detail(db, session_id, now))

    def waterfall(self, session_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int] | None:
        """A page of the session's waterfall and its event count; None for an unknown session.

        The first page walks only as far as it needs; a later page takes its rows from the whole
        order, computed once per session and state (its event count and newest arrival) and kept
        for the last ``_CACHED_ORDERS`` sessions, so paging through a 200,000-event session costs
        one walk, not one per page (bench/viewer_api.py)."""

        def read(db: sqlite3.Connection) -> tuple[list[dict[str, Any]], int] | None:
            if db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone() is None:
                return None
            total, newest = waterfall_count(db, session_id)
            key = (session_id, total, newest)
            with self._lock:
                cached = self._orders.get(key)
            if cached is None and offset == 0:
                return waterfall_page(db, session_id, limit, offset), total
            if cached is None:
                cached = _packed(waterfall_order(db, session_id, -1, 0))
                with self._lock:
                    self._orders = {k: v for k, v in self._orders.items() if k[0] != session_id}
                    self._orders[key] = cached
                    while len(self._orders) > _CACHED_ORDERS:
                        del self._orders[next(iter(self._orders))]
            seqs, depths, children = cached
            end = min(offset + limit, len(seqs))
            order = [(seqs[i], depths[i], children[i]) for i in range(offset, end)]
            return light_rows(db, order), total

        return self.store.snapshot(read)

    def event(self, event_id: str) -> dict[str, Any] | None:
        return self.store.snapshot(lambda db: event_detail(db, event_id))

    def max_seq(self) -> int:
        return self.store.snapshot(max_seq)

    def data_version(self) -> int:
        return self.store.snapshot(data_version)

    def changed_sessions(self, after: int, updated_since: int | None = None) -> tuple[list[str], int]:
        return self.store.snapshot(lambda db: changed_sessions(db, after, updated_since))

    def new_rows(self, session_id: str, after: int) -> tuple[list[dict[str, Any]], int]:
        return self.store.snapshot(lambda db: new_rows(db, session_id, after))
