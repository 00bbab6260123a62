"""OTLP ingest on a real ``tracer serve``: the official OpenTelemetry SDK and exporters (protobuf
and JSON), OpenTelemetry's own OpenAI instrumentation, and hand-made hostile requests."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tracer.store import TraceStore

from ..processes import REPO, Server, clean_env

pytest.importorskip("starlette")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
proto_exporter = pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
json_exporter = pytest.importorskip("opentelemetry.exporter.otlp.json.http.trace_exporter")

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def otlp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("otlp") / "c.db", "--api-key", "k")
    try:
        yield running
    finally:
        assert running.stop() == 0


@pytest.fixture(scope="module")
def client(otlp_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=otlp_server.url, timeout=30, headers={"Authorization": "Bearer k"}) as http:
        yield http


def session_events(server: Server, session_id: str) -> dict[str, dict[str, Any]]:
    with TraceStore(server.store) as store:
        return {event["event_name"]: event for event in store.session_events(session_id)}


def trace_with_sdk(exporter: Any, session_id: str) -> None:
    """A root span with a child and a failing grandchild, through the SDK's batch processor."""
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("my.app")
    with tracer.start_as_current_span("pipeline") as root:
        root.set_attribute("honeyhive.session_id", session_id)
        root.set_attribute("honeyhive_event_type", "chain")
        root.set_attribute("honeyhive_inputs.question", "why?")
        with tracer.start_as_current_span("llm") as child:
            child.set_attribute("honeyhive.session_id", session_id)
            child.set_attribute("gen_ai.operation.name", "chat")
            child.set_attribute("gen_ai.request.model", "m-1")
            child.set_attribute("gen_ai.usage.input_tokens", 4)
            child.set_attribute("gen_ai.usage.output_tokens", 6)
            try:
                with tracer.start_as_current_span("lookup") as grandchild:
                    grandchild.set_attribute("honeyhive.session_id", session_id)
                    raise KeyError("nope")
            except KeyError:
                pass
    provider.shutdown()


@pytest.mark.parametrize("encoding", ["protobuf", "protobuf+gzip", "json"])
def test_the_official_exporters_land_as_a_tree(otlp_server: Server, encoding: str) -> None:
    sid = str(uuid.uuid4())
    headers = {"Authorization": "Bearer k"}
    for path in ("/opentelemetry/v1/traces", "/v1/traces"):  # HoneyHive's path and OpenTelemetry's default
        sid = str(uuid.uuid4())
        endpoint = otlp_server.url + path
        if encoding == "json":
            exporter = json_exporter.OTLPSpanExporter(endpoint=endpoint, headers=headers)
        else:
            compression = proto_exporter.Compression.Gzip if encoding.endswith("gzip") else None
            exporter = proto_exporter.OTLPSpanExporter(endpoint=endpoint, headers=headers, compression=compression)
        trace_with_sdk(exporter, sid)
        events = session_events(otlp_server, sid)
        assert set(events) == {"pipeline", "llm", "lookup"}, path
        pipeline, llm, lookup = events["pipeline"], events["llm"], events["lookup"]
        assert pipeline["parent_id"] == sid and llm["parent_id"] == pipeline["event_id"]
        assert lookup["parent_id"] == llm["event_id"]
        assert (pipeline["event_type"], llm["event_type"], lookup["event_type"]) == ("chain", "model", "tool")
        assert pipeline["inputs"] == {"question": "why?"}
        assert llm["config"] == {"model": "m-1"} and llm["metadata"]["total_tokens"] == 10
        assert lookup["error"] == "KeyError: 'nope'"
        assert pipeline["metadata"]["otel.scope"] == "my.app"


def span_json(trace: str, span: str, name: str, parent: str = "", **attributes: Any) -> dict[str, Any]:
    return {
        "traceId": trace,
        "spanId": span,
        "parentSpanId": parent,
        "name": name,
        "kind": "SPAN_KIND_INTERNAL",
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000005000000",
        "attributes": [{"key": key, "value": {"stringValue": str(value)}} for key, value in attributes.items()],
    }


def otlp_json(*spans: dict[str, Any], resource: dict[str, str] | None = None) -> bytes:
    resource_attrs = [{"key": k, "value": {"stringValue": v}} for k, v in (resource or {}).items()]
    body = {"resourceSpans": [{"resource": {"attributes": resource_attrs}, "scopeSpans": [{"spans": list(spans)}]}]}
    return orjson.dumps(body)


def test_children_before_parents_retries_and_batch_events_form_one_tree(
    otlp_server: Server, client: httpx.Client
) -> None:
    sid = str(uuid.uuid4())
    trace = uuid.uuid4().hex
    child = span_json(trace, "2" * 16, "child", parent="1" * 16, **{"honeyhive.session_id": sid})
    parent = span_json(trace, "1" * 16, "parent", **{"honeyhive.session_id": sid})
    for _ in range(2):  # the child first, and a retry of it
        answer = client.post("/v1/traces", content=otlp_json(child), headers=JSON)
        assert answer.status_code == 200 and answer.json() == {}, answer.text
    assert client.post("/opentelemetry/v1/traces", content=otlp_json(parent), headers=JSON).status_code == 200
    events = session_events(otlp_server, sid)
    batch = {"events": [{"event_type": "tool", "event_name": "via-batch", "parent_id": events["parent"]["event_id"]}]}
    batch["session_properties"] = {"session_id": sid}
    batch["is_single_session"] = True
    assert client.post("/events/batch", json=batch).status_code == 200
    events = session_events(otlp_server, sid)
    assert set(events) == {"child", "parent", "via-batch"}
    assert events["child"]["parent_id"] == events["parent"]["event_id"] == events["via-batch"]["parent_id"]
    assert events["parent"]["parent_id"] == sid


def test_a_span_that_cannot_be_stored_is_a_partial_success(otlp_server: Server, client: httpx.Client) -> None:
    trace = uuid.uuid4().hex
    good = span_json(trace, "3" * 16, "good")
    bad = span_json(trace, "4" * 16, "bad", honeyhive_event_id="x" * 300)  # over the id length limit
    answer = client.post("/v1/traces", content=otlp_json(good, bad), headers=JSON)
    assert answer.status_code == 200
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == 1 and "honeyhive_event_id" not in partial["errorMessage"]
    assert "event_id" in partial["errorMessage"]
    assert set(session_events(otlp_server, str(uuid.UUID(trace)))) == {"good"}
    request = trace_service.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for span_id, extra in ((b"\x05" * 8, ""), (b"\x06" * 8, "y" * 300)):
        span = scope.spans.add(trace_id=uuid.UUID(trace).bytes, span_id=span_id, name="p")
        if extra:
            span.attributes.add(key="honeyhive_event_id").value.string_value = extra
    answer = client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-protobuf"
    response = trace_service.ExportTraceServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_spans == 1 and response.partial_success.error_message


def status_message(answer: httpx.Response) -> str:
    """The message of a google.rpc.Status body (field 2), decoded by hand like the server encodes it."""
    data = answer.content
    assert data[0] == 0x08 and data[1] == 3  # code: INVALID_ARGUMENT
    assert data[2] == 0x12
    length, position, shift = 0, 3, 0
    while True:
        byte = data[position]
        length |= (byte & 0x7F) << shift
        position += 1
        shift += 7
        if not byte & 0x80:
            break
    return data[position : position + length].decode()


def test_malformed_protobuf_and_bad_ids_get_400_in_the_clients_encoding(client: httpx.Client) -> None:
    garbage = client.post("/v1/traces", content=b"\xff\xff\xff\xff not protobuf", headers=PROTOBUF)
    assert garbage.status_code == 400 and garbage.headers["content-type"] == "application/x-protobuf"
    assert "invalid OTLP/protobuf" in status_message(garbage)
    request = trace_service.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 15, span_id=b"\x02" * 8, name="s")
    short = client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert short.status_code == 400
    assert "resourceSpans[0].scopeSpans[0].spans[0].traceId must be 16 bytes" in status_message(short)
    zero = trace_service.ExportTraceServiceRequest()
    zero.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\0" * 8, name="s")
    assert client.post("/v1/traces", content=zero.SerializeToString(), headers=PROTOBUF).status_code == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "must be an object"),
        (b'{"resourceSpans": {}}', "resourceSpans must be an array"),
        (otlp_json(span_json("zz" * 16, "1" * 16, "s")), "traceId must be 32 hex digits"),
        (otlp_json(span_json("1" * 31, "1" * 16, "s")), "traceId must be 32 hex digits"),
        (otlp_json(span_json("1" * 32, "0" * 16, "s")), "spanId must be 16 hex digits, not all zero"),
        (otlp_json(span_json("1" * 32, "1" * 16, "s", parent="abc")), "parentSpanId must be 16 hex digits"),
        (otlp_json({**span_json("1" * 32, "1" * 16, "s"), "startTimeUnixNano": "soon"}), "startUnixNano"),
        (otlp_json({**span_json("1" * 32, "1" * 16, "s"), "kind": "SPAN_KIND_BOGUS"}), "kind must be one of"),
        (
            otlp_json({**span_json("1" * 32, "1" * 16, "s"), "attributes": [{"key": "a", "value": {"intValue": "x"}}]}),
            "intValue must be an integer",
        ),
        (
            otlp_json({**span_json("1" * 32, "1" * 16, "s"), "attributes": [{"key": "a", "value": {"no": 1}}]}),
            "unknown AnyValue field 'no'",
        ),
    ],
)
def test_malformed_otlp_json_gets_400_naming_the_place(client: httpx.Client, body: bytes, message: str) -> None:
    answer = client.post("/v1/traces", content=body, headers=JSON)
    assert answer.status_code == 400 and message in answer.json()["message"], answer.text


def test_content_types_sizes_and_auth(client: httpx.Client, otlp_server: Server) -> None:
    body = otlp_json(span_json(uuid.uuid4().hex, "1" * 16, "s"))
    assert client.post("/v1/traces", content=body, headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/v1/traces", content=body, headers={"Content-Type": "application/grpc"}).status_code == 415
    unauthorized = httpx.post(otlp_server.url + "/v1/traces", content=body, headers=JSON)
    assert unauthorized.status_code == 401
    deep: Any = {"stringValue": "x"}
    for _ in range(40):
        deep = {"arrayValue": {"values": [deep]}}
    nested = otlp_json({**span_json("1" * 32, "1" * 16, "s"), "attributes": [{"key": "a", "value": deep}]})
    answer = client.post("/v1/traces", content=nested, headers=JSON)
    assert answer.status_code == 400 and "nested more than" in answer.json()["message"]
    huge_value = "x" * (15 * 1024 * 1024)
    huge = otlp_json(span_json(uuid.uuid4().hex, "1" * 16, "s", big=huge_value))  # within 16 MiB: stored
    assert client.post("/v1/traces", content=huge, headers=JSON).status_code == 200
    over = gzip.compress(otlp_json(span_json(uuid.uuid4().hex, "1" * 16, "s", big=huge_value + "x" * 2**21)))
    answer = client.post("/v1/traces", content=over, headers={**JSON, "Content-Encoding": "gzip"})
    assert answer.status_code == 413


def test_100000_spans_in_one_request_and_concurrent_senders(otlp_server: Server, client: httpx.Client) -> None:
    trace = uuid.uuid4().bytes
    request = trace_service.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for index in range(100_000):
        spans.add(
            trace_id=trace,
            span_id=(index + 1).to_bytes(8, "big"),
            parent_span_id=b"" if index == 0 else (1).to_bytes(8, "big"),
            name="s",
            start_time_unix_nano=1_700_000_000_000_000_000,
            end_time_unix_nano=1_700_000_000_001_000_000,
        )
    body = request.SerializeToString()
    answer = client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert answer.status_code == 200, answer.content[:200]
    assert not trace_service.ExportTraceServiceResponse.FromString(answer.content).partial_success.rejected_spans
    sid = str(uuid.UUID(bytes=trace))
    with TraceStore(otlp_server.store) as store:
        assert store.count_events([sid]) == 100_000

    traces = [uuid.uuid4().hex for _ in range(8)]
    failures: list[str] = []

    def send(trace_id: str) -> None:
        with httpx.Client(base_url=otlp_server.url, timeout=30, headers={"Authorization": "Bearer k"}) as http:
            for batch in range(10):
                spans = [span_json(trace_id, f"{batch * 100 + n + 1:016x}", f"s{n}") for n in range(100)]
                answer = http.post("/v1/traces", content=otlp_json(*spans), headers=JSON)
                if answer.status_code != 200:
                    failures.append(answer.text)

    threads = [threading.Thread(target=send, args=(trace_id,)) for trace_id in traces]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    with TraceStore(otlp_server.store) as store:
        assert [store.count_events([str(uuid.UUID(t))]) for t in traces] == [1000] * 8


OPENAI_SCRIPT = """
import sys
from openai import OpenAI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces",
                                                                 headers={"Authorization": "Bearer k"})))
OpenAIInstrumentor().instrument(tracer_provider=provider)
client = OpenAI(base_url=sys.argv[2], api_key="x")
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "system", "content": "be brief"},
                                                              {"role": "user", "content": "hi there"}])
provider.shutdown()
"""


def test_opentelemetrys_openai_instrumentation_gives_model_events(otlp_server: Server, tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    from tests.fake_llm_server import FakeLLMServer

    script = tmp_path / "traced_openai.py"
    script.write_text(OPENAI_SCRIPT)
    with FakeLLMServer() as llm:
        env = clean_env(
            OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_ONLY",  # messages as span attributes
            OTEL_SEMCONV_STABILITY_OPT_IN="gen_ai_latest_experimental",
        )
        run = subprocess.run(
            [sys.executable, str(script), otlp_server.url, llm.openai_url],
            capture_output=True, text=True, timeout=60, env=env, cwd=REPO, check=False,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    with TraceStore(otlp_server.store) as store:
        found = [
            event
            for summary in store.sessions(limit=10_000)
            for event in store.session_events(summary.session_id)
            if event.get("config", {}).get("model") == "gpt-4o-mini"
        ]
    [event] = found
    assert event["event_type"] == "model" and event["config"]["provider"] == "openai"
    assert event["metadata"]["prompt_tokens"] > 0 and event["metadata"]["completion_tokens"] > 0
    assert event["inputs"]["chat_history"][-1] == {"role": "user", "content": "hi there"}
    assert event["outputs"]["role"] == "assistant" and event["outputs"]["content"] == "Hello!"


def test_a_refused_request_stores_nothing(otlp_server: Server, client: httpx.Client) -> None:
    """Spans are stored in chunks, but only once the whole body is checked: a bad id late in the
    body (after more than a chunk of good spans) refuses the request and stores none of it."""
    trace = uuid.uuid4().bytes
    request = trace_service.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for index in range(5000):
        spans.add(trace_id=trace, span_id=(index + 1).to_bytes(8, "big"), name="s")
    spans.add(trace_id=trace, span_id=b"\x01", name="bad")
    answer = client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert answer.status_code == 400 and "spans[5000].spanId" in status_message(answer)
    good = [span_json(uuid.UUID(bytes=trace).hex, f"{n + 1:016x}", "s") for n in range(5000)]
    bad = span_json(uuid.UUID(bytes=trace).hex, "xyz", "bad")
    answer = client.post("/v1/traces", content=otlp_json(*good, bad), headers=JSON)
    assert answer.status_code == 400 and "spans[5000].spanId" in answer.json()["message"]
    with TraceStore(otlp_server.store) as store:
        assert store.count_events([str(uuid.UUID(bytes=trace))]) == 0
