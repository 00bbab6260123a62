"""TraceStore and SQLiteExporter on real SQLite files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

import tracer
from tracer.store import SCHEMA_VERSION, SQLiteExporter, StoreError, TraceStore, startup_message
from tracer.store._schema import MIGRATIONS

from ..processes import clean_env


def make_event(session_id: str, name: str = "e", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "project": "p",
        "source": "test",
        "event_name": name,
        "event_type": "tool",
        "event_id": str(uuid.uuid4()),
        "session_id": session_id,
        "parent_id": session_id,
        "children_ids": [],
        "config": {},
        "inputs": {},
        "outputs": {},
        "error": None,
        "start_time": 1_700_000_000_000,
        "end_time": 1_700_000_000_010,
        "duration": 10.0,
        "metadata": {},
        "feedback": {},
        "metrics": {},
        "user_properties": {},
    }
    event.update(fields)
    return event


def encoded(event: dict[str, Any]) -> tuple[dict[str, Any], str]:
    return event, orjson.dumps(event).decode()


class WireRecorder(tracer.Exporter):
    def __init__(self) -> None:
        self.encoded: list[bytes] = []

    def export(self, batch: tracer.Batch) -> bool:
        self.encoded.extend(batch.encoded)
        return True


def test_tracer_writes_through_the_pipeline_and_keeps_exact_wire_json(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "traces.db"
    wire = WireRecorder()
    t = tracer.Tracer(project="p", session_name="run", exporter=[SQLiteExporter(path), wire])

    @t.trace(event_type="model", event_name="model", config={"model": "m-1"})
    def model(x: int) -> int:
        t.enrich_span(metadata={"prompt_tokens": 10, "completion_tokens": 5})
        return x

    @t.trace(event_name="root")
    def root(x: int) -> int:
        with pytest.raises(ValueError), t.span("fails"):
            raise ValueError("boom")
        return model(x)

    root(1)
    t.enrich_session(metadata={"user": "u1"})
    assert t.flush(5)
    t.shutdown()
    assert path.exists()
    with TraceStore(path) as store:
        [summary] = store.sessions()
        assert (summary.session_name, summary.project, summary.event_count, summary.error_count) == ("run", "p", 3, 1)
        assert (summary.prompt_tokens, summary.completion_tokens, summary.total_tokens) == (10, 5, 15)
        assert summary.properties["metadata"] == {"user": "u1"}
        assert summary.duration_ms is not None and summary.duration_ms >= 0
        assert len(wire.encoded) == 3
        for raw in wire.encoded:  # byte for byte what the pipeline produced
            assert store.raw_event(orjson.loads(raw)["event_id"]) == raw.decode()
        names = {e["event_name"]: e for e in store.session_events(summary.session_id)}
        assert names["model"]["parent_id"] == names["root"]["event_id"]
        assert store.schema_version() == SCHEMA_VERSION
        assert store.integrity_check() == "ok"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_events_are_idempotent_and_sessions_merged(tmp_path: Path) -> None:
    sid = str(uuid.uuid4())
    first = make_event(sid, "a")
    with TraceStore(tmp_path / "t.db") as store:
        assert store.write([encoded(first)], {sid: {"session_id": sid, "session_name": "s", "metadata": {"a": 1}}}) == 1
        changed = dict(first, event_name="changed")
        assert store.write([encoded(first), encoded(changed)], {sid: {"session_id": sid, "metadata": {"b": 2}}}) == 0
        assert store.count_events() == 1
        [event] = store.session_events(sid)
        assert event["event_name"] == "a"  # the first copy wins
        summary = store.session(sid)
        assert summary is not None
        assert summary.session_name == "s"
        assert summary.properties["metadata"] == {"a": 1, "b": 2}


def test_updates_merge_into_events_and_sessions_in_any_order(tmp_path: Path) -> None:
    sid = str(uuid.uuid4())
    event = make_event(sid, "late", metadata={"k": 1}, config={"model": "x"}, event_type="model")
    with TraceStore(tmp_path / "t.db") as store:
        # The update arrives first (another process, or a PUT before its POST): kept, merged later.
        store.write([], {}, [{"event_id": event["event_id"], "metadata": {"prompt_tokens": 7}, "feedback": {"r": 1}}])
        store.write([encoded(event)], {sid: {"session_id": sid, "session_name": "s"}})
        store.write(
            [], {}, [{"event_id": sid, "feedback": {"rating": 5}}, {"event_id": event["event_id"], "error": "x"}]
        )
        [merged] = store.session_events(sid)
        assert merged["metadata"] == {"k": 1, "prompt_tokens": 7}
        assert merged["feedback"] == {"r": 1}
        assert merged["error"] == "x"
        assert orjson.loads(store.raw_event(event["event_id"]) or "null") == event  # the original is kept
        summary = store.session(sid)
        assert summary is not None
        assert summary.properties["feedback"] == {"rating": 5}
        assert (summary.error_count, summary.prompt_tokens, summary.total_tokens) == (1, 7, 7)


def test_resolve_session_by_last_prefix_and_errors(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.db") as store:
        with pytest.raises(StoreError, match="no sessions"):
            store.resolve_session("last")
        old, new = "aaaa1111-0000-4000-8000-000000000000", "aaaa2222-0000-4000-8000-000000000000"
        store.write([encoded(make_event(old, start_time=1, end_time=2))])
        store.write([encoded(make_event(new, start_time=5, end_time=6))])
        assert store.resolve_session("last") == new
        assert store.resolve_session("AAAA1") == old
        assert store.resolve_session(new) == new
        with pytest.raises(StoreError, match="ambiguous"):
            store.resolve_session("aaaa")
        with pytest.raises(StoreError, match="no session 'zz'"):
            store.resolve_session("zz")
        assert [s.session_id for s in store.sessions()] == [new, old]
        events, total = store.query_events({"session_id": old})
        assert total == 1 and events[0]["session_id"] == old
        with pytest.raises(ValueError, match="cannot filter"):
            store.query_events({"inputs": "x"})


def test_refuses_foreign_newer_and_corrupt_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a tracer store"):
        TraceStore(garbage)
    foreign = tmp_path / "foreign.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE users (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a tracer store"):
        TraceStore(foreign)
    newer = tmp_path / "newer.db"
    TraceStore(newer).close()
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="upgrade tracer"):
        TraceStore(newer)
    with pytest.raises(StoreError, match="no trace store"):
        TraceStore(tmp_path / "missing.db", create=False)


def test_migrations_are_versioned_and_run_once(tmp_path: Path) -> None:
    assert len(MIGRATIONS) == SCHEMA_VERSION >= 1
    path = tmp_path / "t.db"
    TraceStore(path).close()
    TraceStore(path).close()  # re-opening applies nothing twice
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"sessions", "events", "updates", "deliveries"} <= tables
    assert {"events_by_session", "sessions_by_start", "updates_pending"} <= indexes
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_startup_message_says_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = startup_message(str(tmp_path / ".tracer" / "traces.db"))
    assert text.startswith("tracer: no API key, so traces go to ./.tracer/traces.db;")
    assert "tracer show last" in text
    assert "--store ./x.db" in startup_message(str(tmp_path / "x.db"))


def test_importing_tracer_does_not_import_the_extras() -> None:
    code = (
        "import sys, tracer, tracer.store, tracer.server, tracer.cli\n"
        "heavy = {'click', 'rich', 'starlette', 'uvicorn', 'httpx'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), check=False)
    assert done.returncode == 0, done.stderr
