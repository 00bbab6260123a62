"""A real, local fake of the HoneyHive events API for tests (stdlib HTTP server on 127.0.0.1, port 0).

Implements ``POST /events/batch``, ``PUT /events`` and ``POST /events``: checks the bearer key,
decompresses gzip, validates bodies against the wire schema, records what it accepted and answers
like HoneyHive. Faults are programmed in a queue: each request takes the first queued fault that
matches its method and path (``collector.fail(503, retry_after="1")``, ``.reset()``, ``.hang()``…).

Like HoneyHive, a batch with an event whose bucket is not an object is refused with a 400 naming it
(``events[N].inputs must be an object``), and one holding an integer outside the signed 64-bit range
fails with a 500 (its storage cannot hold it). ``latency`` delays every answer; ``max_concurrent``
is the most requests it was handling at once.

Use the ``collector`` fixture (``from tests.collector import collector`` in a conftest).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gzip
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["Collector", "Fault", "Request", "collector"]

EVENT_TYPES = frozenset({"model", "tool", "chain"})
BUCKETS = ("config", "inputs", "outputs", "metadata", "feedback", "metrics", "user_properties")
PUT_FIELDS = frozenset(
    {"event_id", "config", "outputs", "metadata", "feedback", "metrics", "user_properties", "duration", "end_time"}
)
SESSION_FIELDS = frozenset(
    {
        "session_name",
        "source",
        "session_id",
        "config",
        "inputs",
        "outputs",
        "error",
        "user_properties",
        "metrics",
        "feedback",
        "metadata",
    }
)


@dataclasses.dataclass
class Fault:
    """One programmed misbehaviour, used by the next matching request.

    kinds: ``status`` (answer ``status`` with ``body``/``headers``), ``reset`` (close the connection
    without answering), ``slow`` (sleep ``delay`` s, then answer normally), ``hang`` (no answer until
    ``release()`` or ``delay`` s, then close), ``too_large`` (413), ``partial`` (500 "Events partially
    created": the last ``fail`` events of the batch are not created).
    """

    kind: str
    status: int = 500
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    fail: int = 1
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or self.path == path)


@dataclasses.dataclass
class Request:
    """A request as received, and what became of it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes  # the body as sent (possibly gzip)
    time: float  # time.monotonic() on arrival
    peer: str = ""  # the client's address:port (one per connection)
    body: Any = None  # the decoded JSON
    status: int | None = None  # None: no answer (reset / hang)
    fault: str | None = None
    answered: float | None = None  # time.monotonic() once the answer was written


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a client opening dozens of connections at once
    # (the sender pool's test with 100 threads) saw some SYNs dropped and retried a second later,
    # past its timeouts. Real servers listen with a backlog of 128 or more.
    request_queue_size = 256
    collector: Collector

    def __init__(self, collector: Collector, port: int = 0) -> None:
        self.collector = collector
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is expected here (timeouts, resets)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed by Collector.close()
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        collector = self.server.collector
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        request = Request(self.command, path, {k.lower(): v for k, v in self.headers.items()}, raw, time.monotonic())
        with collector.lock:
            collector.requests.append(request)
            collector.concurrent += 1
            collector.max_concurrent = max(collector.max_concurrent, collector.concurrent)
        try:
            if collector.latency:
                time.sleep(collector.latency)
            self._answer(collector, request, path)
        finally:
            with collector.lock:
                collector.concurrent -= 1

    def _answer(self, collector: Collector, request: Request, path: str) -> None:
        outage = collector.outage_status
        if outage is not None:  # a whole outage: every request gets this status until recover()
            request.fault = "outage"
            self._reply(request, outage, {"message": f"injected outage: HTTP {outage}"})
            return
        fault = collector._take_fault(self.command, path)
        if fault is not None:
            request.fault = fault.kind
            if fault.kind == "reset":
                self._reset()
                return
            if fault.kind == "hang":
                collector._released.wait(fault.delay)
                self._reset()
                return
            if fault.kind == "slow":
                collector._released.wait(fault.delay)
            elif fault.kind == "status":
                body = fault.body if fault.body is not None else {"message": f"injected HTTP {fault.status}"}
                self._reply(request, fault.status, body, fault.headers)
                return
        status, payload = collector._process(request, fault)
        self._reply(request, status, payload)

    def _reply(self, request: Request, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        request.answered = time.monotonic()

    def _reset(self) -> None:
        """Drop the connection without an answer (RST rather than FIN where the OS allows)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class ValidationError(Exception):
    pass


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValidationError(message)


def validate_event(event: Any, where: str = "event") -> None:
    """The wire contract of one event (HoneyHive 1.0.1 required fields plus ours)."""
    _require(isinstance(event, dict), f"{where} must be an object")
    for name in ("project", "source", "event_name", "event_id", "session_id", "parent_id"):
        _require(isinstance(event.get(name), str) and bool(event[name]), f"{where}.{name} must be a non-empty string")
    _require(event.get("event_type") in EVENT_TYPES, f"{where}.event_type must be model, tool or chain")
    for name in BUCKETS:
        _require(isinstance(event.get(name), dict), f"{where}.{name} must be an object")
    for name in ("start_time", "end_time"):
        value = event.get(name)
        _require(isinstance(value, int) and not isinstance(value, bool), f"{where}.{name} must be an integer (ms)")
    duration = event.get("duration")
    _require(
        isinstance(duration, (int, float)) and not isinstance(duration, bool), f"{where}.duration must be a number"
    )
    _require(event["end_time"] >= event["start_time"], f"{where}.end_time is before start_time")
    children = event.get("children_ids", [])
    _require(isinstance(children, list) and all(isinstance(c, str) for c in children), f"{where}.children_ids")
    _require(event.get("error") is None or isinstance(event["error"], str), f"{where}.error must be a string")


def _has_int_beyond_int64(value: Any) -> bool:
    """An integer HoneyHive's storage cannot hold (it fails the whole batch with a 500)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return any(_has_int_beyond_int64(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_int_beyond_int64(item) for item in value)
    return False


class Collector:
    """The fake server. Read ``events``, ``updates``, ``sessions``, ``requests``, ``invalid``."""

    def __init__(self, api_key: str = "k", port: int = 0) -> None:
        self.api_key = api_key
        self.outage_status: int | None = None  # set by outage(): every request answers it
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.events: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.started_sessions: list[dict[str, Any]] = []
        # True: a PUT /events for an id the server has never seen answers 404.
        self.strict_updates = False
        self.invalid: list[str] = []  # validation errors answered with 400
        self.faults: collections.deque[Fault] = collections.deque()
        self.max_events_per_request: int | None = None  # more events in one batch → 413
        self.max_body_bytes: int | None = None  # larger decompressed body → 413
        self.accept_gzip = True  # False → 415 on a gzip body
        self.latency = 0.0  # seconds every request waits before it is handled (a far server)
        self.concurrent = 0  # requests being handled now
        self.max_concurrent = 0  # the most at once so far
        self._released = threading.Event()
        self._server = _Server(self, port)
        self.port = int(self._server.server_address[1])
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-honeyhive", daemon=True
        )
        self._thread.start()

    # -- programming faults ---------------------------------------------------------------------

    def add(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def fail(
        self,
        status: int = 500,
        times: int = 1,
        *,
        retry_after: str | None = None,
        body: Any = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.add(*(Fault("status", status, body, headers, method=method, path=path) for _ in range(times)))

    def reset(self, times: int = 1, *, method: str | None = None, path: str | None = None) -> None:
        self.add(*(Fault("reset", method=method, path=path) for _ in range(times)))

    def slow(self, seconds: float, times: int = 1) -> None:
        self._released.clear()
        self.add(*(Fault("slow", delay=seconds) for _ in range(times)))

    def hang(self, times: int = 1, seconds: float = 60.0) -> None:
        """The next *times* requests get no answer until ``release()`` (or *seconds*)."""
        self._released.clear()
        self.add(*(Fault("hang", delay=seconds) for _ in range(times)))

    def too_large(self, times: int = 1) -> None:
        self.add(*(Fault("too_large", path="/events/batch") for _ in range(times)))

    def partial(self, fail: int = 1, times: int = 1) -> None:
        self.add(*(Fault("partial", fail=fail, path="/events/batch") for _ in range(times)))

    def outage(self, status: int = 503) -> None:
        """Answer every request with *status* (no fault queue involved) until ``recover()``."""
        self.outage_status = status

    def recover(self) -> None:
        self.outage_status = None

    def release(self) -> None:
        """End every hang (and slow answer) now, and drop the faults still queued."""
        with self.lock:
            self.faults.clear()
        self._released.set()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.matches(method, path):
                    del self.faults[index]
                    return fault
        return None

    # -- reading --------------------------------------------------------------------------------

    def accepted_ids(self) -> set[str]:
        with self.lock:
            return {event["event_id"] for event in self.events}

    def event_ids(self) -> list[str]:
        with self.lock:
            return [event["event_id"] for event in self.events]

    def by_name(self, event_name: str) -> dict[str, Any]:
        with self.lock:
            found = [event for event in self.events if event["event_name"] == event_name]
        assert len(found) == 1, f"expected one {event_name!r}, got {len(found)}"
        return found[0]

    def requests_to(self, method: str, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def wait_for_events(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return True
            time.sleep(0.01)
        return False

    # -- serving --------------------------------------------------------------------------------

    def _process(self, request: Request, fault: Fault | None) -> tuple[int, Any]:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            return 401, {"message": "Invalid API key", "errorCode": "UNAUTHORIZED"}
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 415, {"message": "Content-Type must be application/json"}
        data = request.raw
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding == "gzip":
            if not self.accept_gzip:
                return 415, {"message": "Unsupported Content-Encoding: gzip"}
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                return self._invalid(f"bad gzip body: {exc}")
        elif encoding != "identity":
            return 415, {"message": f"Unsupported Content-Encoding: {encoding}"}
        try:
            body = json.loads(data)
        except ValueError as exc:
            return self._invalid(f"invalid JSON: {exc}")
        request.body = body
        if self.max_body_bytes is not None and len(data) > self.max_body_bytes:
            return 413, {"message": "Request entity too large"}
        route = (request.method, request.path)
        try:
            if route == ("POST", "/events/batch"):
                return self._batch(body, fault)
            if route == ("PUT", "/events"):
                return self._update(body)
            if route == ("POST", "/events"):
                return self._single(body)
            if route == ("POST", "/session/start"):
                return self._session_start(body)
        except ValidationError as exc:
            return self._invalid(str(exc))
        return 404, {"message": f"no route {request.method} {request.path}"}

    def _invalid(self, message: str) -> tuple[int, Any]:
        with self.lock:
            self.invalid.append(message)
        return 400, {"message": message, "errorCode": "BAD_REQUEST"}

    def _batch(self, body: Any, fault: Fault | None) -> tuple[int, Any]:
        _require(isinstance(body, dict), "body must be an object")
        events = body.get("events")
        _require(isinstance(events, list) and bool(events), "events must be a non-empty array")
        single = body.get("is_single_session", False)
        _require(isinstance(single, bool), "is_single_session must be a boolean")
        props = body.get("session_properties")
        _require(props is None or isinstance(props, dict), "session_properties must be an object")
        if props is not None:
            unknown = set(props) - SESSION_FIELDS
            _require(not unknown, f"unknown session_properties {sorted(unknown)}")
        for index, event in enumerate(events):
            validate_event(event, f"events[{index}]")
        if any(_has_int_beyond_int64(event) for event in events):
            return 500, {"message": "Internal server error", "errorCode": "INTERNAL_SERVER_ERROR"}
        if single:
            sessions = {event["session_id"] for event in events}
            _require(len(sessions) == 1, f"is_single_session with events of {len(sessions)} sessions")
            _require(props is None or props.get("session_id") in sessions, "session_properties.session_id mismatch")
        if (fault is not None and fault.kind == "too_large") or (
            self.max_events_per_request is not None and len(events) > self.max_events_per_request
        ):
            return 413, {"message": "Request entity too large"}
        created = events
        errors: list[str] = []
        if fault is not None and fault.kind == "partial":
            keep = max(len(events) - fault.fail, 0)
            created = events[:keep]
            errors = ["Could not create event due to missing inputs"] * (len(events) - keep)
        with self.lock:
            self.events.extend(created)
            if props is not None:
                sid = props.get("session_id") or events[0]["session_id"]
                self.sessions.setdefault(sid, {}).update(props)
        ids = [event["event_id"] for event in created]
        if errors:
            return 500, {"event_ids": ids, "errors": errors, "success": True}
        return 200, {"event_ids": ids, "session_id": events[0]["session_id"], "success": True}

    def _update(self, body: Any) -> tuple[int, Any]:
        _require(isinstance(body, dict), "body must be an object")
        _require(isinstance(body.get("event_id"), str) and bool(body["event_id"]), "event_id is required")
        _require("inputs" not in body, "inputs cannot be updated")
        unknown = set(body) - PUT_FIELDS
        _require(not unknown, f"unknown fields {sorted(unknown)}")
        for name in ("config", "outputs", "metadata", "feedback", "metrics", "user_properties"):
            if name in body:
                _require(isinstance(body[name], dict), f"{name} must be an object")
        with self.lock:
            known = body["event_id"] in self.sessions or any(e["event_id"] == body["event_id"] for e in self.events)
            if self.strict_updates and not known:  # the pessimistic reading of HoneyHive: nothing to update
                return 404, {"message": f"event {body['event_id']} not found"}
            self.updates.append(body)
        return 200, {"success": True}

    def _session_start(self, body: Any) -> tuple[int, Any]:
        _require(isinstance(body, dict) and isinstance(body.get("session"), dict), 'body must be {"session": {...}}')
        session = body["session"]
        for name in ("project", "session_name", "source"):
            _require(isinstance(session.get(name), str) and bool(session[name]), f"session.{name} is required")
        unknown = set(session) - SESSION_FIELDS - {"project"}
        _require(not unknown, f"unknown session fields {sorted(unknown)}")
        sid = session.get("session_id")
        _require(isinstance(sid, str) and bool(sid), "session.session_id must be a string")
        with self.lock:
            self.started_sessions.append(session)
            self.sessions.setdefault(sid, {}).update(session)
        return 200, {"session_id": sid}

    def _single(self, body: Any) -> tuple[int, Any]:
        _require(isinstance(body, dict) and isinstance(body.get("event"), dict), 'body must be {"event": {...}}')
        validate_event(body["event"])
        with self.lock:
            self.events.append(body["event"])
        return 200, {"event_id": body["event"]["event_id"], "success": True}

    def close(self) -> None:
        """Stop serving; end hangs and idle keep-alive connections."""
        self.release()
        self._server.shutdown()
        self._server.server_close()
        with self._server.connections_lock:
            connections = list(self._server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            with self._server.connections_lock:
                if not self._server.connections:
                    break
            time.sleep(0.01)
        self._thread.join(2.0)


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A fresh fake HoneyHive on 127.0.0.1; ``collector.url`` is its base URL, the API key is ``"k"``."""
    server = Collector()
    try:
        yield server
    finally:
        server.close()
