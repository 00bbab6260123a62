"""propagate_http: outgoing httpx (sync, async) and requests calls made inside a span carry the
trace headers, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid

import httpx
import pytest
import requests

import tracer
from tracer._otlp_mapping import span_id_for
from tracer.exporters import OTLPExporter

from .conftest import HeaderServer


def _is_wrapped() -> bool:
    wrapped = [
        type(owner.__dict__["send"]).__name__ == "FunctionWrapper"
        for owner in (httpx.Client, httpx.AsyncClient, requests.Session)
    ]
    assert len(set(wrapped)) == 1, wrapped  # all three, or none
    return wrapped[0]


def _sent_by(headers: dict[str, str], event: dict) -> None:
    assert headers["traceparent"] == f"00-{uuid.UUID(event['session_id']).hex}-{span_id_for(event['event_id'])}-01"
    assert headers["tracestate"] == "tracer=" + uuid.UUID(event["event_id"]).hex
    assert f"honeyhive.session_id={event['session_id']}" in headers["baggage"]


def test_off_by_default(header_server: HeaderServer) -> None:
    with tracer.testing.capture(), tracer.span("call"):
        httpx.get(header_server.url + "/a")
        requests.get(header_server.url + "/b", timeout=5)
    assert not _is_wrapped()
    assert all("traceparent" not in headers for _, _, headers in header_server.requests)


def test_httpx_sync_and_async_and_requests_carry_the_current_span(header_server: HeaderServer) -> None:
    url = header_server.url

    async def async_calls() -> None:
        async with httpx.AsyncClient() as client:
            await client.get(url + "/httpx-async")
            async with client.stream("GET", url + "/httpx-async-stream") as response:
                await response.aread()

    with tracer.testing.capture(propagate_http=True) as events:
        assert _is_wrapped()
        httpx.get(url + "/outside")
        with tracer.session("chat"), tracer.span("call"):
            httpx.get(url + "/httpx-get")
            with httpx.Client() as client:
                client.post(url + "/httpx-client", json={"q": 1})
            asyncio.run(async_calls())
            requests.get(url + "/requests-get", timeout=5)
            with requests.Session() as session:
                session.post(url + "/requests-session", data=b"x", timeout=5)
    assert not _is_wrapped()  # the capture's end restored propagate_http=False
    call = events.by_name("call")
    for path in (
        "/httpx-get",
        "/httpx-client",
        "/httpx-async",
        "/httpx-async-stream",
        "/requests-get",
        "/requests-session",
    ):
        (headers,) = header_server.headers(path)
        _sent_by(headers, call)
    (outside,) = header_server.headers("/outside")
    assert "traceparent" not in outside


def test_a_traceparent_the_caller_set_is_never_overwritten(header_server: HeaderServer) -> None:
    theirs = {"TraceParent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Baggage": "mine=1"}
    with tracer.testing.capture(propagate_http=True), tracer.span("call"):
        httpx.get(header_server.url + "/httpx", headers=theirs)
        requests.get(header_server.url + "/requests", headers=theirs, timeout=5)
    for path in ("/httpx", "/requests"):
        (headers,) = header_server.headers(path)
        assert headers["traceparent"] == theirs["TraceParent"]
        assert headers["baggage"] == "mine=1"
        assert "tracestate" not in headers


def test_the_callers_own_tracestate_and_baggage_are_kept(header_server: HeaderServer) -> None:
    with tracer.testing.capture(propagate_http=True) as events, tracer.span("call"):
        httpx.get(header_server.url + "/x", headers={"baggage": "mine=1", "tracestate": "congo=t61"})
    (headers,) = header_server.headers("/x")
    assert headers["baggage"] == "mine=1" and headers["tracestate"] == "congo=t61"
    assert headers["traceparent"].split("-")[2] == span_id_for(events.by_name("call")["event_id"])


@pytest.mark.parametrize("rate", [1.0, 0.0])
def test_calls_in_a_session_outside_any_span_carry_the_session_and_its_sampling(
    header_server: HeaderServer, rate: float
) -> None:
    # With no span current (between spans, or in a sampled-out session, which has none), the
    # session's headers go out: the callee joins the session (sampled) or records nothing (not).
    with tracer.testing.capture(propagate_http=True, sample_rate=rate) as events, tracer.session("chat") as session:
        httpx.get(header_server.url + "/httpx")
        requests.get(header_server.url + "/requests", timeout=5)
    assert events == []
    session_hex = uuid.UUID(session.session_id).hex
    flags = "01" if rate else "00"
    for path in ("/httpx", "/requests"):
        (headers,) = header_server.headers(path)
        assert headers["traceparent"] == f"00-{session_hex}-{session_hex[16:]}-{flags}"
        assert f"honeyhive.session_id={session.session_id}" in headers["baggage"]
        assert "tracestate" not in headers


def test_never_to_the_tracers_own_endpoints(header_server: HeaderServer, other_server: HeaderServer) -> None:
    otlp = OTLPExporter(other_server.url + "/v1/traces", protocol="http/json", compression=None)
    kept = tracer.get_default_tracer().config
    try:
        # Exported inline (batch=False): the OTLP request is sent on this thread, inside "outer".
        tracer.init(
            exporter=[tracer.InMemoryExporter(), otlp], batch=False, propagate_http=True, server_url=header_server.url
        )
        with tracer.span("outer"):
            with tracer.span("inner"):
                pass
            httpx.get(other_server.url + "/app-call-to-the-otlp-origin")
            requests.get(header_server.url + "/app-call-to-the-server-url-origin", timeout=5)
    finally:
        tracer.init(
            exporter=tracer.InMemoryExporter(), batch=kept.batch, propagate_http=False, server_url=kept.server_url
        )
    assert other_server.headers("/v1/traces"), "the OTLP exporter sent nothing"
    assert all("traceparent" not in headers for _, _, headers in other_server.requests + header_server.requests)
    assert not _is_wrapped()


def test_uninstrument_and_shutdown_restore_the_clients() -> None:
    kept = tracer.get_default_tracer().config
    tracer.init(exporter=tracer.InMemoryExporter(), batch=False, propagate_http=True)
    assert _is_wrapped()
    tracer.uninstrument()
    assert not _is_wrapped()
    tracer.init(exporter=tracer.InMemoryExporter(), batch=False, propagate_http=True)
    assert _is_wrapped()
    tracer.shutdown()
    assert not _is_wrapped()
    tracer.init(exporter=tracer.InMemoryExporter(), batch=kept.batch, propagate_http=False)


_SCRIPT = """
import json, sys
import tracer
if sys.argv[1] == "import_first":
    import httpx, requests
tracer.init(exporter=tracer.InMemoryExporter(), batch=False)  # TRACER_PROPAGATE_HTTP=1 from the environment
import httpx, requests
with tracer.span("call") as span:
    httpx.get(sys.argv[2] + "/httpx")
    requests.get(sys.argv[2] + "/requests", timeout=5)
print(json.dumps(span.event_id))
"""


def test_the_environment_variable_and_either_import_order(header_server: HeaderServer) -> None:
    env = {**os.environ, "TRACER_PROPAGATE_HTTP": "true"}
    for order in ("import_first", "init_first"):
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_SCRIPT), order, header_server.url],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        event_id = json.loads(done.stdout)
        for path in ("/httpx", "/requests"):
            headers = header_server.headers(path)[-1]
            assert headers["traceparent"].split("-")[2] == span_id_for(event_id), (order, path)
