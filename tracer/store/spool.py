"""``SQLiteSpool``: the pipeline's on-disk spool (``tracer._spool.Spool``) in the local store's format.

A spool file is a trace store (same schema): spooled events keep their exact wire JSON in the
``events`` table and their sessions' properties in ``sessions``, so ``tracer sessions --store
.tracer/spool.db`` / ``show`` / ``export`` read it, and ``tracer send --spool PATH`` drains it.

- Writing is one ``BEGIN IMMEDIATE`` transaction per batch (SQLite serializes the processes that
  share the file; ids are stored once).
- Replaying: one process at a time holds an exclusive ``flock`` on ``PATH.lock`` (the kernel frees
  it when that process dies, even by SIGKILL, so no expiry is needed), reads the oldest events by
  arrival order (``seq``) after the replay cursor, sends them, then moves the cursor past them (one
  row of the ``deliveries`` table: server ``spool``, kind ``replayed_through``, the seq in
  ``sent_at``). A crash between the send and the cursor's move only re-sends events whose ids the
  server already has (event ids are idempotent). Rows behind the cursor are deleted later, in
  large ranges (``tidy``): deleting each replayed batch's rows cost 12-40 µs per event (three
  b-trees per row), which capped replay near 22,000 events/s; a range of tens of thousands costs
  about 10 µs per event and is taken off the replay's path.
- Bounded: when the file's pages in use pass ``max_bytes``, the oldest events are deleted (and
  counted by the caller as ``dropped["spool_full"]``).
- The file is created with mode 0600: it holds captured inputs and outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Final, ParamSpec, TypeVar

import orjson

from .._export import Batch
from .._spool import SpoolClaim, SpoolError, SpoolWrite
from ._sql import StoreError
from ._sql import chunks as _chunks
from ._sql import placeholders as _marks
from ._store import TraceStore
from ._writes import INSERT_EVENT, prepare_events

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lease, one process per spool file
    fcntl = None  # type: ignore[assignment]

__all__ = ["DEFAULT_SPOOL", "SQLiteSpool", "SpoolReport", "default_spool_path", "drain_spool"]

#: Where spooled events go when the ``spool`` setting is left at its default (true).
DEFAULT_SPOOL: Final = os.path.join(".tracer", "spool.db")
# When full, drop down to this fraction of the limit, so that a spool at its limit does not
# delete a few rows on every write.
_REFILL_FRACTION: Final = 0.9
# How often the backlog count is re-read from the file (other processes write it too); a count of
# a million rows takes tens of ms, so not on every write.
_RECOUNT_INTERVAL: Final = 2.0
# Replayed rows deleted per ``tidy()`` call (one transaction; about 0.2-0.4 s of the worker).
_TIDY_ROWS: Final = 20_000
# The replay cursor, kept in the store's own bookkeeping table (see the module docstring).
_CURSOR_SERVER: Final = "spool"
_CURSOR_KIND: Final = "replayed_through"
# JSON text per insert statement (see SQLiteSpool.write).
_STATEMENT_BYTES: Final = 1024 * 1024
# Sessions' first start and last end over the events just inserted (seq > :after), as the store keeps
# them. A named parameter (bound from a dict): Python 3.12 deprecates numbered ones bound from a sequence.
_SESSION_TIMES: Final = """
UPDATE sessions SET
    start_time = min(start_time, coalesce(
        (SELECT min(e.start_time) FROM events AS e WHERE e.seq > :after AND e.session_id = sessions.session_id),
        start_time)),
    end_time = max(coalesce(end_time, 0), coalesce(
        (SELECT max(e.end_time) FROM events AS e WHERE e.seq > :after AND e.session_id = sessions.session_id),
        0))
WHERE session_id IN (SELECT session_id FROM events WHERE seq > :after)
"""
# The store's events columns, read by SQLite out of each event's JSON text (an array of strings:
# each ``value`` is the event's exact text, kept as ``raw``). Mirrors ``_events.event_columns``.
_INSERT_FROM_JSON: Final = """
INSERT OR IGNORE INTO events (
    event_id, session_id, parent_id, event_type, event_name, start_time, end_time, duration, error,
    model, prompt_tokens, completion_tokens, total_tokens, raw, stored_at
) SELECT
    event_id, session_id, parent_id, event_type, event_name, start_time, end_time, duration, error, model,
    prompt, completion,
    coalesce(total, CASE WHEN prompt IS NULL AND completion IS NULL THEN NULL
                    ELSE coalesce(prompt, 0) + coalesce(completion, 0) END),
    raw, ?
FROM (SELECT
    json_extract(value, '$.event_id') AS event_id,
    json_extract(value, '$.session_id') AS session_id,
    json_extract(value, '$.parent_id') AS parent_id,
    coalesce(json_extract(value, '$.event_type'), 'tool') AS event_type,
    coalesce(json_extract(value, '$.event_name'), 'unknown') AS event_name,
    json_extract(value, '$.start_time') AS start_time,
    json_extract(value, '$.end_time') AS end_time,
    json_extract(value, '$.duration') AS duration,
    coalesce(json_extract(value, '$.error'), json_extract(value, '$.metadata.error')) AS error,
    json_extract(value, '$.config.model') AS model,
    coalesce(json_extract(value, '$.metadata.prompt_tokens'), json_extract(value, '$.metadata.input_tokens'))
        AS prompt,
    coalesce(json_extract(value, '$.metadata.completion_tokens'), json_extract(value, '$.metadata.output_tokens'))
        AS completion,
    json_extract(value, '$.metadata.total_tokens') AS total,
    value AS raw
    FROM json_each(?))
"""
# Session properties of HoneyHive's legacy batch route (as ``tracer send`` sends them).
_SESSION_FIELDS: Final = frozenset(
    {"session_name", "source", "session_id", "config", "inputs", "outputs", "error", "user_properties"}
    | {"metrics", "feedback", "metadata"}
)


P = ParamSpec("P")
R = TypeVar("R")


def _as_spool_error(method: Callable[P, R]) -> Callable[P, R]:
    """The pipeline expects ``SpoolError`` (or ``OSError``) from a spool that cannot be used."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (StoreError, sqlite3.Error) as exc:
            raise SpoolError(str(exc)) from exc

    return wrapper


def default_spool_path(path: str | os.PathLike[str] | None = None) -> str:
    """The spool file: *path*, else ``./.tracer/spool.db`` (absolute)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path) if path else DEFAULT_SPOOL))


class SQLiteSpool:
    """One spool file for one exporter. Thread-safe; opened on first use (on the worker thread)."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, *, timeout: float = 30.0) -> None:
        self.path = default_spool_path(path)
        self.max_bytes = max_bytes
        self._timeout = timeout
        self._lock = threading.Lock()
        self._store: TraceStore | None = None
        # Whether SQLite reads the events' columns out of their JSON (its JSON functions, built in
        # since SQLite 3.38 and in most builds before): else the rows are made in Python.
        self._json_in_sql = True
        self._lease_fd: int | None = None
        self._pid = os.getpid()
        self._events = 0  # events waiting, as last counted (plus this process's writes since)
        self._bytes = 0
        self._counted_at = 0.0
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._after_fork_in_child)
            os.register_at_fork(after_in_child=lambda: _call_weak(reinit))

    def _after_fork_in_child(self) -> None:
        # The parent's worker may have held the lock at fork time; its lease is the parent's.
        self._lock = threading.Lock()
        self._lease_fd = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"SQLiteSpool({self.path!r})"

    # -- opening ----------------------------------------------------------------------------------

    def may_hold_events(self) -> bool:
        """True if the file exists: an earlier process may have left events to send."""
        return os.path.exists(self.path)

    def _open(self) -> TraceStore:
        if os.getpid() != self._pid:  # a forked child: the lease fd and counters are the parent's
            self._pid = os.getpid()
            self._lease_fd = None
        store = self._store
        if store is None:
            directory = os.path.dirname(self.path)
            os.makedirs(directory, exist_ok=True)
            if not os.path.exists(self.path):
                # Created here, not by SQLite, to set its mode: spooled events hold the app's data.
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                    _allow_shrinking(self.path)
            store = self._store = TraceStore(self.path, timeout=self._timeout)
            self._json_in_sql = has_json_functions(store)
            self._recount(store)
        return store

    def _recount(self, store: TraceStore) -> None:
        with store._transaction(write=False) as db:
            cursor = _cursor(db)
            self._events = int(db.execute("SELECT count(*) FROM events WHERE seq > ?", (cursor,)).fetchone()[0])
            self._bytes = _used_bytes(db)
        self._counted_at = time.monotonic()

    # -- writing ----------------------------------------------------------------------------------

    @_as_spool_error
    def write(
        self, batch: Batch, indexes: tuple[int, ...] | None = None, update_indexes: tuple[int, ...] = ()
    ) -> SpoolWrite:
        with self._lock:
            store = self._open()
            encoded = batch.encoded if indexes is None else [batch.encoded[i] for i in indexes]
            updates = [batch.updates[i] for i in update_indexes]
            if not encoded and not updates:
                return SpoolWrite(0)
            session_ids = batch.session_ids if indexes is None else [batch.session_ids[i] for i in indexes]
            sessions = {sid: batch.sessions.get(sid) or {"session_id": sid} for sid in set(session_ids)}
            for update in updates:  # a session update: its session's properties (for /session/start)
                target = str(update.get("event_id"))
                if target in batch.sessions:
                    sessions[target] = batch.sessions[target]
            now = time.time_ns() // 1_000_000
            with store._transaction(write=True) as db:
                store._upsert_sessions(db, sessions, {}, now)
                before = db.total_changes
                last_seq = int(db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
                # One statement per chunk of the batch, SQLite reading the columns out of the JSON
                # itself. Inserting row by row releases and re-takes the GIL per row, and while the
                # app's thread is busy each re-take waits for a switch interval: 952 µs per event
                # against 52 µs this way, measured next to a busy thread. Chunks of about 1 MiB keep
                # the JSON text built for a statement small next to the queue's byte bound.
                if self._json_in_sql:
                    for chunk in _json_chunks(encoded):
                        db.execute(_INSERT_FROM_JSON, (now, chunk))
                else:  # an SQLite without JSON functions: the same rows, made in Python
                    events = [(orjson.loads(raw), raw.decode("utf-8")) for raw in encoded]
                    db.executemany(INSERT_EVENT, prepare_events(events, now).rows)
                written = db.total_changes - before
                if written:
                    db.execute(_SESSION_TIMES, {"after": last_seq})
                if updates:
                    # Kept as they came (not merged into spooled events or sessions, which may
                    # already be replayed): sent as such once every event spooled before them has been.
                    db.executemany(
                        "INSERT INTO updates (event_id, body, applied, stored_at) VALUES (?, ?, 0, ?)",
                        [(str(update["event_id"]), orjson.dumps(update).decode(), now) for update in updates],
                    )
                used = _used_bytes(db)
                dropped = 0
                if used > self.max_bytes:
                    dropped = _drop_oldest(db, used, self.max_bytes)
                    used = _used_bytes(db)
                self._bytes = used
            self._events = max(self._events + written - dropped, 0)
            return SpoolWrite(written, dropped)

    # -- replaying --------------------------------------------------------------------------------

    @_as_spool_error
    def lease(self) -> bool:
        with self._lock:
            self._open()
            if self._lease_fd is not None:
                return True
            fd = os.open(self.path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # another process is replaying this spool
                    os.close(fd)
                    return False
            self._lease_fd = fd
            return True

    def unlease(self) -> None:
        with self._lock:
            fd, self._lease_fd = self._lease_fd, None
            if fd is not None and self._pid == os.getpid():
                os.close(fd)  # closing the only descriptor of the lock file releases the flock

    @_as_spool_error
    def claim(self, max_events: int, max_bytes: int) -> SpoolClaim | None:
        with self._lock:
            store = self._open()
            with store._transaction(write=False) as db:
                rows = db.execute(
                    "SELECT seq, session_id, coalesce(current, raw) FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (_cursor(db), max_events),
                ).fetchall()
                if not rows:
                    self._events = 0
                    self._bytes = _used_bytes(db)
                    return self._claim_updates(db, max_events)
                taken: list[tuple[int, str, str]] = []
                size = 0
                for seq, session_id, text in rows:
                    if taken and size + len(text) > max_bytes:
                        break
                    taken.append((seq, session_id, text))
                    size += len(text)
                session_ids = list(dict.fromkeys(row[1] for row in taken))
                sessions: dict[str, dict[str, Any]] = {}
                for chunk in _chunks(session_ids):
                    for sid, props in db.execute(
                        f"SELECT session_id, properties FROM sessions WHERE session_id IN ({_marks(len(chunk))})",
                        tuple(chunk),
                    ):
                        sessions[sid] = _session_properties(orjson.loads(props), sid)
            for sid in session_ids:
                sessions.setdefault(sid, {"session_id": sid})
            batch = Batch(
                [text.encode("utf-8") for _, _, text in taken],
                [sid for _, sid, _ in taken],
                sessions,
                [],
            )
            return SpoolClaim(batch, [seq for seq, _, _ in taken])

    def _claim_updates(self, db: Any, limit: int) -> SpoolClaim | None:
        """Late updates waiting (every spooled event is sent by now), oldest first, or None."""
        rows = db.execute(
            "SELECT seq, event_id, body FROM updates WHERE applied = 0 ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        if not rows:
            return None
        targets = list(dict.fromkeys(row[1] for row in rows))
        sessions: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(targets):
            for sid, props in db.execute(
                f"SELECT session_id, properties FROM sessions WHERE session_id IN ({_marks(len(chunk))})", tuple(chunk)
            ):
                sessions[sid] = _session_properties(orjson.loads(props), sid)
        batch = Batch([], [], sessions, [orjson.loads(body) for _, _, body in rows])
        return SpoolClaim(batch, [], [seq for seq, _, _ in rows])

    @_as_spool_error
    def release(
        self, claim: SpoolClaim, keep: frozenset[int] = frozenset(), keep_updates: frozenset[int] = frozenset()
    ) -> None:
        """Mark the claimed events delivered (or refused for good), except those at the indexes *keep*
        (to be offered again): the cursor moves past the first run of them, any later ones are deleted."""
        keys = claim.keys
        done_prefix = 0
        while done_prefix < len(keys) and done_prefix not in keep:
            done_prefix += 1
        stragglers = [key for index, key in enumerate(keys) if index >= done_prefix and index not in keep]
        with self._lock:
            store = self._open()
            with store._transaction(write=True) as db:
                if done_prefix:
                    db.execute(
                        "INSERT OR REPLACE INTO deliveries (server, kind, key, sent_at) VALUES (?, ?, '', ?)",
                        (_CURSOR_SERVER, _CURSOR_KIND, max(keys[done_prefix - 1], _cursor(db))),
                    )
                for chunk in _chunks(stragglers):
                    db.execute(f"DELETE FROM events WHERE seq IN ({_marks(len(chunk))})", tuple(chunk))
                sent_updates = [key for index, key in enumerate(claim.update_keys) if index not in keep_updates]
                for chunk in _chunks(sent_updates):
                    db.execute(f"DELETE FROM updates WHERE seq IN ({_marks(len(chunk))})", tuple(chunk))
            self._events = max(self._events - done_prefix - len(stragglers), 0)
            if time.monotonic() - self._counted_at > _RECOUNT_INTERVAL:
                self._recount(store)

    @_as_spool_error
    def tidy(self) -> bool:
        """Delete (some of) the replayed rows behind the cursor; True if more are left to delete."""
        with self._lock:
            store = self._open()
            with store._transaction(write=True) as db:
                cursor = _cursor(db)
                first = db.execute("SELECT min(seq) FROM events").fetchone()[0]
                if first is None or first > cursor:
                    if first is None and db.execute("SELECT 1 FROM updates WHERE applied = 0").fetchone() is None:
                        # Empty: the sessions' rows and merged updates are not needed any more.
                        db.execute("DELETE FROM sessions")
                        db.execute("DELETE FROM updates")
                    self._bytes = _used_bytes(db)
                    return False
                upto = min(cursor, first + _TIDY_ROWS - 1)
                db.execute("DELETE FROM events WHERE seq <= ?", (upto,))
                self._bytes = _used_bytes(db)
            self._shrink(store)
            return bool(upto < cursor)

    def _shrink(self, store: TraceStore) -> None:
        """Give the freed pages back to the file system (a spool created with ``auto_vacuum``; a
        no-op otherwise): a drained spool should not keep an outage's size on disk. Through
        ``executescript``, which steps the pragma to its end (``execute`` frees one page)."""
        with store._lock:
            # The checkpoint copies the shrunken pages over and empties the write-ahead log (it
            # gives up, harmlessly, while another process reads).
            store._connection().executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")

    def backlog(self) -> tuple[int, int]:
        return self._events, self._bytes

    def close(self) -> None:
        self.unlease()
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()


def has_json_functions(store: TraceStore) -> bool:
    """Whether the store's SQLite has the JSON functions (``json_each``, ``json_extract``)."""
    try:
        store.snapshot(lambda db: db.execute("SELECT value FROM json_each('[1]')").fetchone())
    except StoreError:
        return False
    return True


def _json_chunks(encoded: list[bytes]) -> Iterator[str]:
    """The events as JSON arrays of their texts (strings), each of about ``_STATEMENT_BYTES``."""
    start = size = 0
    for index, raw in enumerate(encoded):
        size += len(raw)
        if size >= _STATEMENT_BYTES or index == len(encoded) - 1:
            yield orjson.dumps([text.decode("utf-8") for text in encoded[start : index + 1]]).decode("utf-8")
            start, size = index + 1, 0


def _call_weak(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()


def _allow_shrinking(path: str) -> None:
    """Make a new, empty spool file give freed pages back (``auto_vacuum`` can only be set before
    the first table is created, so before the store's schema)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("VACUUM")  # writes the header with the setting
    finally:
        db.close()


def _cursor(db: Any) -> int:
    """The seq of the last event replayed (0: none)."""
    row = db.execute(
        "SELECT sent_at FROM deliveries WHERE server = ? AND kind = ? AND key = ''", (_CURSOR_SERVER, _CURSOR_KIND)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _used_bytes(db: Any) -> int:
    """Bytes of the file's pages in use (freed pages are kept for reuse until ``tidy`` shrinks it)."""
    row = db.execute(
        "SELECT (p.page_count - f.freelist_count) * s.page_size "
        "FROM pragma_page_count() AS p, pragma_freelist_count() AS f, pragma_page_size() AS s"
    ).fetchone()
    return int(row[0])


def _drop_oldest(db: Any, used: int, limit: int) -> int:
    """Delete the oldest events until the pages in use fit in *limit*; returns how many."""
    dropped = 0
    target = int(limit * _REFILL_FRACTION)
    db.execute("DELETE FROM events WHERE seq <= ?", (_cursor(db),))  # replayed already: not a loss
    used = _used_bytes(db)
    while used > target:
        count = int(db.execute("SELECT count(*) FROM events").fetchone()[0])
        if count == 0:
            break
        per_event = max(used // count, 1)
        excess = min(max((used - target) // per_event, 1), count)
        before = db.total_changes
        db.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (excess,))
        dropped += db.total_changes - before
        used = _used_bytes(db)
    return dropped


def _session_properties(props: dict[str, Any], session_id: str) -> dict[str, Any]:
    """Stored properties in the legacy ``session_properties`` shape (unknown keys into metadata)."""
    result: dict[str, Any] = {"session_id": session_id}
    extra: dict[str, Any] = {}
    for name, value in props.items():
        if name in _SESSION_FIELDS:
            result[name] = value
        elif name not in ("project", "start_time", "end_time") and value is not None:
            extra[name] = value
    if extra:
        metadata = result.get("metadata")
        result["metadata"] = {**extra, **(metadata if isinstance(metadata, dict) else {})}
    return result


@dataclasses.dataclass
class SpoolReport:
    """What ``drain_spool`` did. ``ok``: nothing is left in the spool."""

    path: str
    server_url: str
    events_sent: int = 0
    events_dropped: int = 0  # refused for good by the server (4xx other than 408/429)
    events_left: int = 0
    updates_sent: int = 0
    busy: bool = False  # another process holds the replay lease
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.busy and self.events_left == 0


def drain_spool(
    path: str | os.PathLike[str],
    api_key: str,
    server_url: str,
    *,
    project: str = "default",
    timeout: float = 30.0,
    gzip: bool = True,
    batch_size: int = 512,
) -> SpoolReport:
    """Send every event of the spool at *path* through a ``HoneyHiveExporter`` (``tracer send
    --spool``), oldest first, deleting each once delivered; stops at the first batch the server
    does not take. Holds the replay lease, so a traced process never sends the same rows meanwhile."""
    from ..exporters.honeyhive import HoneyHiveExporter

    server = server_url.strip().rstrip("/")
    exporter = HoneyHiveExporter(api_key, server, gzip=gzip, export_timeout=timeout, project=project)
    spool = SQLiteSpool(path, max_bytes=2**62)
    report = SpoolReport(spool.path, server)
    try:
        if not spool.lease():
            report.busy = True
            return report
        while True:
            claim = spool.claim(batch_size, 4 * 1024 * 1024)
            if claim is None:
                break
            result = exporter.export(claim.batch)
            retry = frozenset(result.retry_events)
            spool.release(claim, retry, frozenset(result.retry_updates))
            if claim.update_keys:
                report.updates_sent += len(claim.update_keys) - result.updates_failed
                if result.retry_updates:
                    report.error = result.last_error
                    break
                continue
            refused = max(result.failed - len(retry), 0)
            report.events_dropped += refused
            report.events_sent += len(claim.keys) - len(retry) - refused
            if retry:
                report.error = result.last_error
                break
        report.events_left = spool.backlog()[0]
        while spool.tidy():
            pass
    finally:
        spool.close()
        exporter.shutdown()
    return report
