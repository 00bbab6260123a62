"""``tracer serve`` serves the viewer too: the same pages and API at the same paths, one process and
one port with the collector; events POSTed to the collector reach the viewer's live stream."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ..processes import Server
from .test_viewer_api import Stream, _get

AUTH = {"Authorization": "Bearer k"}


def test_the_collector_serves_the_viewer_and_streams_what_it_receives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the search index: not in ~/.cache
    server = Server(tmp_path / "collector.db", "--api-key", "k")
    try:
        with httpx.Client(base_url=server.url, timeout=20) as anonymous:
            assert anonymous.get("/health").json()["status"] == "ok"  # liveness needs no key, as before
            assert anonymous.get("/").status_code == 401  # the viewer's page: the key is its token
            assert _get(anonymous, "/api/sessions", 401) == {"error": "token required"}
        # The viewer starts its search index at once, before any search (its file in the cache).
        deadline = time.monotonic() + 10
        while not list((tmp_path / "cache" / "tracer" / "search").glob("*.db")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list((tmp_path / "cache" / "tracer" / "search").glob("*.db"))
        with httpx.Client(base_url=server.url, timeout=20, headers=AUTH) as client:
            page = client.get("/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "unsafe-inline" not in page.headers["content-security-policy"]
            assert _get(client, "/api/sessions")["total"] == 0
            session = str(uuid.uuid4())
            root = str(uuid.uuid4())
            now = int(time.time() * 1000)
            first = {
                "event_id": root,
                "session_id": session,
                "event_type": "chain",
                "event_name": "agent",
                "inputs": {"question": "<script>alert(1)</script>"},
                "start_time": now,
                "end_time": now + 5,
                "duration": 5.0,
            }
            posted = client.post(
                "/events/batch",
                content=orjson.dumps({"events": [first], "session_properties": {"session_id": session}}),
                headers={"Content-Type": "application/json"},
            )
            assert posted.status_code == 200, posted.text
            assert client.get(f"/sessions/{session}").status_code == 200
            listing = Stream(server.url, "/api/stream", AUTH)
            watching = Stream(server.url, f"/api/stream?session={session}", AUTH)
            try:
                _watch(client, session, root, first, listing, watching)
            finally:
                for stream in (listing, watching):
                    stream.close()
    finally:
        assert server.stop() == 0


def _watch(
    client: httpx.Client, session: str, root: str, first: dict[str, Any], listing: Stream, watching: Stream
) -> None:
    listing.next("comment")
    watching.next("comment")
    child = {**first, "event_id": str(uuid.uuid4()), "parent_id": root, "event_type": "model",
                     "event_name": "llm", "config": {"model": "m-1"}, "metadata": {"prompt_tokens": 3}}  # fmt: skip
    client.post("/events", content=orjson.dumps({"event": child}), headers={"Content-Type": "application/json"})
    assert listing.next("sessions")["changed"] == [session]
    rows = watching.next("events")["events"]
    assert [(row["event_name"], row["depth"], row["model"]) for row in rows] == [("llm", 1, "m-1")]
    listed = _get(client, "/api/sessions")["sessions"]
    assert [(row["session_id"], row["events"], row["models"]) for row in listed] == [(session, 2, ["m-1"])]
    assert _get(client, f"/api/events/{root}")["inputs"] == {"question": "<script>alert(1)</script>"}
    found = _get(client, "/api/search", q="alert")["results"]
    assert [result["event_id"] for result in found] == [child["event_id"], root]  # newest first
