"""The rest of HoneyHive's API surface on a real ``tracer serve``: session start and read-back,
``/events/export`` and ``/v1/events/export``, ``/events/model``, and ``PUT /events`` times."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tracer.store import TraceStore

from ..processes import Server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("api") / "c.db")
    try:
        yield running
    finally:
        assert running.stop() == 0


@pytest.fixture(scope="module")
def client(api_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=10) as http:
        yield http


def ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_session_start_answers_the_session_event_both_clients_accept(client: httpx.Client) -> None:
    started = ok(client.post("/session/start", json={"session": {"session_name": "probe", "source": "probe"}}))
    sid = started["session_id"]
    assert uuid.UUID(sid)
    # honeyhive 1.x's PostSessionStartResponse requires these four besides session_id.
    assert started["event_id"] == sid and started["event_type"] == "session"
    assert {started[name] for name in ("org_id", "workspace_id", "project_id")} == {"local"}
    assert started["event_name"] == "probe" and started["source"] == "probe" and started["parent_id"] is None
    # The same session started again (idempotent on session_id): same event, project now named.
    again = ok(client.post("/session/start", json={"session": {"session_id": sid, "project": "p1"}}))
    assert again["event_id"] == sid and again["event_name"] == "probe"


def test_get_session_returns_the_session_event(client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    session = {"session_id": sid, "session_name": "s", "source": "t", "inputs": {"q": "hi"}, "start_time": T0}
    ok(client.post("/session/start", json={"session": session}))
    root, child = str(uuid.uuid4()), str(uuid.uuid4())
    events = [
        {"event_type": "chain", "event_id": root, "session_id": sid, "start_time": T0 + 1, "end_time": T0 + 50},
        {
            "event_type": "model",
            "event_id": child,
            "session_id": sid,
            "parent_id": root,
            "start_time": T0 + 2,
            "end_time": T0 + 40,
            "metadata": {"prompt_tokens": 3, "completion_tokens": 4},
        },
    ]
    ok(client.post("/events/batch", json={"events": events}))
    ok(client.put("/events", json={"event_id": sid, "metadata": {"user": "u"}, "outputs": {"a": 1}}))
    got = ok(client.get(f"/session/{sid}"))
    assert got["event_id"] == got["session_id"] == sid and got["event_type"] == "session"
    assert got["children_ids"] == [root]  # the session's direct children
    assert got["inputs"] == {"q": "hi"} and got["outputs"] == {"a": 1}
    assert got["metadata"]["user"] == "u" and got["metadata"]["num_events"] == 2
    assert got["metadata"]["total_tokens"] == 7
    assert got["start_time"] == T0 and got["end_time"] == T0 + 50
    missing = client.get(f"/session/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["errorCode"] == "NOT_FOUND"
    assert "Session not found" in missing.json()["message"]


@pytest.fixture(scope="module")
def exported(client: httpx.Client) -> str:
    """A session of 12 events to query: 10 tools (cost i/10), a model, a chain with an error."""
    sid = str(uuid.uuid4())
    events: list[dict[str, Any]] = [
        {
            "event_type": "tool",
            "event_name": f"tool{i}",
            "session_id": sid,
            "start_time": T0 + 1000 * i,
            "inputs": {"chat_history": [{"role": "user", "content": f"question {i}"}]},
            "metadata": {"cost": i / 10, "flag": i % 2 == 0},
        }
        for i in range(10)
    ]
    events.append(
        {"event_type": "model", "event_name": "gen", "session_id": sid, "start_time": T0 + 500, "config": {"m": 1}}
    )
    events.append(
        {"event_type": "chain", "event_name": "oops", "session_id": sid, "start_time": T0 + 20_000, "error": "boom"}
    )
    ok(client.post("/events/batch", json={"events": events}))
    return sid


def export(client: httpx.Client, path: str, sid: str, *filters: dict[str, Any], **body: Any) -> dict[str, Any]:
    mine = {"field": "session_id", "operator": "is", "value": sid, "type": "string"}
    return ok(client.post(path, json={"project": "any", "filters": [mine, *filters], **body}))  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", ["/events/export", "/v1/events/export"])
@pytest.mark.parametrize(
    ("filters", "names"),
    [
        ([], None),  # all 12
        ([{"field": "event_type", "operator": "is", "value": "model"}], ["gen"]),
        ([{"field": "event_type", "operator": "is not", "value": "tool"}], ["gen", "oops"]),
        (
            [{"field": "metadata.cost", "operator": "greater than", "value": "0.75", "type": "number"}],
            ["tool8", "tool9"],
        ),
        ([{"field": "metadata.cost", "operator": "less than", "value": 0.1, "type": "number"}], ["tool0"]),
        ([{"field": "inputs.chat_history.0.content", "operator": "contains", "value": "question 7"}], ["tool7"]),
        ([{"field": "error", "operator": "exists"}], ["oops"]),
        (
            [
                {"field": "config.model", "operator": "not exists"},
                {"field": "event_name", "operator": "contains", "value": "tool1"},
            ],
            ["tool1"],
        ),
        (
            [
                {"field": "metadata.flag", "operator": "is", "value": "true", "type": "boolean"},
                {"field": "start_time", "operator": "after", "value": "2023-11-14T22:13:25Z", "type": "datetime"},
            ],
            ["tool6", "tool8"],
        ),
        ([{"field": "start_time", "operator": "before", "value": T0 + 1000, "type": "datetime"}], ["tool0", "gen"]),
    ],
)
def test_export_filters(
    client: httpx.Client, exported: str, path: str, filters: list[dict[str, Any]], names: list[str] | None
) -> None:
    answer = export(client, path, exported, *filters)
    found = [event["event_name"] for event in answer["events"]]
    if names is None:
        assert answer["totalEvents"] == 12 and len(found) == 12
    else:
        assert found == names and answer["totalEvents"] == len(names)
    assert found == [e["event_name"] for e in sorted(answer["events"], key=lambda e: e["start_time"])]


def test_export_paging_date_range_and_projections(client: httpx.Client, exported: str) -> None:
    first = export(client, "/v1/events/export", exported, limit=5, page=1)
    third = export(client, "/v1/events/export", exported, limit=5, page=3)
    assert (first["totalEvents"], len(first["events"]), len(third["events"])) == (12, 5, 2)
    assert [e["event_name"] for e in first["events"]] == ["tool0", "gen", "tool1", "tool2", "tool3"]
    assert [e["event_name"] for e in third["events"]] == ["tool9", "oops"]
    dated = export(
        client, "/events/export", exported, dateRange={"$gte": "2023-11-14T22:13:22Z", "$lte": "2023-11-14T22:13:24Z"}
    )
    assert [e["event_name"] for e in dated["events"]] == ["tool2", "tool3", "tool4"]
    projected = export(client, "/events/export", exported, projections=["event_name", "metadata.cost"], limit=2)
    assert projected["events"] == [
        {"event_name": "tool0", "metadata": {"cost": 0.0}},
        {"event_name": "gen"},
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body must be a JSON object"),
        ({"filters": "x"}, "filters must be a JSON array"),
        ({"filters": [{"operator": "is", "value": "x"}]}, "filters[0].field"),
        ({"filters": [{"field": "a", "operator": "like", "value": "x"}]}, "filters[0].operator 'like'"),
        ({"filters": [{"field": "a", "operator": "is", "value": "x", "type": "date"}]}, "filters[0].type"),
        ({"filters": [{"field": "a", "operator": "greater than", "value": "many"}]}, "must be a number"),
        ({"filters": [], "limit": 7501}, "limit must be between 1 and 7500"),
        ({"filters": [], "page": 0}, "page must be between"),
        ({"filters": [], "dateRange": {"$gte": "yesterday"}}, "dateRange.$gte"),
        ({"filters": [], "projections": [1]}, "projections"),
    ],
)
def test_export_errors_name_the_field(client: httpx.Client, body: Any, message: str) -> None:
    answer = client.post("/v1/events/export", json=body)
    assert answer.status_code == 400 and message in answer.json()["message"], answer.text
    assert answer.json()["errorCode"] == "BAD_REQUEST"


def test_get_events_takes_the_same_filters(client: httpx.Client, exported: str) -> None:
    filters = '[{"field": "metadata.cost", "operator": "greater than", "value": "0.85", "type": "number"}]'
    answer = ok(client.get("/events", params={"session_id": exported, "filters": filters}))
    assert [e["event_name"] for e in answer["events"]] == ["tool9"] and answer["totalEvents"] == 1


def test_model_events_are_mapped_like_honeyhive(api_server: Server, client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    model_event = {
        "project": "p",
        "session_id": sid,
        "model": "gpt-4o",
        "provider": "openai",
        "messages": [{"role": "user", "content": "hi"}],
        "response": {"role": "assistant", "content": "hello"},
        "duration": 42,
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        "cost": 0.001,
        "hyperparameters": {"temperature": 0.2},
        "template_inputs": {"name": "x"},
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "event_name": "chat",
        "request_id": "r-1",
    }
    answer = ok(client.post("/events/model", json={"model_event": model_event}))
    assert answer["success"] is True
    batch = ok(client.post("/events/model/batch", json={"model_events": [{**model_event, "event_name": "second"}] * 2}))
    assert len(batch["event_ids"]) == 2
    with TraceStore(api_server.store) as store:
        events = {e["event_id"]: e for e in store.session_events(sid)}
        summary = store.session(sid)
    event = events[answer["event_id"]]
    assert event["event_type"] == "model" and event["event_name"] == "chat"
    assert event["config"] == {
        "model": "gpt-4o",
        "provider": "openai",
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    assert event["inputs"] == {"chat_history": [{"role": "user", "content": "hi"}], "name": "x"}
    assert event["outputs"] == {"role": "assistant", "content": "hello"}
    assert event["metadata"] == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "cost": 0.001,
        "request_id": "r-1",
    }
    assert event["duration"] == 42 and event["end_time"] - event["start_time"] == 42
    assert summary is not None and summary.total_tokens == 36 and summary.event_count == 3
    bad = client.post("/events/model", json={"model_event": {"messages": "hi"}})
    assert bad.status_code == 400 and "model_event.messages must be an array" in bad.json()["message"]


def test_put_keeps_end_minus_start_equal_to_duration(api_server: Server, client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(4)]
    # The third update comes before its event: applied when the event arrives, the same way.
    ok(client.put("/events", json={"event_id": ids[2], "duration": 7.5}))
    events = [
        {"event_type": "tool", "event_id": i, "session_id": sid, "start_time": T0, "end_time": T0 + 1000} for i in ids
    ]
    ok(client.post("/events/batch", json={"events": events}))
    ok(client.put("/events", json={"event_id": ids[0], "duration": 42}))
    ok(client.put("/events", json={"event_id": ids[1], "end_time": T0 + 250}))
    ok(client.put("/events", json={"event_id": ids[3], "end_time": T0 + 10, "duration": 12.25}))
    with TraceStore(api_server.store) as store:
        stored = {e["event_id"]: e for e in store.session_events(sid)}
    for event_id, duration in zip(ids, (42, 250, 7.5, 12.25), strict=True):
        event = stored[event_id]
        assert event["duration"] == duration
        assert abs(event["end_time"] - event["start_time"] - duration) <= 1
    listed = ok(client.get("/events", params={"event_id": ids[0]}))["events"][0]
    assert listed["end_time"] == T0 + 42


def test_v1_routes_take_bare_events(api_server: Server, client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    one = ok(client.post("/v1/events", json={"event_type": "tool", "event_name": "bare", "session_id": sid}))
    batch = ok(
        client.post(
            "/v1/events/batch",
            json={
                "events": [{"event_type": "chain", "event_name": "b"}],
                "single_session": True,
                "session_properties": {"session_id": sid},
            },
        )
    )
    assert one["success"] and len(batch["event_ids"]) == 1
    with TraceStore(api_server.store) as store:
        assert {e["event_name"] for e in store.session_events(sid)} == {"bare", "b"}
