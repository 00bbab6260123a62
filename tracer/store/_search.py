"""Full-text search over every event's inputs, outputs, error, metadata (and config, feedback, user
properties, name), for the viewer: SQLite FTS5 when this Python's SQLite has it, else a scan.

The viewer opens the store read-only, so the FTS5 index lives in a file of its own (``index_path``):
under the user's cache directory (``$XDG_CACHE_HOME/tracer/search/``, else ``~/.cache/…``), named
by a hash of the store's path. Not beside the store: the read side never adds files next to what it
is pointed at (a store in a read-only directory works too), and a cache is where derived,
deletable data belongs. The index remembers the arrival number (``seq``) it has reached and the
update number of the last late update it folded in, and catches up incrementally: on a background
thread from the viewer's start (``warm()``), and before a search when only a little is missing (a
search answers by scan while more is); a store that was replaced (its first event differs, or it
has fewer events) is re-indexed whole. ``_search_cache`` prunes the indexes nobody uses.

Results come back as segments ``{"text", "match"}`` so that the page highlights with
``textContent`` and the API never returns markup.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any, Final, NamedTuple

import orjson

from .._errors import report_internal_error
from .._threads import start_thread
from ._search_cache import index_path, prune, touch
from ._sql import StoreError
from ._store import TraceStore

__all__ = ["ENGINES", "SearchIndex", "fts5_available", "index_path", "query_terms", "snippet"]

logger = logging.getLogger("tracer")

ENGINES: Final = ("fts5", "scan")
# The fields searched, in the order a result names the first that matched.
FIELDS: Final = ("inputs", "outputs", "error", "metadata", "config", "feedback", "user_properties", "event_name")
# Characters of context kept around the first match in a snippet.
_CONTEXT: Final = 60
# Events read from the store per catch-up transaction (no lock held on the store between them, nor
# on the index: a search or close() waits for one page at most).
_PAGE: Final = 2000
# A search that finds the index this many pages or fewer behind the store catches it up first and
# answers from it; further behind, it answers by scan and the catch-up runs on the builder thread.
# A page is 17-62 ms (200,000 events indexed in 3.5-12.5 s, bench/viewer_api.py), so two pages
# keep the catch-up well inside the viewer's 300 ms per request (issue 15), and 4,000 events is
# what an app writing 1,000 events/s adds between two searches 4 s apart.
_INLINE_PAGES: Final = 2
# How long close() waits for the builder thread to finish its page and stop.
_BUILDER_JOIN_SECONDS: Final = 5.0
_MAX_TERMS: Final = 8
# Words as FTS5's unicode61 tokenizer cuts them (letters and digits; "_" separates, so "__pwned"
# holds the word "pwned"), compared with diacritics removed as it does: the results it finds and
# the words highlighted in them must be the same words.
_WORD: Final = re.compile(r"[^\W_]+")


def _fold(word: str) -> str:
    """*word* lower case without diacritics ("Café" -> "cafe"), as unicode61 compares words."""
    return "".join(char for char in unicodedata.normalize("NFKD", word) if not unicodedata.combining(char)).lower()


def fts5_available() -> bool:
    """Whether this Python's SQLite was compiled with FTS5 (a check, not a probe of the store)."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()
    return True


def query_terms(text: str) -> list[str]:
    """The words of a search, lower case (at most ``_MAX_TERMS``): each must occur in a result."""
    return [_fold(word) for word in _WORD.findall(text)][:_MAX_TERMS]


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def field_texts(event: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, text)`` of each searched field the event has: its string leaves, one per line."""
    result = []
    for name in FIELDS:
        text = "\n".join(_leaves(event.get(name)))
        if text:
            result.append((name, text))
    return result


def _matches(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Spans of *text* where a word starts with one of *terms* (case-insensitive)."""
    spans = []
    for word in _WORD.finditer(text):
        folded = _fold(word.group())
        for term in terms:
            if folded.startswith(term):
                spans.append((word.start(), min(word.end(), word.start() + len(term))))
                break
    return spans


def snippet(text: str, terms: Sequence[str]) -> list[dict[str, Any]] | None:
    """Segments of *text* around its first match, matches flagged; None when no term occurs."""
    spans = _matches(text, terms)
    if not spans:
        return None
    first = spans[0][0]
    start = max(0, first - _CONTEXT)
    end = min(len(text), spans[0][1] + _CONTEXT * 2)
    segments: list[dict[str, Any]] = []
    cursor = start
    if start > 0:
        segments.append({"text": "…", "match": False})
    for begin, stop in spans:
        if begin < start or stop > end:
            continue
        if begin > cursor:
            segments.append({"text": text[cursor:begin], "match": False})
        segments.append({"text": text[begin:stop], "match": True})
        cursor = stop
    if cursor < end:
        segments.append({"text": text[cursor:end], "match": False})
    if end < len(text):
        segments.append({"text": "…", "match": False})
    return segments


@dataclasses.dataclass(frozen=True, slots=True)
class SearchPage:
    engine: str
    results: list[dict[str, Any]]
    total: int | None
    # True when the FTS5 index is still being built or caught up: the page was found by scan.
    indexing: bool = False


def _result(event: dict[str, Any], terms: Sequence[str], session_names: dict[str, str]) -> dict[str, Any] | None:
    """The result of an event where every term starts a word of a searched field (None if one
    does not): shown in the field that has the most of the terms (the first such in ``FIELDS``)."""
    best: tuple[int, str, str] | None = None
    found: set[str] = set()
    for name, text in field_texts(event):
        words = {_fold(word) for word in _WORD.findall(text)}
        here = {term for term in terms if any(word.startswith(term) for word in words)}
        found |= here
        if here and (best is None or len(here) > best[0]):
            best = (len(here), name, text)
    if best is None or len(found) < len(set(terms)):
        return None
    _, name, text = best
    segments = snippet(text, terms)
    if segments is None:
        return None
    sid = str(event.get("session_id"))
    return {
        "session_id": sid,
        "session_name": session_names.get(sid),
        "event_id": event.get("event_id"),
        "event_name": event.get("event_name"),
        "event_type": event.get("event_type"),
        "field": name,
        "snippet": segments,
    }


def _session_names(db: sqlite3.Connection, ids: set[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for sid in ids:
        row = db.execute("SELECT session_name FROM sessions WHERE session_id = ?", (sid,)).fetchone()
        if row is not None and row[0]:
            names[sid] = row[0]
    return names


def _events_after(db: sqlite3.Connection, after: int) -> list[tuple[int, str]]:
    return db.execute(
        "SELECT seq, coalesce(current, raw) FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, _PAGE)
    ).fetchall()


class _Progress(NamedTuple):
    """How far an index got, or where a store is: the store's first event id (its identity; None
    for an index that has indexed nothing), its arrival number (``seq``) and its late updates'."""

    first_event: str | None
    seq: int
    update_seq: int


def _replaced(store: _Progress, index: _Progress | None) -> bool:
    """Whether another store is at the path the index was built from (its first event differs, or
    it has fewer events): the index must be rebuilt from the start."""
    return index is not None and (index.first_event not in (None, store.first_event) or store.seq < index.seq)


class SearchIndex:
    """Search over one store: FTS5 in a side file (``engine == "fts5"``) or a scan of the events'
    JSON (``"scan"``). Thread-safe; ``warm()`` builds the index in the background; ``close()`` it.

    The index is written a page (``_PAGE`` events) per transaction, ``_lock`` held for one page at
    a time: the builder thread, a search's catch-up and ``close()`` take turns between pages, and
    the index's ``state`` row says how far it got, so whoever holds the lock next goes on from
    there. A search never waits for more than a page: when the index is further behind than
    ``_INLINE_PAGES``, it answers by scan (``SearchPage.indexing``) while the builder catches up."""

    def __init__(self, store: TraceStore, engine: str | None = None, path: str | None = None) -> None:
        self.store = store
        self.engine = engine or ("fts5" if fts5_available() else "scan")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown search engine {self.engine!r}; known: {', '.join(ENGINES)}")
        self.path = path or index_path(store.path)
        self._lock = threading.Lock()  # the index's connection and its writes: held for one page
        self._db: sqlite3.Connection | None = None
        # How far the index got, as last read or committed under _lock (None: not opened yet); read
        # without the lock to decide whether a search can use the index.
        self._progress: _Progress | None = None
        self._stop = threading.Event()
        self._builder_lock = threading.Lock()  # starting the builder thread
        self._builder: threading.Thread | None = None
        # Scans read the store through a connection of their own: a scan that matches little reads
        # every row (200,000 events: 240-318 ms), and on the store's shared connection every other
        # read of the viewer (pages, the live stream) would wait for it.
        self._scan_lock = threading.Lock()
        self._scan_store: TraceStore | None = None

    def warm(self) -> None:
        """Build or catch up the index on a daemon thread, so that it is ready when searched."""
        if self.engine != "fts5" or self._stop.is_set():
            return
        with self._builder_lock:
            if self._builder is not None and self._builder.is_alive():
                return
            builder = threading.Thread(target=self._build, name="tracer-search-index", daemon=True)
            # Refused at interpreter shutdown: searches go on scanning what the index lacks.
            self._builder = builder if start_thread(builder) else None

    @property
    def building(self) -> bool:
        """Whether the builder thread is running."""
        builder = self._builder
        return builder is not None and builder.is_alive()

    def _build(self) -> None:
        try:
            self.catch_up()
        except (sqlite3.Error, OSError) as exc:
            self._unusable(exc)
        except Exception as exc:
            report_internal_error("building the search index", exc)

    def close(self) -> None:
        """Stop the builder (after the page it is writing: the index stays whole) and close."""
        self._stop.set()
        with self._lock:
            self._drop()
        builder = self._builder
        if builder is not None and builder is not threading.current_thread():
            builder.join(_BUILDER_JOIN_SECONDS)
        with self._scan_lock:
            if self._scan_store is not None:
                self._scan_store.close()
                self._scan_store = None

    def _drop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._progress = None

    def _unusable(self, exc: BaseException) -> None:
        # The index file cannot be written (a read-only cache directory, a full disk): the store
        # itself is fine, so search it by scanning from now on.
        logger.warning("tracer: the search index %s is unusable (%s); searching by scan", self.path, exc)
        self.engine = "scan"
        with self._lock:
            self._drop()

    # -- the FTS5 side file -----------------------------------------------------------------------

    def _index(self) -> sqlite3.Connection:
        """The index's connection (opened, and the cache directory pruned, the first time); under _lock."""
        if self._db is None:
            if self._stop.is_set():
                raise sqlite3.ProgrammingError("the search index is closed")
            directory = os.path.dirname(self.path)
            os.makedirs(directory, exist_ok=True)
            prune(directory, keep=self.path)
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
                # One row per event (rowid = its seq); the text of every searched field.
                db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS texts USING fts5(body, tokenize = 'unicode61')")
                # Which store this index is of: pruning deletes it sooner once that store is gone.
                db.execute("INSERT OR REPLACE INTO state VALUES ('store', ?)", (os.path.abspath(self.store.path),))
            except BaseException:
                db.close()
                raise
            touch(self.path)
            self._db = db
            self._remember(db)
        return self._db

    def _remember(self, db: sqlite3.Connection) -> None:
        """Keep the index's progress (its ``state``) where a search reads it without the lock; under _lock."""
        first = self._state(db, "first_event")
        self._progress = _Progress(
            None if first is None else str(first),
            int(self._state(db, "seq") or 0),
            int(self._state(db, "update_seq") or 0),
        )

    def _state(self, db: sqlite3.Connection, key: str) -> Any:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _newest(self) -> _Progress:
        """Where the store is: its first event id (its identity), newest arrival number and newest
        late update that was applied (or given up on: ``applied != 0``)."""

        def read(db: sqlite3.Connection) -> _Progress:
            first = db.execute("SELECT event_id FROM events ORDER BY seq LIMIT 1").fetchone()
            newest = int(db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
            # Backwards along the primary key: it stops at the newest row that is not pending.
            update = db.execute("SELECT seq FROM updates WHERE applied != 0 ORDER BY seq DESC LIMIT 1").fetchone()
            return _Progress(first[0] if first else "", newest, int(update[0]) if update else 0)

        return self.store.snapshot(read)

    def _stopped(self) -> bool:
        return self._stop.is_set() or self.engine != "fts5"

    def catch_up(self, pages: int | None = None) -> int:
        """Index what the store gained since the last call (at most *pages* pages of it; None: all),
        then the late updates; returns how many events were (re)indexed. Stops between pages once
        ``close()`` is called."""
        if self._stopped():
            return 0
        with self._lock:
            if self._stopped():
                return 0
            db = self._index()
            self._remember(db)  # another viewer of the same store may have moved it
            # Read under the lock: another catch-up may not move "seq" past this "newest" meanwhile.
            store = self._newest()
            first = store.first_event or ""
            if _replaced(store, self._progress):
                # Another store is at this path now: index it from the start.
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM texts")
                db.execute("DELETE FROM state WHERE key != 'store'")
                db.execute("COMMIT")
                self._remember(db)
        done = 0
        while pages is None or pages > 0:
            with self._lock:
                if self._stopped():
                    return done
                indexed = self._index_page(self._index(), first)
            if not indexed:
                break
            done += indexed
            if pages is not None:
                pages -= 1
        while True:
            with self._lock:
                if self._stopped():
                    return done
                folded = self._fold_update_page(self._index())
            if folded is None:
                break
            done += folded
        return done

    def _index_page(self, db: sqlite3.Connection, first: str) -> int:
        """Index the next page of events after the index's ``seq`` (one transaction); under _lock."""
        reached = int(self._state(db, "seq") or 0)
        rows = self.store.snapshot(functools.partial(_events_after, after=reached))
        if not rows:
            return 0
        self._write_texts(db, rows, {"seq": int(rows[-1][0]), "first_event": first})
        return len(rows)

    def _write_texts(self, db: sqlite3.Connection, rows: Sequence[tuple[int, str]], state: dict[str, Any]) -> None:
        """Index *rows* (``(seq, event JSON)``) and record *state*, in one transaction; under _lock."""
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO texts(rowid, body) VALUES (?, ?)",
                [(seq, "\n".join(t for _, t in field_texts(orjson.loads(text)))) for seq, text in rows],
            )
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", state.items())
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._remember(db)

    def _behind(self) -> int:
        """How many events (at most: arrival numbers) the index lacks. Reads the store, not the
        index, unless the index was never opened: a search does not wait for the builder's page."""
        progress = self._progress
        if progress is None:
            with self._lock:
                self._index()
                progress = self._progress
        store = self._newest()
        if progress is None or _replaced(store, progress):
            return store.seq
        return max(0, store.seq - progress.seq) + max(0, store.update_seq - progress.update_seq)

    def _fold_update_page(self, db: sqlite3.Connection) -> int | None:
        """Re-index the events that the next page of late updates (``PUT /events``) changed, one
        transaction; how many (None: no update left); under _lock. Updates still pending
        (``applied = 0``) are passed when a later one was applied, as before."""
        after = int(self._state(db, "update_seq") or 0)
        rows = self.store.snapshot(
            lambda s: s.execute(
                "SELECT u.seq, u.applied, e.seq, coalesce(e.current, e.raw) FROM updates AS u "
                "LEFT JOIN events AS e ON e.event_id = u.event_id "
                "WHERE u.seq > ? AND u.applied != 0 ORDER BY u.seq LIMIT ?",
                (after, _PAGE),
            ).fetchall()
        )
        if not rows:
            return None
        changed = [(seq, text) for _, applied, seq, text in rows if applied == 1 and seq is not None]
        self._write_texts(db, changed, {"update_seq": int(rows[-1][0])})
        return len(changed)

    # -- searching --------------------------------------------------------------------------------

    def search(self, text: str, limit: int, offset: int) -> SearchPage:
        """Events where every word of *text* occurs (as a word's start), newest first. From the
        FTS5 index when it is (nearly) up to date; by scan, ``indexing`` set, while it is built."""
        terms = query_terms(text)
        if not terms:
            return SearchPage(self.engine, [], 0)
        if self.engine == "fts5" and not self._stop.is_set():
            try:
                if self._behind() > _INLINE_PAGES * _PAGE:
                    self.warm()
                    return dataclasses.replace(self._search_scan(terms, limit, offset), indexing=True)
                self.catch_up(pages=_INLINE_PAGES + 1)
                return self._search_fts(terms, limit, offset)
            except (sqlite3.Error, OSError) as exc:
                self._unusable(exc)
        return self._search_scan(terms, limit, offset)

    def _search_fts(self, terms: Sequence[str], limit: int, offset: int) -> SearchPage:
        match = " AND ".join('"' + term.replace('"', '""') + '"*' for term in terms)
        with self._lock:
            db = self._index()
            touch(self.path)
            total = int(db.execute("SELECT count(*) FROM texts WHERE texts MATCH ?", (match,)).fetchone()[0])
            seqs = [
                int(row[0])
                for row in db.execute(
                    "SELECT rowid FROM texts WHERE texts MATCH ? ORDER BY rowid DESC LIMIT ? OFFSET ?",
                    (match, limit, offset),
                )
            ]
        return SearchPage("fts5", self._results(seqs, terms), total)

    def _results(self, seqs: Sequence[int], terms: Sequence[str]) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            events = []
            for seq in seqs:
                row = db.execute("SELECT coalesce(current, raw) FROM events WHERE seq = ?", (seq,)).fetchone()
                if row is not None:
                    events.append(orjson.loads(row[0]))
            names = _session_names(db, {str(event.get("session_id")) for event in events})
            found = []
            for event in events:
                result = _result(event, terms, names)
                if result is not None:
                    found.append(result)
            return found

        return self.store.snapshot(read)

    def _search_scan(self, terms: Sequence[str], limit: int, offset: int) -> SearchPage:
        """A pass over the events' JSON, newest first: SQL keeps the rows that may hold every term,
        Python keeps those where each starts a word of a searched field, words folded as FTS5
        folds them (``_fold``). SQL's ``lower`` folds ASCII only, so its ``instr`` test decides
        only for text that is all ASCII: a row with any other character (``Café``, ``ÉCOLE``,
        fullwidth letters) or a ``\\u`` escape (JSON sent to the collector as it was written) goes
        to Python whatever it holds. ``total`` is None: counting would read every row."""

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            text = "coalesce(current, raw)"
            maybe_folded = f"({text} GLOB '*[^ -~]*' OR instr({text}, '\\u') > 0)"
            every_term = " AND ".join(f"instr(lower({text}), ?) > 0" for _ in terms)
            where = f"({every_term}) OR {maybe_folded}"
            found: list[dict[str, Any]] = []
            skipped = 0
            cursor = db.execute(
                f"SELECT coalesce(current, raw) FROM events WHERE {where} ORDER BY seq DESC", tuple(terms)
            )
            names: dict[str, str] = {}
            for (text,) in cursor:
                event = orjson.loads(text)
                sid = str(event.get("session_id"))
                if sid not in names:
                    names.update(_session_names(db, {sid}))
                result = _result(event, terms, names)
                if result is None:
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                found.append(result)
                if len(found) >= limit:
                    break
            return found

        with self._scan_lock:
            scan_store = self._scan_store
            if scan_store is None and not self._stop.is_set():
                try:
                    scan_store = self._scan_store = TraceStore(self.store.path, read_only=True)
                except StoreError:  # the file is gone (the store's own connection still reads it)
                    scan_store = None
        return SearchPage("scan", (scan_store or self.store).snapshot(read), None)
