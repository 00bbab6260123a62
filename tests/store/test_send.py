"""``send_store`` against the fake HoneyHive (tests/collector.py): exactly-once per server, resumable."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import tracer
from tracer.store import SQLiteExporter, TraceStore, send_store

from ..collector import Collector


def fill(path: Path, name: str, spans: int) -> str:
    t = tracer.Tracer(project="send", session_name=name, exporter=SQLiteExporter(path), instrument=False)
    with t.session(name) as session:
        for index in range(spans):
            with t.span(f"{name}-{index}", "tool", inputs={"i": index}):
                pass
        t.enrich_session(metadata={"run": name})
    assert t.flush(5)
    t.shutdown()
    return session.session_id


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    path = tmp_path / "send.db"
    fill(path, "alpha", 3)
    fill(path, "beta", 2)
    return TraceStore(path)


def test_sends_the_stored_wire_events_once(store: TraceStore, collector: Collector) -> None:
    progress: list[tuple[int, int]] = []
    report = send_store(store, "k", collector.url, progress=lambda done, total: progress.append((done, total)))
    assert report.ok and (report.events_sent, report.already_sent) == (5, 0), report
    assert progress[0] == (0, 5) and progress[-1] == (5, 5)
    assert not collector.invalid
    stored = {e["event_id"]: e for sid in store.session_ids() for e in store.session_events(sid)}
    assert {e["event_id"]: e for e in collector.events} == stored  # exactly what was stored
    assert {props["session_name"] for props in collector.sessions.values()} == {"alpha", "beta"}
    assert all(props["metadata"]["run"] == props["session_name"] for props in collector.sessions.values())
    requests = len(collector.requests)
    again = send_store(store, "k", collector.url + "/")  # the same server, spelled differently
    assert again.ok and (again.events_sent, again.already_sent) == (0, 5)
    assert len(collector.requests) == requests  # nothing sent twice
    store.close()


def test_a_partial_success_is_resumed_without_duplicates(store: TraceStore, collector: Collector) -> None:
    collector.partial(fail=1)  # the first batch: all but its last event are created (HTTP 500 + event_ids)
    # ... and the exporter's re-send of that last event is refused: it stays unsent for this run.
    collector.fail(400, path="/events/batch", body={"message": "events[0].inputs must be an object"})
    first = send_store(store, "k", collector.url)
    assert not first.ok and (first.events_sent, first.events_failed) == (4, 1)
    assert "1 event(s)" in first.error() or "created" in first.error()
    second = send_store(store, "k", collector.url)
    assert second.ok and (second.events_sent, second.already_sent) == (1, 4)
    ids = collector.event_ids()
    assert len(ids) == len(set(ids)) == 5
    store.close()


def test_an_unreachable_server_stops_early_and_the_next_run_resumes(store: TraceStore, collector: Collector) -> None:
    collector.fail(503, times=50)
    down = send_store(store, "k", collector.url, timeout=2.0)
    assert not down.ok and down.events_sent == 0 and down.events_failed == 5
    assert "503" in down.error()
    posts = len(collector.requests_to("POST", "/events/batch"))
    assert posts < 50  # gave up after the first session's batch, did not hammer the rest
    collector.release()
    up = send_store(store, "k", collector.url)
    assert up.ok and up.events_sent == 5
    store.close()


def test_sessions_without_events_and_late_updates(tmp_path: Path, collector: Collector) -> None:
    with TraceStore(tmp_path / "s.db") as store:
        empty = "aaaaaaaa-0000-4000-8000-000000000001"
        store.write([], {empty: {"session_id": empty, "session_name": "started", "source": "t"}})
        sid = fill(tmp_path / "s.db", "gamma", 1)
        assert send_store(store, "k", collector.url).ok
        assert [s["session_name"] for s in collector.started_sessions] == ["started"]
        [event] = store.session_events(sid)
        store.write([], {}, [{"event_id": event["event_id"], "metrics": {"score": 1}}])
        store.write([], {}, [{"event_id": empty, "feedback": {"ok": True}}])
        report = send_store(store, "k", collector.url)
        assert report.ok and (report.events_sent, report.updates_sent) == (0, 2)
        assert {u["event_id"] for u in collector.updates} == {event["event_id"], empty}
        assert send_store(store, "k", collector.url).updates_sent == 0
        # Another server gets everything, updates merged into what is sent (no separate PUTs).
        other = Collector()
        try:
            report = send_store(store, "k", other.url)
            assert report.ok and report.updates_sent == 0 and report.sessions_started == 1
            assert other.events[0]["metrics"] == {"score": 1}
            assert other.started_sessions[0]["feedback"] == {"ok": True}
        finally:
            other.close()


def test_events_from_other_clients_are_sent_in_the_legacy_shape(tmp_path: Path, collector: Collector) -> None:
    from tracer.server import normalize_batch

    events, sessions = normalize_batch(
        {
            "events": [{"event_type": "model", "event_name": "curl-call", "inputs": {"q": 1}}],
            "is_single_session": True,
            "session_properties": {"session_name": "curl", "project": "x", "custom": 1},
        }
    )
    with TraceStore(tmp_path / "o.db") as store:
        store.write([(event, orjson.dumps(event).decode()) for event in events], sessions)
        report = send_store(store, "k", collector.url, project="proj")
        assert report.ok, report.errors
    assert not collector.invalid
    assert collector.events[0]["project"] == "proj"  # filled in: HoneyHive's legacy routes require it
    [props] = collector.sessions.values()
    assert props["session_name"] == "curl" and props["metadata"] == {"custom": 1}
