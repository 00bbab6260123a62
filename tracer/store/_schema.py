"""The store's schema and its migrations.

``PRAGMA user_version`` holds the number of migrations applied. Opening a store applies the missing
ones in order, inside one ``BEGIN IMMEDIATE`` transaction (so concurrent openers serialize and each
migration runs once). To change the schema, append a migration, never edit one already released.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1: Final = (
    # One row per session: its merged session_properties and the span of its events (epoch ms).
    """
    CREATE TABLE sessions (
        session_id   TEXT PRIMARY KEY,
        session_name TEXT,
        source       TEXT,
        project      TEXT,
        properties   TEXT NOT NULL DEFAULT '{}',
        start_time   INTEGER NOT NULL,
        end_time     INTEGER,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    )
    """,
    "CREATE INDEX sessions_by_start ON sessions(start_time)",
    # One row per event: the wire JSON exactly as received (raw), the same with later PUT /events
    # updates merged (current; NULL while there are none), and the columns the commands query.
    # seq orders events by arrival: writers are serialized, so it only grows (tail, send).
    """
    CREATE TABLE events (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id          TEXT NOT NULL UNIQUE,
        session_id        TEXT NOT NULL,
        parent_id         TEXT,
        event_type        TEXT NOT NULL,
        event_name        TEXT NOT NULL,
        start_time        INTEGER,
        end_time          INTEGER,
        duration          REAL,
        error             TEXT,
        model             TEXT,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        total_tokens      INTEGER,
        raw               TEXT NOT NULL,
        current           TEXT,
        stored_at         INTEGER NOT NULL
    )
    """,
    "CREATE INDEX events_by_session ON events(session_id, start_time)",
    # PUT /events bodies, in arrival order. applied = 0 while the event (or session) they name is
    # not stored yet; they are merged when it arrives.
    """
    CREATE TABLE updates (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id   TEXT NOT NULL,
        body       TEXT NOT NULL,
        applied    INTEGER NOT NULL DEFAULT 0,
        stored_at  INTEGER NOT NULL
    )
    """,
    "CREATE INDEX updates_by_target ON updates(event_id)",
    "CREATE INDEX updates_pending ON updates(event_id) WHERE applied = 0",
    # What `tracer send` delivered, per server: kind 'event' (event id), 'session' (session id) or
    # 'update' (update seq). Re-running send skips all of these.
    """
    CREATE TABLE deliveries (
        server   TEXT NOT NULL,
        kind     TEXT NOT NULL,
        key      TEXT NOT NULL,
        sent_at  INTEGER NOT NULL,
        PRIMARY KEY (server, kind, key)
    ) WITHOUT ROWID
    """,
)

#: Migration i (0-based) takes a store from schema version i to i + 1.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1,)

SCHEMA_VERSION: Final = len(MIGRATIONS)
