"""The viewer builds its search index in the background (a first search does not wait for it) and
prunes the indexes of its cache directory that nobody uses any more."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tracer import Tracer
from tracer.server._ui import create_viewer_app
from tracer.server._viewer import Viewer
from tracer.server._viewer_auth import ViewerAuth
from tracer.store import TraceStore, _search, _search_cache
from tracer.store._search import SearchIndex, fts5_available
from tracer.store._search_cache import STORE_GONE_UNUSED_FOR, UNUSED_FOR, index_path, prune, recorded_store

from ..processes import run_at_exit

pytestmark = pytest.mark.skipif(not fts5_available(), reason="this Python's SQLite has no FTS5")

DAY = 86400.0
# Events in the store, and events per page of the index's build in these tests: 40 pages, far
# more than a search catches up inline (_INLINE_PAGES), so a search finds the index "behind".
EVENTS = 200
PAGE = 5


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of EVENTS events, one in ten of them about a refund."""
    path = tmp_path_factory.mktemp("warm") / "traces.db"
    traced = Tracer(store=str(path), session_name="warm")
    for number in range(EVENTS):
        words = "the customer asked for a refund" if number % 10 == 0 else "the customer asked about shipping"
        with traced.span(f"step-{number}", inputs={"question": f"{words} (#{number})"}):
            pass
    traced.shutdown(10)
    return path


@pytest.fixture
def store(store_path: Path) -> Iterator[TraceStore]:
    with TraceStore(str(store_path), read_only=True) as opened:
        yield opened


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_search, "_PAGE", PAGE)


def _index_state(path: str) -> tuple[int, int, int]:
    """(the index's recorded seq, its rows, the highest rowid) read from the file by a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        row = db.execute("SELECT value FROM state WHERE key = 'seq'").fetchone()
        rows, top = db.execute("SELECT count(*), coalesce(max(rowid), 0) FROM texts").fetchone()
        return (int(row[0]) if row else 0), int(rows), int(top)


def test_a_search_during_the_build_answers_by_scan_without_waiting(
    store: TraceStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_pages: None
) -> None:
    """The viewer starts the build; the builder is held inside its second page (index lock held)
    until the test lets it go. A search meanwhile is answered by scan, marked ``indexing``; once
    the build is done, the same search comes from the index, with the same results."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    inside_page = threading.Event()
    go_on = threading.Event()
    pages = 0
    index_page = SearchIndex._index_page

    def held(self: SearchIndex, db: sqlite3.Connection, first: str) -> int:
        nonlocal pages
        indexed = index_page(self, db, first)
        pages += 1
        if pages == 2:
            inside_page.set()
            go_on.wait(30)
        return indexed

    monkeypatch.setattr(SearchIndex, "_index_page", held)
    viewer = Viewer(store, ViewerAuth(None))
    try:
        assert inside_page.wait(10), "the viewer did not start building its index"

        async def search() -> dict[str, Any]:
            transport = httpx.ASGITransport(app=create_viewer_app(viewer))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                response = await client.get("/api/search", params={"q": "refund", "limit": 50})
                assert response.status_code == 200, response.text
                found: dict[str, Any] = response.json()
                return found

        answers: list[dict[str, Any]] = []
        asker = threading.Thread(target=lambda: answers.append(asyncio.run(search())))
        asker.start()
        asker.join(10)
        assert not asker.is_alive(), "the search waited for the index's build"
        during = answers[0]
        assert during["engine"] == "scan" and during["indexing"] is True and during["total"] is None
        assert len(during["results"]) == EVENTS // 10
        assert viewer.search_index.building

        go_on.set()
        deadline = time.monotonic() + 20
        while viewer.search_index.building and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not viewer.search_index.building
        after = asyncio.run(search())
        assert after["engine"] == "fts5" and after["indexing"] is False and after["total"] == EVENTS // 10
        assert after["results"] == during["results"]
    finally:
        go_on.set()
        viewer.close()


def test_a_search_catches_up_a_short_way_itself(store: TraceStore, tmp_path: Path, small_pages: None) -> None:
    """An index at most _INLINE_PAGES behind is caught up by the search, which answers from it."""
    index = SearchIndex(store, "fts5", str(tmp_path / "index.db"))
    try:
        index.catch_up(pages=EVENTS // PAGE - _search._INLINE_PAGES)
        assert not index.building
        page = index.search("refund", 50, 0)
        assert page.engine == "fts5" and not page.indexing and page.total == EVENTS // 10
        assert _index_state(index.path)[0] == EVENTS
    finally:
        index.close()


def test_close_during_the_build_returns_at_once_and_leaves_the_index_whole(
    store: TraceStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_pages: None
) -> None:
    """Each page of the build takes 20 ms here (40 pages: 0.8 s); close() stops it after the
    page being written, and the index is consistent: a later catch-up completes it."""
    index_page = SearchIndex._index_page

    def slow(self: SearchIndex, db: sqlite3.Connection, first: str) -> int:
        time.sleep(0.02)
        return index_page(self, db, first)

    monkeypatch.setattr(SearchIndex, "_index_page", slow)
    path = str(tmp_path / "index.db")
    index = SearchIndex(store, "fts5", path)
    index.warm()
    deadline = time.monotonic() + 10
    while (index._progress.seq if index._progress else 0) < 3 * PAGE and time.monotonic() < deadline:
        time.sleep(0.005)
    began = time.monotonic()
    index.close()
    # One page and a join, not the rest of the build; the bound is loose for a loaded CI machine
    # (what shows the build stopped is the index's state below).
    assert time.monotonic() - began < 5.0
    assert not index.building
    reached, rows, top = _index_state(path)
    assert 3 * PAGE <= reached < EVENTS, "the build should have stopped part way"
    assert rows == reached == top

    monkeypatch.setattr(SearchIndex, "_index_page", index_page)
    again = SearchIndex(store, "fts5", path)
    try:
        assert again.catch_up() == EVENTS - reached
        assert _index_state(path)[:2] == (EVENTS, EVENTS)
    finally:
        again.close()


def _wait_built(index: SearchIndex) -> None:
    deadline = time.monotonic() + 20
    while index.building and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not index.building


def test_late_updates_are_folded_in_pages_and_count_as_behind(
    store_path: Path, tmp_path: Path, small_pages: None
) -> None:
    """``PUT /events`` updates written after the build: a few are folded in by the search itself;
    more than _INLINE_PAGES pages of them are the builder's, the search answering by scan."""
    live = tmp_path / "live.db"
    live.write_bytes(store_path.read_bytes())
    with TraceStore(str(live)) as writer, TraceStore(str(live), read_only=True) as reader:
        ids = writer.snapshot(lambda db: [row[0] for row in db.execute("SELECT event_id FROM events ORDER BY seq")])
        index = SearchIndex(reader, "fts5", str(tmp_path / "index.db"))
        try:
            index.catch_up()
            writer.write(updates=[{"event_id": ids[n], "outputs": {"answer": "a walrus"}} for n in range(8)])
            page = index.search("walrus", 50, 0)
            assert page.engine == "fts5" and not page.indexing and page.total == 8
            writer.write(updates=[{"event_id": ids[n], "outputs": {"answer": "a walrus"}} for n in range(8, 38)])
            page = index.search("walrus", 50, 0)
            assert page.engine == "scan" and page.indexing and len(page.results) == 38
            _wait_built(index)
            page = index.search("walrus", 50, 0)
            assert page.engine == "fts5" and not page.indexing and page.total == 38
        finally:
            index.close()


def test_a_replaced_store_is_reindexed_in_the_background(store_path: Path, tmp_path: Path, small_pages: None) -> None:
    """Another store at the same path (the index's first event differs): a search answers by
    scan from the new store while the index is rebuilt, then from the index, without the old
    store's events."""
    live = tmp_path / "live.db"
    live.write_bytes(store_path.read_bytes())
    index_file = str(tmp_path / "index.db")
    with TraceStore(str(live), read_only=True) as reader:
        index = SearchIndex(reader, "fts5", index_file)
        index.catch_up()
        index.close()
    live.unlink()
    other = Tracer(store=str(live), session_name="other")
    for number in range(EVENTS + 5):
        with other.span(f"other-{number}", inputs={"question": f"a zebra crossing (#{number})"}):
            pass
    other.shutdown(10)
    with TraceStore(str(live), read_only=True) as reader:
        index = SearchIndex(reader, "fts5", index_file)
        try:
            page = index.search("zebra", 50, 0)
            assert page.engine == "scan" and page.indexing and len(page.results) == 50
            _wait_built(index)
            page = index.search("zebra", 50, 0)
            assert page.engine == "fts5" and page.total == EVENTS + 5
            assert index.search("refund", 50, 0).total == 0
        finally:
            index.close()


def test_tracer_ui_builds_the_index_at_start(store_path: Path, start_ui: Any, tmp_path: Path) -> None:
    """No search is made: the index in the cache directory reaches the store's newest event."""
    ui = start_ui(store_path)
    cache = tmp_path / "cache" / "tracer" / "search"
    deadline = time.monotonic() + 20
    reached = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error, FileNotFoundError, AssertionError):
            (path,) = cache.glob("*.db")
            reached = _index_state(str(path))[0]
            if reached == EVENTS:
                break
        time.sleep(0.05)
    assert reached == EVENTS
    with httpx.Client(base_url=ui.url, timeout=20) as client:
        found = client.get("/api/search", params={"q": "refund"}).json()
    assert found["engine"] == "fts5" and found["indexing"] is False and found["total"] == EVENTS // 10


# -- pruning the cache ------------------------------------------------------------------------------


def _fake_index(directory: Path, name: str, store: Path | None, age_days: float) -> Path:
    """An index file recording *store* (None: an older index without a ``state`` table), last
    used *age_days* ago."""
    path = directory / name
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        if store is not None:
            db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
            db.execute("INSERT INTO state VALUES ('store', ?)", (str(store),))
        else:
            db.execute("CREATE TABLE texts (body)")
    moment = time.time() - age_days * DAY
    os.utime(path, (moment, moment))
    return path


def test_pruning_deletes_the_unused_and_keeps_the_recent(tmp_path: Path) -> None:
    cache = tmp_path / "search"
    cache.mkdir()
    alive = tmp_path / "alive.db"
    alive.write_bytes(b"")
    gone = tmp_path / "gone.db"
    assert UNUSED_FOR == 30 * DAY and STORE_GONE_UNUSED_FOR == DAY
    names = iter(f"{number:024x}.db" for number in range(1, 100))
    stale = _fake_index(cache, next(names), gone, 31)
    stale_wal = Path(str(stale) + "-wal")
    stale_wal.write_bytes(b"")
    os.utime(stale_wal, (time.time() - 31 * DAY,) * 2)
    fresh_store_gone = _fake_index(cache, next(names), gone, 0.1)
    recent_store_alive = _fake_index(cache, next(names), alive, 5)
    old_store_alive = _fake_index(cache, next(names), alive, 31)
    idle_store_gone = _fake_index(cache, next(names), gone, 2)
    old_format_recent = _fake_index(cache, next(names), None, 20)
    old_format_old = _fake_index(cache, next(names), None, 31)
    recent_wal = _fake_index(cache, next(names), gone, 31)
    Path(str(recent_wal) + "-wal").write_bytes(b"")  # written just now: in use
    mine = _fake_index(cache, next(names), gone, 40)
    other = cache / "notes.txt"
    other.write_text("not an index")
    os.utime(other, (time.time() - 99 * DAY,) * 2)

    deleted = prune(str(cache), keep=str(mine))

    assert sorted(deleted) == sorted(str(p) for p in (stale, old_store_alive, idle_store_gone, old_format_old))
    assert not stale.exists() and not stale_wal.exists()
    for kept in (fresh_store_gone, recent_store_alive, old_format_recent, recent_wal, mine, other):
        assert kept.exists(), kept.name


def test_pruning_errors_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="tracer")
    assert prune(str(tmp_path / "missing"), keep=str(tmp_path / "x.db")) == []
    assert len([r for r in caplog.records if "pruning the search index cache" in r.getMessage()]) == 1


def test_opening_an_index_prunes_its_directory_records_its_store_and_touches_it(
    store_path: Path, store: TraceStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = Path(index_path(str(store_path)))
    path.parent.mkdir(parents=True)
    stale = _fake_index(path.parent, "f" * 24 + ".db", tmp_path / "gone.db", 31)
    index = SearchIndex(store, "fts5")
    try:
        assert index.search("refund", 5, 0).engine == "fts5"
        assert not stale.exists()
        assert recorded_store(str(path)) == os.path.abspath(store_path)
        old = time.time() - 10 * DAY
        os.utime(path, (old, old))
        with contextlib.suppress(FileNotFoundError):
            os.utime(str(path) + "-wal", (old, old))
        index.search("refund", 5, 0)
        # The file itself: the search's writes go to the WAL, which would not show a touch.
        assert os.stat(path).st_mtime > time.time() - DAY
        assert _search_cache.last_used(str(path)) > time.time() - DAY
    finally:
        index.close()


def test_at_interpreter_shutdown_a_refused_builder_leaves_searches_to_the_scan(
    store_path: Path, tmp_path: Path
) -> None:
    """In an atexit handler (where this machine's Python 3.12 refuses new threads, 3.11 and 3.13 do
    not) ``warm()`` neither raises nor leaves a builder that never ran, and a search answers in full."""
    plain, (builder, total) = run_at_exit(
        f"""
        from tracer.store import TraceStore
        from tracer.store._search import SearchIndex

        with TraceStore({str(store_path)!r}, read_only=True) as store:
            index = SearchIndex(store, "fts5", {str(tmp_path / "index.db")!r})
            index.warm()
            builder = "none" if index._builder is None else "started"
            page = index.search("refund", 50, 0)
            index.close()
        return [builder, page.total]
        """
    )
    assert builder == ("none" if plain == "refused" else "started")
    assert int(total) == EVENTS // 10
