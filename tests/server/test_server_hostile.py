"""No client can break the collector: hostile requests against a real ``tracer serve`` subprocess.

Out-of-range numbers, gzip member floods, cross-site writes, foreign ``Host`` headers and idle
connections; what held before (413 for bombs, the API key, idempotent retries) is in test_server.py.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tracer.store import TraceStore

from ..processes import Server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

JSON = {"Content-Type": "application/json"}
BIG = "123456789012345678901234567890"  # 30 digits: beyond any 64-bit integer


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A collector without an API key (as `tracer serve` starts by default), 1 MiB body limit."""
    running = Server(tmp_path_factory.mktemp("hostile") / "c.db", "--max-body-bytes", str(1024 * 1024))
    try:
        yield running
    finally:
        assert running.stop() == 0


@pytest.fixture(scope="module")
def client(open_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open_server.url, timeout=10) as http:
        yield http


def tool(sid: str, **fields: Any) -> dict[str, Any]:
    return {"event_type": "tool", "event_name": "t", "session_id": sid, "event_id": str(uuid.uuid4()), **fields}


def post(client: httpx.Client, path: str, body: bytes | str, **headers: str) -> httpx.Response:
    return client.post(path, content=body, headers={**JSON, **headers})


def stored(server: Server, sid: str) -> dict[str, dict[str, Any]]:
    with TraceStore(server.store) as store:
        return {event["event_id"]: event for event in store.session_events(sid)}


# -- numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text", "field"),
    [
        ("/events", '{"event": {"event_type": "tool", "start_time": 1e300}}', "event.start_time is out of range"),
        ("/events", '{"event": {"event_type": "tool", "end_time": 1e19}}', "event.end_time is out of range"),
        ("/events", '{"event": {"event_type": "tool", "duration": -1e300}}', "event.duration is out of range"),
        (
            "/events/batch",
            '{"events": [{"event_type": "tool"}, {"event_type": "tool", "start_time": 1e300}]}',
            "events[1].start_time is out of range",
        ),
        ("/events", '{"event": {"event_type": "tool", "end_time": ' + BIG + "}}", "event.end_time must be a number"),
        ("/session/start", '{"session": {"start_time": 1e300}}', "session.start_time is out of range"),
    ],
)
def test_out_of_range_times_get_400_naming_the_field(client: httpx.Client, path: str, text: str, field: str) -> None:
    answer = post(client, path, text)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["message"]


def test_out_of_range_updates_get_400(client: httpx.Client) -> None:
    for body in ('{"event_id": "x", "end_time": 1e19}', '{"event_id": "x", "duration": 1e300}'):
        answer = client.put("/events", content=body, headers=JSON)
        assert answer.status_code == 400 and "out of range" in answer.json()["message"]


def test_huge_numbers_inside_buckets_are_stored_losslessly(open_server: Server, client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    event = tool(sid, event_type="model")
    text = orjson.dumps({"events": [event]}).decode()
    # Numbers orjson would turn into an inexact float (30 digits) or refuse (1e400): kept as text.
    text = text.replace('"event_type":"model"', f'"event_type":"model","metadata":{{"total_tokens":{BIG},"x":1e400}}')
    answer = post(client, "/events/batch", text)
    assert answer.status_code == 200, answer.text
    [kept] = stored(open_server, sid).values()
    assert kept["metadata"] == {"total_tokens": BIG, "x": "1e400"}
    with TraceStore(open_server.store) as store:
        summary = store.session(sid)
    assert summary is not None and summary.total_tokens == 0  # not a count SQLite can hold


def test_a_stored_update_with_a_huge_number_never_poisons_its_event(open_server: Server, client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    late = tool(sid, event_type="model", event_name="late")
    # The update comes first (kept pending), with counts beyond 64 bits; then a batch of 10 good
    # events and the one the update names. Before: 500 for this batch and every retry of it.
    update = f'{{"event_id": "{late["event_id"]}", "metadata": {{"total_tokens": {BIG}, "prompt_tokens": 1e300}}}}'
    assert client.put("/events", content=update, headers=JSON).status_code == 200
    good = [tool(sid, event_name=f"good{i}") for i in range(10)]
    answer = post(client, "/events/batch", orjson.dumps({"events": [*good, late]}))
    assert answer.status_code == 200, answer.text
    events = stored(open_server, sid)
    assert len(events) == 11
    assert events[late["event_id"]]["metadata"] == {"total_tokens": BIG, "prompt_tokens": 1e300}
    # An update with such a number for an event already stored is merged the same way.
    again = f'{{"event_id": "{good[0]["event_id"]}", "metadata": {{"completion_tokens": {BIG}}}}}'
    assert client.put("/events", content=again, headers=JSON).status_code == 200
    assert stored(open_server, sid)[good[0]["event_id"]]["metadata"] == {"completion_tokens": BIG}


def test_an_unappliable_stored_update_is_set_aside(tmp_path: Path) -> None:
    """An update row a store cannot merge (written by an older version, or damaged) fails neither
    the batch that brings its event nor later ones; the other updates still apply."""
    path = tmp_path / "old.db"
    target, other = str(uuid.uuid4()), str(uuid.uuid4())
    TraceStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO updates (event_id, body, applied, stored_at) VALUES (?, 'not json {', 0, 0)", (target,))
        body = orjson.dumps({"event_id": other, "metadata": {"late": True}}).decode()
        db.execute("INSERT INTO updates (event_id, body, applied, stored_at) VALUES (?, ?, 0, 0)", (other, body))
    server = Server(path)
    try:
        sid = str(uuid.uuid4())
        with httpx.Client(base_url=server.url, timeout=10) as http:
            events = [tool(sid, event_id=target), tool(sid, event_id=other), tool(sid)]
            for _ in range(2):  # and its retry
                answer = post(http, "/events/batch", orjson.dumps({"events": events}))
                assert answer.status_code == 200, answer.text
        kept = stored(server, sid)
        assert len(kept) == 3 and kept[other]["metadata"] == {"late": True}
    finally:
        assert server.stop() == 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        states = dict(db.execute("SELECT event_id, applied FROM updates").fetchall())
    assert states == {target: 2, other: 1}  # 2: cannot be applied, set aside


# -- gzip ---------------------------------------------------------------------------------------------


def test_a_flood_of_empty_gzip_members_gets_400(client: httpx.Client) -> None:
    empty = gzip.compress(b"")
    flood = empty * ((1024 * 1024 - 100) // len(empty))  # under the 1 MiB body limit: ~50,000 members
    answer = post(client, "/events", flood, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 400 and "members" in answer.json()["message"]
    assert client.get("/health").status_code == 200


def test_a_few_gzip_members_and_padding_are_accepted(open_server: Server, client: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    text = orjson.dumps({"events": [tool(sid), tool(sid)]})
    members = gzip.compress(text[:10]) + gzip.compress(text[10:20]) + b"\0" * 8 + gzip.compress(text[20:]) + b"\0"
    answer = post(client, "/events/batch", members, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert len(stored(open_server, sid)) == 2


# -- cross-site requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_writes_need_a_json_content_type(open_server: Server, client: httpx.Client, content_type: str | None) -> None:
    sid = str(uuid.uuid4())
    body = orjson.dumps({"event": tool(sid)})
    headers = {"Origin": "https://evil.example"} | ({"Content-Type": content_type} if content_type else {})
    answer = client.post("/events", content=body, headers=headers)
    assert answer.status_code == 415 and answer.json()["errorCode"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "application/json" in answer.json()["message"]
    assert client.put("/events", content=b'{"event_id": "x"}', headers=headers).status_code == 415
    assert stored(open_server, sid) == {}
    # With a JSON type (which a browser sends cross-site only after a CORS preflight): stored.
    ok = client.post("/events", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200 and len(stored(open_server, sid)) == 1


def test_no_cors_headers_are_sent(client: httpx.Client) -> None:
    preflight = client.options(
        "/events",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code in (400, 403, 405)
    listed = client.get("/events", headers={"Origin": "https://evil.example"})
    assert listed.status_code == 200
    for answer in (preflight, listed):
        assert not [name for name in answer.headers if name.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 403),
        ("evil.example:{port}", 403),
        ("127.0.0.1.evil.example", 403),
        ("10.0.0.8:{port}", 403),
        ("localhost:{port}", 200),
        ("LOCALHOST.", 200),
        ("app.localhost", 200),
        ("127.0.0.1:{port}", 200),
        ("127.0.0.2", 200),  # loopback, bound to loopback
        ("[::1]:{port}", 200),
    ],
)
def test_host_is_checked_against_dns_rebinding(open_server: Server, host: str, status: int) -> None:
    port = open_server.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=open_server.url, timeout=10) as http:
        for path in ("/events", "/health"):
            answer = http.get(path, headers={"Host": host.format(port=port)})
            assert answer.status_code == status, (path, answer.text)
            if status == 403:
                assert answer.json()["errorCode"] == "FORBIDDEN" and "--allow-host" in answer.json()["message"]


def test_allowed_hosts_are_configurable(tmp_path: Path) -> None:
    server = Server(tmp_path / "c.db", "--allow-host", "tracer.internal")
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/events", headers={"Host": "tracer.internal:80"}).status_code == 200
            assert http.get("/events", headers={"Host": "evil.example"}).status_code == 403
    finally:
        assert server.stop() == 0


# -- connections ----------------------------------------------------------------------------------------


def test_idle_half_requests_do_not_lock_others_out(tmp_path: Path) -> None:
    """300 connections holding half a request, under a 256-descriptor limit: the collector closes the
    stalled ones to make room, and legitimate requests are answered."""
    server = Server(tmp_path / "c.db", max_descriptors=256)
    address = server.url.removeprefix("http://").rsplit(":", 1)
    stalled: list[socket.socket] = []
    try:
        for index in range(300):
            sock = socket.create_connection((address[0], int(address[1])), timeout=10)
            if index % 2:  # half the headers
                sock.sendall(b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
            else:  # the headers, and part of the body
                sock.sendall(
                    b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 1000\r\n\r\n{"event": '
                )
            stalled.append(sock)
        sid = str(uuid.uuid4())
        for _ in range(20):  # each on a new connection
            with httpx.Client(base_url=server.url, timeout=10) as http:
                answer = http.post("/events", content=orjson.dumps({"event": tool(sid)}), headers=JSON)
                assert answer.status_code == 200, answer.text
        assert len(stored(server, sid)) == 20
    finally:
        for sock in stalled:
            sock.close()
        assert server.stop() == 0


def test_slow_headers_are_cut_off_and_slow_bodies_get_408(tmp_path: Path) -> None:
    server = Server(tmp_path / "c.db", "--header-timeout", "0.5", "--body-timeout", "0.5")
    address = server.url.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((address[0], int(address[1])), timeout=10) as slow_headers:
            slow_headers.sendall(b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            assert slow_headers.recv(1000) == b""  # closed by the collector, not by the 10 s timeout here
        with socket.create_connection((address[0], int(address[1])), timeout=10) as slow_body:
            slow_body.sendall(
                b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            answer = b""
            while b"REQUEST_TIMEOUT" not in answer and (chunk := slow_body.recv(4000)):
                answer += chunk  # the head and the body may come in separate segments
        assert answer.startswith(b"HTTP/1.1 408") and b"REQUEST_TIMEOUT" in answer
        with httpx.Client(base_url=server.url, timeout=10) as http:  # a prompt client is unaffected
            assert http.get("/health").status_code == 200
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("bound", "host", "allowed"),
    [
        ("0.0.0.0", "192.168.1.20:8787", True),  # all interfaces: any address literal
        ("0.0.0.0", "my-laptop:8787", False),  # but no name that was not allowed
        ("::", "[fe80::1]", True),
        ("192.168.1.20", "192.168.1.20", True),
        ("192.168.1.20", "127.0.0.1", False),
        ("127.0.0.1", "[::1]:8787", True),
        ("localhost", "127.0.0.1", True),
    ],
)
def test_host_policy(bound: str, host: str, allowed: bool) -> None:
    from tracer.server._guard import HostPolicy

    assert HostPolicy(bound).allows(host) is allowed
    assert HostPolicy(bound, ["*"]).allows(host)
    assert HostPolicy(bound, ["My-Laptop"]).allows("my-laptop:1")
    assert HostPolicy(bound).allows(None)  # HTTP/1.0 without Host


def test_inflating_is_capped_in_cpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU cap, with a cap of zero (a real body cannot reach 1 s within the size caps)."""
    from tracer.server import _body

    data = gzip.compress(b"x" * 200_000)
    assert _body.decompress(data, "gzip", 1_000_000) == b"x" * 200_000
    monkeypatch.setattr(_body, "MAX_INFLATE_CPU_SECONDS", 0.0)
    with pytest.raises(_body.ApiError) as refused:
        _body.decompress(data, "gzip", 1_000_000)
    assert refused.value.status == 413 and "too long to decompress" in refused.value.message


def test_the_connection_guard_knows_the_installed_uvicorn() -> None:
    # The guard reads uvicorn's private protocol attributes: a uvicorn release that renames them
    # fails here (CI installs the newest), while users of it get the fallback below.
    from tracer.server._protocol import guarded_protocol, knows_uvicorn

    assert knows_uvicorn()
    assert not isinstance(guarded_protocol(10, 1.0), str)


def test_a_uvicorn_the_guard_does_not_know_is_served_without_it(caplog: pytest.LogCaptureFixture) -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

    from tracer.server import _protocol

    class Renamed(H11Protocol):  # as if a release kept the request cycle under another name
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.current_cycle = None

    class NoInit(H11Protocol):  # no __init__ of its own to read
        pass

    assert not _protocol.knows_uvicorn(Renamed, RequestResponseCycle)
    assert not _protocol.knows_uvicorn(NoInit, RequestResponseCycle)
    assert not _protocol.knows_uvicorn(H11Protocol, Renamed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_protocol, "knows_uvicorn", lambda: False)
        with caplog.at_level("WARNING", logger="tracer"):
            assert _protocol.guarded_protocol(10, 1.0) == "h11"  # uvicorn's own protocol
    assert "without its header timeout" in caplog.text
