"""The local collector (``tracer serve``) as a real server in a subprocess, exercised over HTTP."""

from __future__ import annotations

import gzip
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

import tracer
from tracer.store import TraceStore

from ..processes import Server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

AUTH = {"Authorization": "Bearer k"}


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def event(session_id: str | None = None, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"event_type": "tool", "event_name": "hello", "inputs": {"q": 1}}
    if session_id is not None:
        data["session_id"] = session_id
    data.update(fields)
    return data


def post(client: httpx.Client, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {**AUTH, "Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(path, content=content, headers=headers, **kwargs)


def test_this_librarys_honeyhive_exporter_lands_in_the_store(server: Server, client: httpx.Client) -> None:
    name = f"http-{uuid.uuid4().hex[:8]}"
    t = tracer.Tracer(api_key="k", server_url=server.url, project="srv", session_name=name, instrument=False)

    @t.trace(event_type="model", event_name="generate", config={"model": "m-2"})
    def generate(q: str) -> str:
        t.enrich_span(metadata={"prompt_tokens": 3, "completion_tokens": 2})
        return q.upper()

    @t.trace(event_name="answer")
    def answer(q: str) -> str:
        return generate(q)

    answer("hi")
    with t.span("later") as late:
        pass
    late.update(feedback={"thumbs": "up"})  # after the end: a PUT /events
    t.enrich_session(metadata={"user": "u"})
    assert t.flush(10), t.stats()
    t.shutdown()
    assert t.stats()["dropped_total"] == 0

    with TraceStore(server.store) as store:
        [summary] = [s for s in store.sessions(limit=1000) if s.session_name == name]
        assert (summary.event_count, summary.total_tokens, summary.project) == (3, 5, "srv")
        assert summary.properties["metadata"] == {"user": "u"}
        events = {e["event_name"]: e for e in store.session_events(summary.session_id)}
    assert events["generate"]["parent_id"] == events["answer"]["event_id"]
    assert events["later"]["feedback"] == {"thumbs": "up"}
    listed = client.get("/events", params={"session_id": summary.session_id}, headers=AUTH).json()
    assert listed["totalEvents"] == 3
    assert {e["event_name"] for e in listed["events"]} == {"answer", "generate", "later"}


def test_single_events_batches_sessions_and_updates(client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    started = post(client, "/session/start", {"session": {"session_id": sid, "session_name": "curl", "source": "t"}})
    assert started.status_code == 200 and started.json()["session_id"] == started.json()["event_id"] == sid
    # OpenAPI 1.1 spells the event as a JSON-encoded string: accepted too.
    one = post(client, "/events", {"event": orjson.dumps(event(sid, event_name="single")).decode()})
    assert one.status_code == 200 and one.json()["success"] is True
    first_id = one.json()["event_id"]
    batch = post(
        client,
        "/events/batch",
        {
            "events": [event(), event(event_name="b")],
            "is_single_session": True,
            "session_properties": {"session_id": sid},
        },
    )
    assert batch.status_code == 200
    body = batch.json()
    assert body["success"] is True and body["session_id"] == sid and len(body["event_ids"]) == 2
    # An update for an event not stored yet is kept, and merged when the event comes.
    pending_id = str(uuid.uuid4())
    assert client.put("/events", json={"event_id": pending_id, "metadata": {"late": True}}, headers=AUTH).json()[
        "success"
    ]
    assert post(client, "/events", {"event": event(sid, event_id=pending_id, event_name="after")}).status_code == 200
    assert client.put("/events", json={"event_id": sid, "feedback": {"rating": 4}}, headers=AUTH).status_code == 200
    filters = orjson.dumps([{"field": "session_id", "operator": "is", "value": sid}]).decode()
    listed = client.get("/events", params={"filters": filters, "limit": 10}, headers=AUTH).json()
    names = {e["event_name"]: e for e in listed["events"]}
    assert listed["totalEvents"] == 4 and set(names) == {"single", "hello", "b", "after"}
    assert names["after"]["metadata"] == {"late": True}
    assert names["single"]["event_id"] == first_id
    assert all(e["parent_id"] == sid and e["source"] == "unknown" for e in listed["events"])  # server defaults
    paged = client.get("/events", params={"session_id": sid, "limit": 3, "page": 2}, headers=AUTH).json()
    assert len(paged["events"]) == 1 and paged["totalEvents"] == 4


def test_duplicates_and_gzip_bodies_are_idempotent(server: Server, client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    body = {"events": [event(sid, event_id=str(uuid.uuid4()), event_name=f"d{i}") for i in range(3)]}
    compressed = gzip.compress(orjson.dumps(body))
    for _ in range(2):
        answer = post(client, "/events/batch", compressed, headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 200, answer.text
    deflated = post(client, "/events/batch", zlib.compress(orjson.dumps(body)), headers={"Content-Encoding": "deflate"})
    assert deflated.status_code == 200
    assert client.get("/events", params={"session_id": sid}, headers=AUTH).json()["totalEvents"] == 3


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/events", b'{"event": {"event_type": "tool",', "invalid JSON"),
        ("/events", b"", "empty body"),
        ("/events", [1, 2], 'body must be {"event": {...}}'),
        ("/events", {"event": {"event_type": "bogus"}}, "event.event_type must be one of"),
        ("/events", {"event": event(inputs=[1])}, "event.inputs must be an object"),
        ("/events", {"event": event(start_time="yesterday")}, "event.start_time must be a number"),
        ("/events", {"event": event(event_name=7)}, "event.event_name must be a string"),
        ("/events", {"event": event(start_time=10, end_time=5)}, "end_time is before start_time"),
        ("/events/batch", {"events": []}, "events must be a non-empty array"),
        ("/events/batch", {"events": [event()], "is_single_session": "yes"}, "is_single_session must be a boolean"),
        ("/events/batch", {"events": [event(), {"event_type": "tool", "error": 3}]}, "events[1].error"),
        ("/session/start", {"session": "nope"}, "session must be an object"),
        ("/session/start", {"session": {"session_name": 1}}, "session.session_name must be a string"),
    ],
)
def test_invalid_bodies_get_400_with_a_clear_message(client: httpx.Client, path: str, body: Any, message: str) -> None:
    answer = post(client, path, body)
    assert answer.status_code == 400
    data = answer.json()
    assert message in data["message"] and data["errorCode"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"metadata": {}}, "event_id is required"),
        ({"event_id": "x", "inputs": {}}, "inputs cannot be updated"),
        ({"event_id": "x", "outputs": [1]}, "outputs must be an object"),
        ({"event_id": "x", "colour": "red"}, "unknown field(s) colour"),
    ],
)
def test_invalid_updates_get_400(client: httpx.Client, body: Any, message: str) -> None:
    answer = client.put("/events", json=body, headers=AUTH)
    assert answer.status_code == 400 and message in answer.json()["message"]


def test_auth_routes_and_query_errors(client: httpx.Client) -> None:
    body = orjson.dumps({"event": event()})
    missing = client.post("/events", content=body)
    assert missing.status_code == 401 and "missing API key" in missing.json()["message"]
    wrong = client.post("/events", content=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["errorCode"] == "UNAUTHORIZED"
    assert client.get("/events").status_code == 401
    assert client.get("/health").json()["status"] == "ok"  # no key needed to check liveness
    assert client.get("/nowhere", headers=AUTH).status_code == 404
    assert client.delete("/events", headers=AUTH).status_code == 405
    assert client.get("/events", params={"limit": "lots"}, headers=AUTH).status_code == 400
    assert client.get("/events", params={"limit": 7501}, headers=AUTH).status_code == 400
    bad_filter = orjson.dumps([{"field": "inputs", "operator": "matches", "value": "x"}]).decode()
    assert "is not one of" in client.get("/events", params={"filters": bad_filter}, headers=AUTH).json()["message"]
    brotli = post(client, "/events", body, headers={"Content-Encoding": "br"})
    assert brotli.status_code == 415


def test_huge_bodies_get_413(client: httpx.Client) -> None:
    limit = 1024 * 1024
    huge = orjson.dumps({"event": event(inputs={"blob": "x" * (2 * limit)})})
    declared = post(client, "/events", huge)  # Content-Length over the limit
    assert declared.status_code == 413 and "over the limit" in declared.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    streamed = client.post("/events", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert streamed.status_code == 413
    bomb = gzip.compress(huge)  # small on the wire, over the limit once inflated
    assert len(bomb) < limit
    inflated = post(client, "/events", bomb, headers={"Content-Encoding": "gzip"})
    assert inflated.status_code == 413 and "decompressed" in inflated.json()["message"]
    truncated = post(client, "/events", gzip.compress(b'{"event": {}}')[:-6], headers={"Content-Encoding": "gzip"})
    assert truncated.status_code == 400


def test_the_exporter_splits_batches_the_collector_finds_too_large(server: Server) -> None:
    name = f"big-{uuid.uuid4().hex[:8]}"
    t = tracer.Tracer(
        api_key="k",
        server_url=server.url,
        session_name=name,
        instrument=False,
        max_string_length=400_000,
        max_event_bytes=500_000,
        flush_interval=30,
        first_flush_interval=30,  # all four in one batch, sent by flush()
    )
    # 256 KB each: one batch of six is 1.5 MB, over the 1 MiB limit (once inflated): 413, split, all land.
    payloads = [uuid.uuid4().hex * 8_000 for _ in range(6)]
    with t.session(name):
        for index, payload in enumerate(payloads):
            with t.span(f"big{index}", inputs={"blob": payload}):
                pass
    assert t.flush(10)
    t.shutdown()
    with TraceStore(server.store) as store:
        [summary] = [s for s in store.sessions(limit=1000) if s.session_name == name]
        assert summary.event_count == 6


def test_a_session_event_becomes_the_session(server: Server, client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    body = {"event": {"event_type": "session", "event_name": "as-event", "session_id": sid, "metadata": {"m": 1}}}
    answer = post(client, "/events", body)
    assert answer.status_code == 200 and answer.json()["event_id"] == sid
    with TraceStore(server.store) as store:
        summary = store.session(sid)
    assert summary is not None and summary.event_count == 0
    assert summary.session_name == "as-event" and summary.properties["metadata"] == {"m": 1}
