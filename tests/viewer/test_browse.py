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


class _Client:
    """What the stream reads of its request: whether the client left (after *polls* polls)."""

    def __init__(self, polls: int) -> None:
        self.polls = polls

    async def is_disconnected(self) -> bool:
        self.polls -= 1
        return self.polls < 0


def test_the_sessions_stream_scans_the_sessions_only_after_a_commit(tmp_path: Path, monkeypatch: Any) -> None:
    # Finding sessions changed without new events scans the sessions table: an idle viewer tab
    # must not do that every half second, only when another connection committed something.
    import asyncio

    from tracer.server import _stream

    monkeypatch.setattr(_stream, "POLL_SECONDS", 0.0)
    path = tmp_path / "traces.db"
    session = str(uuid.uuid4())
    first = _event(session, int(time.time() * 1000))
    with TraceStore(path) as store:
        store.write([(first, orjson.dumps(first).decode())], {session: {"session_id": session}})
    with TraceStore(path, read_only=True) as reader, TraceStore(path) as writer:
        browser = Browser(reader)
        scans: list[str] = []

        def note(sql: str) -> None:
            if "updated_at" in sql:
                scans.append(sql)

        reader.snapshot(lambda db: db.set_trace_callback(note))

        written: list[str] = []

        async def read(polls: int, write_after: int | None = None) -> list[bytes]:
            messages = []
            stream = _stream._list_messages(_Client(polls), browser, 0)  # type: ignore[arg-type]
            async for message in stream:
                messages.append(message)
                if write_after is not None and len(scans) == write_after:
                    other = str(uuid.uuid4())  # a new session without events: only the scan finds it
                    writer.write(sessions={other: {"session_id": other, "session_name": "late"}})
                    written.append(other)
                    write_after = None
            return messages

        idle = asyncio.run(read(polls=20))
        assert len(scans) == 1  # the first poll only
        assert b"event: sessions" in b"".join(idle)
        scans.clear()
        later = asyncio.run(read(polls=20, write_after=1))
        assert len(scans) == 2  # its first poll, and the poll after the commit
        assert written and written[0].encode() in b"".join(later)
