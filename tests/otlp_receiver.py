"""A real OTLP/HTTP traces receiver for tests (stdlib HTTP server on 127.0.0.1, port 0).

``POST /v1/traces`` in OTLP/protobuf or OTLP/JSON (gzip or not), decoded with the official
``opentelemetry-proto`` classes: binary by ``ParseFromString``, JSON by protobuf's ``json_format``
after OTLP/JSON's hex-id rule (ids turned back into base64, which is what ``json_format`` expects).
Every accepted request's spans are kept as plain ``ReceivedSpan`` records.

Faults are queued and each request takes the first: ``fail(503)``, ``fail(429, retry_after="0")``,
``hang(seconds)`` (answers 200 late), ``partial(rejected, message)`` (200 with ``partialSuccess``).
``latency`` delays every answer (a far endpoint); ``most_in_flight`` is the most requests it had at once.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["OTLPReceiver", "ReceivedSpan", "decode_request", "otlp_receiver"]


@dataclasses.dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    scope: str
    dropped_attributes: int


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {pair.key: _value(pair.value) for pair in value.kvlist_value.values}
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _hex_to_base64(body: Any) -> None:
    """OTLP/JSON ids are hex; protobuf's JSON mapping of ``bytes`` is base64."""
    for resource_spans in body.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()


def decode_request(raw: bytes, content_type: str, content_encoding: str = "") -> list[ReceivedSpan]:
    data = gzip.decompress(raw) if content_encoding == "gzip" else raw
    request = ExportTraceServiceRequest()
    if content_type.startswith("application/json"):
        body = orjson.loads(data)
        _hex_to_base64(body)
        json_format.ParseDict(body, request)
    else:
        request.ParseFromString(data)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=span.kind,
                        start=span.start_time_unix_nano,
                        end=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=[(event.name, _attributes(event.attributes)) for event in span.events],
                        status_code=span.status.code,
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        dropped_attributes=span.dropped_attributes_count,
                    )
                )
    return spans


class OTLPReceiver:
    def __init__(self, port: int = 0) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests: list[dict[str, str]] = []  # headers of every request, faults included
        self.bodies: list[bytes] = []  # raw bodies of accepted requests
        self._faults: collections.deque[tuple[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self.latency = 0.0
        self.in_flight = 0
        self.most_in_flight = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                try:
                    time.sleep(receiver.latency)
                    self._post()
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def _post(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {key.lower(): value for key, value in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(headers)
                    fault = receiver._faults.popleft() if receiver._faults else None
                json_answer = headers.get("content-type", "").startswith("application/json")
                if self.path != "/v1/traces":
                    return self._answer(404, b"not found", "text/plain")
                if fault is not None and fault[0] == "status":
                    status, retry_after = fault[1]
                    return self._answer(status, b'{"message": "programmed fault"}', "application/json", retry_after)
                if fault is not None and fault[0] == "hang":
                    time.sleep(fault[1])
                try:
                    spans = decode_request(raw, headers.get("content-type", ""), headers.get("content-encoding", ""))
                except Exception as exc:  # a body the official classes cannot read: the test fails on it
                    return self._answer(400, f"undecodable: {exc}".encode(), "text/plain")
                with receiver._lock:
                    receiver.spans.extend(spans)
                    receiver.bodies.append(raw)
                rejected, message = fault[1] if fault is not None and fault[0] == "partial" else (0, "")
                if json_answer:
                    body = (
                        orjson.dumps({"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}})
                        if rejected
                        else b"{}"
                    )
                    return self._answer(200, body, "application/json")
                response = ExportTraceServiceResponse()
                if rejected:
                    response.partial_success.rejected_spans = rejected
                    response.partial_success.error_message = message
                return self._answer(200, response.SerializeToString(), "application/x-protobuf")

            def _answer(self, status: int, body: bytes, media: str, retry_after: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(body)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, status: int, retry_after: str | None = None, times: int = 1) -> None:
        for _ in range(times):
            self._faults.append(("status", (status, retry_after)))

    def hang(self, seconds: float) -> None:
        self._faults.append(("hang", seconds))

    def partial(self, rejected: int, message: str) -> None:
        self._faults.append(("partial", (rejected, message)))

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def otlp_receiver() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
