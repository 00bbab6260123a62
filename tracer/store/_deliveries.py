"""The delivery bookkeeping of ``tracer send``: what of each session is already on which server.

The ``deliveries`` table holds one row per (server, kind, key) sent: kind ``event`` (an event
id), ``session`` (a session id) or ``update`` (an update's seq). ``send_store`` (``_send.py``)
asks what is pending, sends it, and marks what the server acknowledged, so a second run sends
only what is new. Every function here runs inside a transaction the caller holds (``TraceStore``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ._sql import StoreError, chunks, placeholders

__all__ = ["Delivery", "delivery_rows", "mark_delivered", "pending_delivery", "pending_updates"]


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


def pending_delivery(db: sqlite3.Connection, server: str, session_id: str, path: str) -> Delivery:
    """What of *session_id* is not yet on *server* (*path* names the store in errors)."""
    row = db.execute(
        "SELECT properties, session_name, source FROM sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    if row is None:
        raise StoreError(f"no session {session_id!r} in {path}")
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
    for chunk in chunks(ids):
        for seq, target in db.execute(
            f"SELECT seq, event_id FROM updates WHERE applied = 1 AND event_id IN ({placeholders(len(chunk))})",
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


def pending_updates(
    db: sqlite3.Connection, server: str, session_ids: Sequence[str]
) -> list[tuple[int, dict[str, Any]]]:
    """Updates of these sessions (or their events) not sent to *server*, whose target is there."""
    result: list[tuple[int, dict[str, Any]]] = []
    for chunk in chunks(session_ids):
        marks = placeholders(len(chunk))
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


def delivery_rows(server: str, kind: str, keys: Iterable[str | int], now: int) -> list[tuple[str, str, str, int]]:
    """The ``deliveries`` rows saying *keys* (event ids, session ids or update seqs) are on *server*."""
    return [(server, kind, str(key), now) for key in keys]


def mark_delivered(db: sqlite3.Connection, rows: Sequence[tuple[str, str, str, int]]) -> None:
    """Record *rows* (``delivery_rows``); a key already marked stays as it was."""
    db.executemany("INSERT OR IGNORE INTO deliveries (server, kind, key, sent_at) VALUES (?, ?, ?, ?)", rows)


def _delivered(db: sqlite3.Connection, server: str, kind: str, key: str) -> bool:
    row = db.execute("SELECT 1 FROM deliveries WHERE server = ? AND kind = ? AND key = ?", (server, kind, key))
    return row.fetchone() is not None


def _first_name(db: sqlite3.Connection, session_id: str) -> str:
    row = db.execute(
        "SELECT event_name FROM events WHERE session_id = ? ORDER BY start_time, seq LIMIT 1", (session_id,)
    ).fetchone()
    return str(row[0]) if row is not None else "unknown"
