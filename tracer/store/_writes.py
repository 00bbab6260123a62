"""The store's writes: events in batches, sessions' properties merged, ``PUT /events`` updates applied.

- Idempotent: an event id is stored once (``INSERT OR IGNORE``); session properties and updates
  are merged, bucket by bucket. An update that arrives before its event (or session) is kept and
  merged when that arrives, so the order writers deliver in does not matter.
- Each event keeps its wire JSON exactly as received (``raw``), so it can be re-sent unchanged,
  plus the same event with later updates merged (``current``, what readers and ``tracer send`` use).

Every function here runs inside a write transaction the caller holds (``TraceStore``).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from ._events import event_columns, merge_session_properties, merge_update
from ._sql import chunks, now_ms, placeholders

__all__ = ["INSERT_EVENT", "PreparedEvents", "prepare_events", "upsert_sessions", "write_prepared"]

logger = logging.getLogger("tracer")

# updates.applied: 0 while its target is not stored, 1 once merged, this when it cannot be merged.
_UNAPPLIABLE: Final = 2

INSERT_EVENT: Final = """
INSERT OR IGNORE INTO events (
    event_id, session_id, parent_id, event_type, event_name, start_time, end_time, duration, error,
    model, prompt_tokens, completion_tokens, total_tokens, raw, stored_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


@dataclasses.dataclass(slots=True)
class PreparedEvents:
    """Events turned into rows before the transaction (no lock held while computing them)."""

    rows: list[tuple[Any, ...]]
    #: session id -> [first start, last end, source, project] of the batch's events in it
    spans: dict[str, list[Any]]


def prepare_events(events: Sequence[tuple[Mapping[str, Any], str]], now: int) -> PreparedEvents:
    """The rows of wire-shape events (each with its exact JSON text) and their sessions' time spans."""
    rows: list[tuple[Any, ...]] = []
    spans: dict[str, list[Any]] = {}
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
    return PreparedEvents(rows, spans)


def write_prepared(
    db: sqlite3.Connection,
    prepared: PreparedEvents,
    sessions: Mapping[str, Mapping[str, Any]],
    updates: Sequence[Mapping[str, Any]],
    now: int,
) -> int:
    """Store the events, merge session properties, apply updates. Returns how many events were new."""
    created = upsert_sessions(db, sessions, prepared.spans, now)
    before = db.total_changes
    if prepared.rows:
        db.executemany(INSERT_EVENT, prepared.rows)
    inserted = db.total_changes - before
    if (inserted or created) and db.execute("SELECT 1 FROM updates WHERE applied = 0 LIMIT 1").fetchone():
        _apply_pending(db, [row[0] for row in prepared.rows] + created)
    for update in updates:
        _record_update(db, update, now)
    return inserted


def upsert_sessions(
    db: sqlite3.Connection,
    sessions: Mapping[str, Mapping[str, Any]],
    spans: Mapping[str, list[Any]],
    now: int,
) -> list[str]:
    """Create or merge the sessions named; returns the ids of those created."""
    ids = list(dict.fromkeys([*sessions, *spans]))
    existing: dict[str, tuple[str, int, int | None]] = {}
    for chunk in chunks(ids):
        for sid, text, start, end in db.execute(
            "SELECT session_id, properties, start_time, end_time FROM sessions "
            f"WHERE session_id IN ({placeholders(len(chunk))})",
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


def _record_update(db: sqlite3.Connection, update: Mapping[str, Any], now: int) -> None:
    target = str(update["event_id"])
    applied = _apply_isolated(db, target, update, now)
    db.execute(
        "INSERT INTO updates (event_id, body, applied, stored_at) VALUES (?, ?, ?, ?)",
        (target, orjson.dumps(dict(update)).decode(), applied, now),
    )


def _apply_isolated(db: sqlite3.Connection, target: str, update: Mapping[str, Any], now: int) -> int:
    """``_apply`` in a savepoint: an update that cannot be merged (one stored by an older version
    with a number SQLite cannot hold, say) is set aside as ``_UNAPPLIABLE`` instead of failing the
    write it came with, and every later write of its event."""
    db.execute("SAVEPOINT apply_update")
    try:
        applied = _apply(db, target, update, now)
    except (sqlite3.Error, OverflowError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        db.execute("ROLLBACK TO apply_update")
        db.execute("RELEASE apply_update")
        logger.warning("tracer: an update of %s cannot be applied and is set aside: %s", target, exc)
        return _UNAPPLIABLE
    db.execute("RELEASE apply_update")
    return int(applied)


def _apply(db: sqlite3.Connection, target: str, update: Mapping[str, Any], now: int) -> bool:
    """Merge *update* into the event (or else the session) *target*; False when neither is stored."""
    row = db.execute("SELECT coalesce(current, raw), session_id FROM events WHERE event_id = ?", (target,)).fetchone()
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


def _apply_pending(db: sqlite3.Connection, targets: Sequence[str]) -> None:
    """Merge the updates kept for *targets* (newly stored events or sessions), in arrival order."""
    now = now_ms()
    pending: list[tuple[int, str, str]] = []
    for chunk in chunks(targets):
        pending.extend(
            db.execute(
                "SELECT seq, event_id, body FROM updates "
                f"WHERE applied = 0 AND event_id IN ({placeholders(len(chunk))})",
                tuple(chunk),
            )
        )
    for seq, target, body in sorted(pending):
        try:
            update = orjson.loads(body)
        except orjson.JSONDecodeError:
            update = None
        applied = _apply_isolated(db, target, update, now) if isinstance(update, dict) else _UNAPPLIABLE
        if applied:
            db.execute("UPDATE updates SET applied = ? WHERE seq = ?", (applied, seq))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _as_ms(value: Any, default: int | None) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -(2**63) < value < 2**63:
        return default  # NaN, infinities and numbers SQLite's INTEGER cannot hold
    return int(value)
