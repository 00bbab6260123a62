"""The viewer's HTTP API and pages (issue 15), over HTTP against ``tracer ui`` in a subprocess and a
store written by a real traced program; the live stream against another process writing."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ..processes import clean_env, run_cli
from .conftest import Ui, copy_store
from .traced_app import HOSTILE_INPUT, HOSTILE_NAME

Json = dict[str, Any]


@pytest.fixture(scope="module")
def ui(traced: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    store, _ = traced
    running = Ui(store, cache=tmp_path_factory.mktemp("cache"))
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def http(ui: Ui) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui.url, timeout=20) as client:
        yield client


@pytest.fixture
def ids(traced: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return traced[1]


def _get(http: httpx.Client, path: str, status: int = 200, /, **params: Any) -> Any:
    response = http.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


# -- pages ----------------------------------------------------------------------------------------


def test_pages_answer_the_single_page_app_with_its_security_headers(http: httpx.Client, ids: dict[str, str]) -> None:
    support = ids["support-0"]
    events = _get(http, f"/api/sessions/{support}/events")["events"]
    for path in (
        "/",
        "/?q=x&errors=1&page=2",
        f"/sessions/{support}",
        f"/sessions/{support}/events/{events[1]['event_id']}",
    ):
        page = http.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
        assert script_src.split() == ["script-src", "'self'"]
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert b"<script>" not in page.content  # no inline script: the page's code is in /static
    other = _get(http, f"/api/sessions/{ids['support-1']}/events")["events"][0]["event_id"]
    for path in ("/sessions/nope", f"/sessions/{support}/events/nope", f"/sessions/{support}/events/{other}"):
        page = http.get(path)
        assert page.status_code == 404, path  # the page shows its "not found" view
        assert page.headers["content-type"].startswith("text/html")


def test_static_files_stay_inside_their_directory(http: httpx.Client) -> None:
    for path in ("/static/../_viewer.py", "/static/%2e%2e/_viewer.py", "/static/nothing.js", "/static/x.py"):
        response = http.get(path)
        assert response.status_code == 404, path
        assert b"import" not in response.content


def test_info(http: httpx.Client, traced: tuple[Path, dict[str, str]]) -> None:
    info = _get(http, "/api/info")
    assert info["store"] == str(traced[0])
    assert info["auth"] is False and info["engine"] == "fts5" and info["version"]


# -- sessions -------------------------------------------------------------------------------------


def test_sessions_list_with_aggregates(http: httpx.Client, ids: dict[str, str]) -> None:
    listed = _get(http, "/api/sessions")
    assert listed["total"] == 4 and listed["limit"] == 50 and listed["offset"] == 0
    rows = {row["session_id"]: row for row in listed["sessions"]}
    assert set(rows) == set(ids.values())
    support = rows[ids["support-0"]]
    assert support["session_name"] == "support-0" and support["source"] == "viewer-test"
    assert support["events"] == 5 and support["errors"] == 1
    assert (support["prompt_tokens"], support["completion_tokens"], support["total_tokens"]) == (40, 12, 52)
    assert support["models"] == ["fake-gpt-mini"]
    assert (
        support["end_ms"] >= support["start_ms"] and support["duration_ms"] == support["end_ms"] - support["start_ms"]
    )
    assert isinstance(support["live"], bool)  # whether it changed in the last minute: see the stream test
    hostile = rows[ids["hostile"]]
    assert hostile["session_name"] == HOSTILE_NAME  # plain data, exactly as recorded
    assert hostile["models"] == [] and hostile["total_tokens"] == 0
    starts = [row["start_ms"] for row in listed["sessions"]]
    assert starts == sorted(starts, reverse=True)  # newest first


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "support"}, {"support-0", "support-1", "support-2"}),
        ({"q": "SUPPORT-1"}, {"support-1"}),
        ({"q": "<script>"}, {"hostile"}),
        ({"q": "viewer-test"}, {"support-0", "support-1", "support-2", "hostile"}),  # the source
        ({"type": "model"}, {"support-0", "support-1", "support-2"}),
        ({"type": "chain"}, {"support-0", "support-1", "support-2"}),
        ({"type": "tool"}, {"support-0", "support-1", "support-2", "hostile"}),
        ({"type": "session"}, {"support-0", "support-1", "support-2", "hostile"}),
        ({"model": "fake-gpt-mini"}, {"support-0", "support-1", "support-2"}),
        ({"model": "gpt-5"}, set()),
        ({"errors": "1"}, {"support-0", "support-1", "support-2", "hostile"}),
        (
            {"q": "support", "errors": "1", "type": "model", "model": "fake-gpt-mini"},
            {"support-0", "support-1", "support-2"},
        ),
        ({"until": "1"}, set()),
        ({"since": "1"}, {"support-0", "support-1", "support-2", "hostile"}),
    ],
)
def test_sessions_filters(http: httpx.Client, ids: dict[str, str], params: dict[str, str], expected: set[str]) -> None:
    listed = _get(http, "/api/sessions", **params)
    names = {name for name, sid in ids.items() if sid in {row["session_id"] for row in listed["sessions"]}}
    assert names == expected
    assert listed["total"] == len(expected)


def test_sessions_sort_and_paging(http: httpx.Client, ids: dict[str, str]) -> None:
    by_events = _get(http, "/api/sessions", sort="events", order="asc")["sessions"]
    assert by_events[0]["session_id"] == ids["hostile"]  # 1 event against 5
    assert [row["events"] for row in by_events] == sorted(row["events"] for row in by_events)
    by_tokens = _get(http, "/api/sessions", sort="tokens")["sessions"]
    assert by_tokens[-1]["session_id"] == ids["hostile"]
    by_name = _get(http, "/api/sessions", sort="name", order="asc")["sessions"]
    assert [row["session_name"] for row in by_name] == [HOSTILE_NAME, "support-0", "support-1", "support-2"]
    by_errors = _get(http, "/api/sessions", sort="errors")["sessions"]
    assert all(row["errors"] == 1 for row in by_errors)
    by_duration = _get(http, "/api/sessions", sort="duration", order="asc")["sessions"]
    assert [row["duration_ms"] for row in by_duration] == sorted(row["duration_ms"] for row in by_duration)
    whole = [row["session_id"] for row in _get(http, "/api/sessions", sort="name")["sessions"]]
    pages = [
        row["session_id"]
        for offset in (0, 2)
        for row in _get(http, "/api/sessions", sort="name", limit=2, offset=offset)["sessions"]
    ]
    assert pages == whole
    beyond = _get(http, "/api/sessions", offset=10)
    assert beyond["sessions"] == [] and beyond["total"] == 4


def test_one_session(http: httpx.Client, ids: dict[str, str]) -> None:
    session = _get(http, f"/api/sessions/{ids['support-2']}")
    assert session["session_name"] == "support-2" and session["events"] == 5
    assert session["properties"]["session_id"] == ids["support-2"]
    events = _get(http, f"/api/sessions/{ids['support-2']}/events")["events"]
    assert session["max_seq"] == max(event["seq"] for event in events)
    missing = _get(http, "/api/sessions/no-such-session", 404)
    assert missing == {"error": "unknown session", "session_id": "no-such-session"}


# -- events ---------------------------------------------------------------------------------------


def test_session_events_in_waterfall_order(http: httpx.Client, ids: dict[str, str]) -> None:
    answer = _get(http, f"/api/sessions/{ids['support-0']}/events")
    assert answer["total"] == 5 and answer["offset"] == 0 and answer["limit"] == 1000
    rows = answer["events"]
    assert [(row["event_name"], row["depth"]) for row in rows] == [
        ("answer", 0),
        ("search_docs", 1),
        ("lookup_order", 1),
        ("lookup_order", 1),
        ("llm", 1),
    ]
    assert [row["children"] for row in rows] == [4, 0, 0, 0, 0]
    assert all(row["parent_id"] == rows[0]["event_id"] for row in rows[1:])
    starts = [row["start_ms"] for row in rows[1:]]
    assert starts == sorted(starts)
    failed = rows[2]
    assert failed["error"].startswith("KeyError") and rows[3]["error"] is None
    model = rows[4]
    assert model["event_type"] == "model" and model["model"] == "fake-gpt-mini"
    assert (model["prompt_tokens"], model["completion_tokens"]) == (40, 12)
    assert set(model) >= {"end_ms", "duration_ms", "seq"} and "inputs" not in model  # a light row
    page = _get(http, f"/api/sessions/{ids['support-0']}/events", limit=2, offset=2)
    assert [row["event_id"] for row in page["events"]] == [row["event_id"] for row in rows[2:4]]
    assert page["total"] == 5
    assert _get(http, "/api/sessions/nope/events", 404)["error"] == "unknown session"


def test_one_event_as_stored(http: httpx.Client, ids: dict[str, str]) -> None:
    rows = _get(http, f"/api/sessions/{ids['support-1']}/events")["events"]
    model = _get(http, f"/api/events/{rows[4]['event_id']}")
    assert model["event_type"] == "model" and model["session_id"] == ids["support-1"]
    assert model["inputs"]["chat_history"][1]["role"] == "user"
    assert model["outputs"] == {"result": {"role": "assistant", "content": "Yes, we will refund you in full."}}
    assert model["metadata"]["prompt_tokens"] == 40 and model["config"]["model"] == "fake-gpt-mini"
    failed = _get(http, f"/api/events/{rows[2]['event_id']}")
    assert failed["error"].startswith("KeyError")
    hostile_id = _get(http, f"/api/sessions/{ids['hostile']}/events")["events"][0]["event_id"]
    hostile = _get(http, f"/api/events/{hostile_id}")
    assert hostile["event_name"] == HOSTILE_NAME and HOSTILE_INPUT in hostile["error"]
    assert _get(http, "/api/events/nope", 404) == {"error": "unknown event", "event_id": "nope"}


# -- search ---------------------------------------------------------------------------------------


def _check_search(http: httpx.Client, ids: dict[str, str], engine: str) -> None:
    found = _get(http, "/api/search", q="refund")
    assert found["engine"] == engine
    sessions = {result["session_id"] for result in found["results"]}
    assert sessions == {ids["support-0"], ids["support-1"], ids["support-2"]}
    for result in found["results"]:
        assert set(result) >= {"session_name", "event_id", "event_name", "event_type", "field", "snippet"}
        marked = [segment["text"] for segment in result["snippet"] if segment["match"]]
        assert marked and all(text.lower() == "refund" for text in marked)
    promised = _get(http, "/api/search", q="will REFUND you")["results"]
    # The model's answer, and the chain that returned it.
    assert {result["event_name"] for result in promised} == {"llm", "answer"}
    assert {result["field"] for result in promised} == {"outputs"}
    hostile = _get(http, "/api/search", q="onerror")["results"]
    assert [result["session_id"] for result in hostile] == [ids["hostile"]]
    assert hostile[0]["session_name"] == HOSTILE_NAME
    text = "".join(segment["text"] for segment in hostile[0]["snippet"])
    assert "<img src=x onerror" in text  # the recorded text as plain data
    assert _get(http, "/api/search", q="nothing-like-this")["results"] == []
    paged = _get(http, "/api/search", q="refund", limit=1, offset=1)["results"]
    assert [result["event_id"] for result in paged] == [found["results"][1]["event_id"]]


def test_search_with_fts5_indexes_in_the_cache_not_beside_the_store(
    http: httpx.Client, ids: dict[str, str], traced: tuple[Path, dict[str, str]], ui: Ui
) -> None:
    beside = sorted(os.listdir(traced[0].parent))
    _check_search(http, ids, "fts5")
    # Per support session: the chain (its question), the retriever and the model.
    found = _get(http, "/api/search", q="refund")
    assert found["total"] == len(found["results"]) == 9
    assert sorted(os.listdir(traced[0].parent)) == beside
    assert not any(name.endswith(".search") for name in beside)


def test_search_with_the_scan_engine(traced: tuple[Path, dict[str, str]], start_ui: Any, ids: dict[str, str]) -> None:
    ui = start_ui(traced[0], "--search", "scan")
    with httpx.Client(base_url=ui.url, timeout=20) as client:
        assert _get(client, "/api/info")["engine"] == "scan"
        _check_search(client, ids, "scan")
        assert _get(client, "/api/search", q="refund")["total"] is None


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/sessions", {"limit": "0"}, "limit"),
        ("/api/sessions", {"limit": "501"}, "limit"),
        ("/api/sessions", {"limit": "ten"}, "limit"),
        ("/api/sessions", {"offset": "-1"}, "offset"),
        ("/api/sessions", {"sort": "cost"}, "sort"),
        ("/api/sessions", {"order": "up"}, "order"),
        ("/api/sessions", {"type": "agent"}, "type"),
        ("/api/sessions", {"errors": "maybe"}, "errors"),
        ("/api/sessions", {"since": "yesterday"}, "since"),
        ("/api/sessions", {"since": "20", "until": "10"}, "until"),
        ("/api/sessions", {"q": "x" * 1001}, "q"),
        ("/api/sessions/SID/events", {"limit": "5001"}, "limit"),
        ("/api/search", {}, "q"),
        ("/api/search", {"q": "refund", "limit": "201"}, "limit"),
        ("/api/stream", {"after": "x"}, "after"),
    ],
)
def test_malformed_parameters_are_400_naming_them(
    http: httpx.Client, ids: dict[str, str], path: str, params: dict[str, str], parameter: str
) -> None:
    answer = _get(http, path.replace("SID", ids["support-0"]), 400, **params)
    assert answer["parameter"] == parameter and parameter in answer["error"]


def test_unknown_api_paths_are_json_404(http: httpx.Client) -> None:
    assert "error" in _get(http, "/api/nothing", 404)


# -- live -----------------------------------------------------------------------------------------


class Stream:
    """An SSE response read by a thread on a plain socket of its own: ``messages`` gets ``(event,
    data)`` and ``("comment", line)``; ``close()`` closes the socket (the client leaving)."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str] | None = None) -> None:
        self.messages: queue.Queue[tuple[str, Any]] = queue.Queue()
        url = httpx.URL(base_url)
        assert url.host == "127.0.0.1" and url.port is not None
        self._sock = socket.create_connection((url.host, url.port), timeout=20)
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
        self._file = self._sock.makefile("rb")
        status_line = self._file.readline().decode()
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        while (line := self._file.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        assert self.status == 200, status_line
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        kind = ""
        with contextlib.suppress(OSError, ValueError):
            # Chunk-size lines of the chunked body are skipped: each message is one whole chunk.
            for raw in self._file:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.messages.put((kind, orjson.loads(line[6:])))
                elif line.startswith(":"):
                    self.messages.put(("comment", line))

    def next(self, kind: str, timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got, data = self.messages.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if got == kind:
                return data
        raise AssertionError(f"no {kind!r} message within {timeout} s")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._file.close()
        self._sock.close()
        self._thread.join(10)


_WRITER = """
import sys, time, orjson
from tracer.store import TraceStore
store, session, parent, event_id = sys.argv[1:5]
now = int(time.time() * 1000)
event = {"event_id": event_id, "session_id": session, "parent_id": parent, "event_type": "tool",
         "event_name": "late_tool", "start_time": now, "end_time": now + 3, "duration": 3.0,
         "inputs": {"q": "<b>late</b>"}, "outputs": {}, "metadata": {}, "config": {}}
with TraceStore(store) as s:
    s.write([(event, orjson.dumps(event).decode())], {session: {"session_id": session}})
"""


def _write_from_another_process(store: Path, session: str, parent: str) -> str:
    event_id = str(uuid.uuid4())
    subprocess.run(
        [sys.executable, "-c", _WRITER, str(store), session, parent, event_id],
        check=True,
        timeout=60,
        env=clean_env(),
    )
    return event_id


def test_the_stream_delivers_events_another_process_writes(
    traced: tuple[Path, dict[str, str]], start_ui: Any, tmp_path: Path, ids: dict[str, str]
) -> None:
    store = copy_store(traced[0], tmp_path)
    ui = start_ui(store)
    session = ids["support-0"]
    with httpx.Client(base_url=ui.url, timeout=20) as client:
        root = _get(client, f"/api/sessions/{session}/events")["events"][0]
        before = _get(client, f"/api/sessions/{session}/events", offset=1)["events"]  # a later page: cached order
        assert len(before) == 4
        listing = Stream(ui.url, "/api/stream")
        watching = Stream(ui.url, f"/api/stream?session={session}")
        assert listing.headers["content-type"].startswith("text/event-stream")
        listing.next("comment")  # the stream is open and polling
        watching.next("comment")
        new_id = _write_from_another_process(store, session, root["event_id"])
        changed = listing.next("sessions")
        assert changed["changed"] == [session] and changed["max_seq"] > 0
        rows = watching.next("events")
        assert [row["event_id"] for row in rows["events"]] == [new_id]
        assert rows["events"][0]["depth"] == 1 and rows["events"][0]["event_name"] == "late_tool"
        assert rows["max_seq"] == changed["max_seq"]
        now_session = _get(client, f"/api/sessions/{session}")
        assert now_session["events"] == 6 and now_session["live"] is True  # it changed just now
        after = _get(client, f"/api/sessions/{session}/events", offset=1)  # the cached order is stale now
        assert after["total"] == 6 and new_id in [row["event_id"] for row in after["events"]]
        # From an arrival number: what came after it, at once.
        replay = Stream(ui.url, f"/api/stream?session={session}&after={rows['max_seq'] - 1}")
        assert [row["event_id"] for row in replay.next("events")["events"]] == [new_id]
        assert _get(client, "/api/stream", 404, session="nope")["error"] == "unknown session"
        for stream in (listing, watching, replay):
            stream.close()


# -- auth -----------------------------------------------------------------------------------------


def test_a_token_guards_pages_and_api(traced: tuple[Path, dict[str, str]], start_ui: Any, ids: dict[str, str]) -> None:
    ui = start_ui(traced[0], "--api-key", "s3cret")
    assert ui.printed.endswith("/#token=s3cret")
    with httpx.Client(base_url=ui.url, timeout=20) as anonymous:
        for path in (
            "/api/info",
            "/api/sessions",
            f"/api/sessions/{ids['support-0']}",
            "/api/search?q=x",
            "/api/nothing",
        ):
            assert _get(anonymous, path, 401) == {"error": "token required"}
        assert anonymous.get("/").status_code == 401  # the page, showing its login form
        assert anonymous.get(f"/sessions/{ids['support-0']}").status_code == 401
        assert anonymous.get("/sessions/nope").status_code == 401  # says nothing about ids
        assert anonymous.post("/api/login", json={"token": "wrong"}).status_code == 401
        assert anonymous.post("/api/login", content=b"not json").status_code == 401
    with httpx.Client(base_url=ui.url, timeout=20, headers={"Authorization": "Bearer s3cret"}) as bearer:
        assert _get(bearer, "/api/info")["auth"] is True
        assert bearer.get("/").status_code == 200
    with httpx.Client(base_url=ui.url, timeout=20, headers={"Authorization": "Bearer s3cre"}) as wrong:
        assert _get(wrong, "/api/info", 401)["error"] == "token required"
    with httpx.Client(base_url=ui.url, timeout=20) as browser:
        login = browser.post("/api/login", json={"token": "s3cret"})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"]
        assert cookie.startswith("tracer_token=s3cret") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert _get(browser, "/api/sessions")["total"] == 4
        assert browser.get(f"/sessions/{ids['support-0']}").status_code == 200
    with httpx.Client(base_url=ui.url, timeout=20) as form:
        posted = form.post("/api/login", data={"token": "s3cret"})
        assert posted.status_code == 303 and posted.headers["location"] == "/"
        assert _get(form, "/api/info")["auth"] is True


def test_off_loopback_a_random_token_is_made() -> None:
    from tracer.cli._app import _viewer_token

    assert _viewer_token("127.0.0.1", None) is None and _viewer_token("localhost", None) is None
    made = _viewer_token("0.0.0.0", None)
    assert made is not None and len(made) >= 40 and made != _viewer_token("0.0.0.0", None)
    assert _viewer_token("0.0.0.0", "key") == "key" and _viewer_token("127.0.0.1", "key") == "key"


# -- start ----------------------------------------------------------------------------------------


def test_a_missing_or_foreign_store_is_a_one_line_error(tmp_path: Path) -> None:
    missing = run_cli("ui", "--port", "0", "--store", str(tmp_path / "none.db"))
    assert missing.returncode == 1 and missing.stderr.startswith("tracer: error: no trace store at")
    assert len(missing.stderr.strip().splitlines()) == 1
    foreign = tmp_path / "app.db"
    import sqlite3

    with contextlib.closing(sqlite3.connect(foreign)) as db, db:
        db.execute("CREATE TABLE users (id INTEGER)")
    before = foreign.read_bytes()
    refused = run_cli("ui", "--port", "0", "--store", str(foreign))
    assert refused.returncode == 1 and "not a tracer store" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert foreign.read_bytes() == before


def test_an_unwritable_search_index_falls_back_to_the_scan(traced: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory would be")
    ui = Ui(traced[0], cache=blocked)
    try:
        with httpx.Client(base_url=ui.url, timeout=20) as client:
            found = _get(client, "/api/search", q="refund")
            assert found["engine"] == "scan" and len(found["results"]) == 9
            assert _get(client, "/api/info")["engine"] == "scan"
    finally:
        assert ui.stop() == 0
