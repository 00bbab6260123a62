"""The store's schema: its tables, its migrations, and opening a file as a store.

``PRAGMA user_version`` holds the number of migrations applied. Opening a store applies the missing
ones in order, inside one ``BEGIN IMMEDIATE`` transaction (so concurrent openers serialize and each
migration runs once). To change the schema, append a migration, never edit one already released.
Opening refuses what is not a tracer store: a file that is not SQLite, an SQLite database with
other tables, or a store with a newer schema than this tracer knows.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from typing import Final

from ._sql import StoreError, retry_busy

__all__ = ["MIGRATIONS", "READABLE_FROM_VERSION", "SCHEMA_VERSION", "open_database", "open_read_only"]

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

_V2: Final = (
    # The viewer's sessions list (``_browse``): filters "has an event of this type / with this model /
    # that failed" and the per-session token sums, answered by probing these per session instead of
    # reading the session's rows (2000 sessions x 100 events: bench/viewer_api.py, README
    # "Performance" and bench/RESULTS.md). The model, error and token ones are partial: only the
    # rows that have one.
    "CREATE INDEX events_by_session_type ON events(session_id, event_type)",
    "CREATE INDEX events_by_session_model ON events(session_id, model) WHERE model IS NOT NULL",
    "CREATE INDEX events_failed ON events(session_id) WHERE error IS NOT NULL",
    """
    CREATE INDEX events_model_tokens ON events(session_id, prompt_tokens, completion_tokens, total_tokens)
    WHERE event_type = 'model'
    """,
)

#: Migration i (0-based) takes a store from schema version i to i + 1.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2)

SCHEMA_VERSION: Final = len(MIGRATIONS)

#: The oldest schema a read-only open accepts: the migrations after it only add indexes, so every
#: read works on it (slower) until a writer opens the store and migrates it.
READABLE_FROM_VERSION: Final = 1


def open_database(path: str, timeout: float) -> sqlite3.Connection:
    """A connection to the store *path* (created if missing) in WAL mode, migrated to ``SCHEMA_VERSION``.

    *timeout* is how long a statement waits for other writers. Raises ``StoreError`` for a
    directory that cannot be created, a file that is not a store, or a newer schema.
    """
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory of the trace store {path}: {exc}") from None
    try:
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the trace store {path}: {exc}") from None
    try:
        retry_busy(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
        db.execute("PRAGMA synchronous=NORMAL")
        _migrate(db, path)
    except sqlite3.DatabaseError as exc:
        db.close()
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise StoreError(f"{path} is not a tracer store (not a valid SQLite database)") from None
        raise StoreError(f"cannot open the trace store {path}: {exc}") from None
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, path: str) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the trace store {path} has schema version {version}, newer than this tracer "
            f"understands ({SCHEMA_VERSION}); upgrade tracer"
        )
    retry_busy(lambda: db.execute("BEGIN IMMEDIATE"))
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])  # another process may have won
        if version == 0:
            foreign = db.execute("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()
            if foreign[0]:
                raise StoreError(f"{path} is an SQLite database, but not a tracer store")
        for migration in MIGRATIONS[version:]:
            for statement in migration:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def open_read_only(path: str, timeout: float) -> sqlite3.Connection:
    """A read-only connection to the existing store *path*: nothing in the file is ever changed.

    Opened as ``file:…?mode=ro``: no journal mode switch, no schema written, no migration; a file
    that is not a store (another application's database, an empty file) is refused with
    ``StoreError`` after reading its header only. A store whose directory the user cannot write,
    with no ``-wal`` file beside it (fully checkpointed), is opened ``immutable`` (SQLite could not
    create the ``-shm`` file a WAL reader needs, and there is nothing outside the main file to read).
    """
    if not os.path.isfile(path):
        raise StoreError(f"no trace store at {path}")
    if os.path.getsize(path) == 0:
        raise StoreError(f"{path} is empty: not a tracer store")
    base = "file:" + urllib.parse.quote(path) + "?mode=ro"
    try:
        return _checked_read_only(base, path, timeout)
    except sqlite3.OperationalError as exc:
        cannot_share = "unable to open" in str(exc) or "readonly database" in str(exc)
        if not cannot_share or os.path.exists(path + "-wal"):
            raise StoreError(f"cannot open the trace store {path}: {exc}") from None
    try:
        return _checked_read_only(base + "&immutable=1", path, timeout)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the trace store {path}: {exc}") from None


def _checked_read_only(uri: str, path: str, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        version = int(retry_busy(lambda: db.execute("PRAGMA user_version").fetchone())[0])
        if version == 0:
            foreign = db.execute("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()
            what = "an SQLite database, but not a tracer store" if foreign[0] else "an empty SQLite database"
            raise StoreError(f"{path} is {what}")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the trace store {path} has schema version {version}, newer than this tracer "
                f"understands ({SCHEMA_VERSION}); upgrade tracer"
            )
        if version < READABLE_FROM_VERSION:
            raise StoreError(
                f"the trace store {path} has the older schema version {version}: open it once with a "
                "traced program or `tracer serve` (which upgrade it), then read it"
            )
    except sqlite3.DatabaseError as exc:
        db.close()
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise StoreError(f"{path} is not a tracer store (not a valid SQLite database)") from None
        raise
    except BaseException:
        db.close()
        raise
    return db
