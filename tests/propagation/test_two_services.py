"""Two real services (two processes on 127.0.0.1, Starlette + the ASGI middleware, the first calling
the second with httpx inside a span, propagate_http on): one request makes ONE session tree in
the shared local store and ONE trace in an OTLP receiver."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..otlp_receiver import OTLPReceiver, otlp_receiver
from ..processes import clean_env

SERVICE = Path(__file__).with_name("service.py")


class Service:
    def __init__(self, name: str, store: Path, receiver: OTLPReceiver, next_service: str = "") -> None:
        env = clean_env(
            TRACER_STORE=str(store),
            TRACER_PROPAGATE_HTTP="true",
            TRACER_SOURCE=f"service-{name}",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.endpoint,
            OTEL_SERVICE_NAME=f"service-{name}",
            NEXT_SERVICE=next_service,
        )
        self.errors = store.with_name(f"service-{name}.stderr")
        with self.errors.open("w") as errors:  # a file: a full pipe would block the service
            self.process = subprocess.Popen(
                [sys.executable, str(SERVICE)], stdout=subprocess.PIPE, stderr=errors, text=True, env=env
            )
        try:
            assert self.process.stdout is not None
            port = self.process.stdout.readline().strip()
            assert port, self.errors.read_text()
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:  # uvicorn accepts on the socket once its loop runs (no request: it would be traced)
                try:
                    socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline and self.process.poll() is None, self.errors.read_text()
                    time.sleep(0.05)
        except BaseException:
            self.process.kill()
            self.process.wait(10)
            raise

    def stop(self) -> str:
        self.process.terminate()  # uvicorn shuts down on SIGTERM; the exit hook drains the queue
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.errors.read_text()


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    yield from otlp_receiver()


def _rows(store: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(store)
    try:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT event_id, session_id, parent_id, event_name FROM events").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def test_a_request_through_two_services_is_one_session_tree_and_one_trace(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    store = tmp_path / "shared.db"
    service_b = Service("b", store, receiver)
    try:
        service_a = Service("a", store, receiver, next_service=service_b.url)
    except BaseException:
        service_b.stop()
        raise
    try:
        assert httpx.get(service_a.url + "/ask", params={"n": 21}, timeout=20).json() == {"from_b": {"answer": 42}}
        names = {"GET /ask", "ask_b", "GET /answer/{n}", "think"}
        deadline = time.monotonic() + 20
        while {row["event_name"] for row in _rows(store)} != names or len(receiver.spans) < 4:
            assert time.monotonic() < deadline, ([tuple(row) for row in _rows(store)], len(receiver.spans))
            time.sleep(0.05)
    finally:
        errors = service_a.stop() + service_b.stop()
    assert "Traceback" not in errors, errors

    rows = {row["event_name"]: row for row in _rows(store)}
    assert len(_rows(store)) == 4
    session_id = rows["GET /ask"]["session_id"]
    assert {row["session_id"] for row in rows.values()} == {session_id}
    # The tree, across the process boundary: A's request > ask_b > B's request > think.
    assert rows["GET /ask"]["parent_id"] == session_id
    assert rows["ask_b"]["parent_id"] == rows["GET /ask"]["event_id"]
    assert rows["GET /answer/{n}"]["parent_id"] == rows["ask_b"]["event_id"]
    assert rows["think"]["parent_id"] == rows["GET /answer/{n}"]["event_id"]
    db = sqlite3.connect(store)
    try:  # one session, named by A (its route), from A's source: B took both from baggage
        assert db.execute("SELECT session_id, session_name, source FROM sessions").fetchall() == [
            (session_id, "/ask", "service-a")
        ]
    finally:
        db.close()

    # One trace in the OTLP receiver, the same tree by span ids.
    spans = {span.name: span for span in receiver.spans}
    assert len(receiver.spans) == 4
    assert {span.trace_id for span in receiver.spans} == {uuid.UUID(session_id).hex}
    assert spans["GET /ask"].parent_span_id == ""
    assert spans["ask_b"].parent_span_id == spans["GET /ask"].span_id
    assert spans["GET /answer/{n}"].parent_span_id == spans["ask_b"].span_id
    assert spans["think"].parent_span_id == spans["GET /answer/{n}"].span_id
    assert spans["GET /ask"].resource["service.name"] == "service-a"
    assert spans["GET /answer/{n}"].resource["service.name"] == "service-b"
