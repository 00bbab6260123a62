"""The search's words are FTS5's words: what the index finds is what the results show highlighted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer import Tracer
from tracer.store import TraceStore
from tracer.store._search import SearchIndex, fts5_available


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TraceStore]:
    path = tmp_path / "traces.db"
    traced = Tracer(store=str(path), session_name="words")
    with traced.span("render", inputs={"html": "<img src=x onerror=window.__pwned=1>"}):
        pass
    with traced.span("order", inputs={"note": "Un Café crème, s'il vous plaît"}):
        pass
    traced.shutdown(10)
    with TraceStore(str(path), read_only=True) as opened:
        yield opened


@pytest.fixture(params=["fts5", "scan"])
def index(request: pytest.FixtureRequest, store: TraceStore, tmp_path: Path) -> Iterator[SearchIndex]:
    """Each engine over the store (the scan runs also where SQLite has no FTS5)."""
    if request.param == "fts5" and not fts5_available():
        pytest.skip("this Python's SQLite has no FTS5")
    opened = SearchIndex(store, request.param, str(tmp_path / "index.db"))
    try:
        yield opened
    finally:
        opened.close()


def test_a_word_after_underscores_is_found_and_highlighted(index: SearchIndex) -> None:
    engine = index.engine
    page = index.search("pwned", 10, 0)
    assert page.engine == engine
    assert [result["event_name"] for result in page.results] == ["render"]
    assert page.total in (1, None)
    marked = [segment["text"] for segment in page.results[0]["snippet"] if segment["match"]]
    assert marked == ["pwned"]


def test_accents_are_ignored_as_fts5_ignores_them(index: SearchIndex) -> None:
    # The scan (no FTS5, or while the index is built) finds what the index finds.
    for query in ("cafe creme", "CAFÉ", "PLAIT"):
        page = index.search(query, 10, 0)
        assert [result["event_name"] for result in page.results] == ["order"], query
        assert page.total in (1, None)
        marked = [segment["text"] for segment in page.results[0]["snippet"] if segment["match"]]
        assert marked[0] == {"PLAIT": "plaît"}.get(query, "Café")


def test_a_scan_reads_through_a_connection_of_its_own(store: TraceStore, tmp_path: Path) -> None:
    # A scan reads every row that may match (a quarter of a second on 200,000 events): on the
    # store's shared connection the viewer's other reads would wait for it. Here the store's
    # connection is busy (its lock held, as by a long page read) while a scan runs.
    index = SearchIndex(store, "scan", str(tmp_path / "index.db"))
    done: list[list[str]] = []
    try:
        with store._lock:
            thread = threading.Thread(
                target=lambda: done.append([r["event_name"] for r in index.search("cafe", 10, 0).results]),
                daemon=True,
            )
            thread.start()
            thread.join(10)
            assert done == [["order"]], "the scan waited for the store's connection"
    finally:
        thread.join(10)
        index.close()
    assert index.search("cafe", 10, 0).results[0]["event_name"] == "order"  # closed: the store's connection


def test_a_scan_after_the_store_file_is_gone_reads_through_the_stores_connection(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    traced = Tracer(store=str(path), session_name="gone")
    with traced.span("order", inputs={"note": "a café"}):
        pass
    traced.shutdown(10)
    with TraceStore(str(path), read_only=True) as opened:
        index = SearchIndex(opened, "scan", str(tmp_path / "index.db"))
        try:
            for leftover in tmp_path.glob("gone.db*"):
                leftover.unlink()  # the store's open connection still reads the file
            assert [r["event_name"] for r in index.search("cafe", 10, 0).results] == ["order"]
        finally:
            index.close()
