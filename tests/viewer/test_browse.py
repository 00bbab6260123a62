"""The viewer's store reads (``store/_browse.py``) on a real SQLite store, for what HTTP cannot set up."""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from tracer.store import TraceStore
from tracer.store._browse import Browser, SessionQuery


def _event(session: str, start: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": session,
        "parent_id": session,
        "event_type": "tool",
        "event_name": "step",
        "start_time": start,
        "end_time": start + 10,
        "duration": 10.0,
    }


def test_live_means_an_event_arrived_in_the_last_minute_or_no_end(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    session = str(uuid.uuid4())
    now = int(time.time() * 1000)
    early, late = _event(session, now - 600_000), _event(session, now - 500_000)
    early["end_time"] = now - 50_000  # the second event falls inside the session's span
    with TraceStore(path) as store:
        store.write([(early, orjson.dumps(early).decode())], {session: {"session_id": session}})
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # the session's row last changed long ago
        db.execute("UPDATE sessions SET updated_at = 0")
        db.execute("UPDATE events SET stored_at = 0")
    with TraceStore(path, read_only=True) as reader:
        browser = Browser(reader)
        assert browser.sessions(SessionQuery())[0][0]["live"] is False
        with TraceStore(path) as writer:  # an event inside the span: the row's times do not move
            writer.write([(late, orjson.dumps(late).decode())])
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            assert db.execute("SELECT updated_at FROM sessions").fetchone()[0] == 0
        assert browser.sessions(SessionQuery())[0][0]["live"] is True
        assert browser.session(session)["live"] is True  # type: ignore[index]
