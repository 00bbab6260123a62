"""The README's code samples, as users meet them: `mypy --strict` checks this file (see .ci/run).

Never run by pytest (it would write a local store); it only has to type-check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import flask
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import tracer
from tracer.integrations import asgi, wsgi
from tracer.testing import CapturedEvents

tracer.init(project="my-app")  # no api_key: events go to ./.tracer/traces.db


@tracer.trace  # a "tool" event, or "chain" if it has children
def retrieve(question: str, k: int = 2) -> list[str]:
    return ["Paris is the capital of France."]


@tracer.trace(event_type="model", config={"provider": "fake", "model": "echo-1"})
def generate(question: str, context: list[str]) -> str:
    tracer.enrich_span(metadata={"prompt_tokens": 42})
    return f"Answer: {context[0]}"


@tracer.trace
def answer(question: str) -> str:
    return generate(question, retrieve(question))


@tracer.trace
async def answer_async(question: str) -> str:
    return answer(question)


def spans_and_sessions() -> None:
    with tracer.session(session_name="request", metadata={"user": "ada"}):
        with tracer.span("block", event_type="tool", inputs={"q": 1}) as span:
            span.update(outputs={"ok": True}, metrics={"score": 0.5})
            event_id: str = span.event_id
            print(event_id, span.session_id, span.parent_id)
        tracer.enrich_session(metadata={"done": True})
    delivered: bool = tracer.flush(timeout=5.0)
    print(delivered, tracer.stats()["dropped"])


def test_answer_is_traced() -> None:
    with tracer.testing.capture() as events:  # synchronous, in memory, no network
        answer("capital of France?")
    root = events.by_name("answer")
    assert root["event_type"] == "chain"
    assert [e["event_name"] for e in events.children_of(root)] == ["retrieve", "generate"]


def test_with_fixture(tracer_events: CapturedEvents) -> None:
    answer("capital of France?")
    assert "generate" in tracer_events.names()


@tracer.trace
async def answer_stream(question: str) -> AsyncIterator[str]:
    yield "Paris"


@tracer.trace
async def chat(question: str) -> StreamingResponse:
    return StreamingResponse(tracer.bind_context(answer_stream(question)))  # answer_stream: traced


class PrintIds(tracer.Exporter):
    def export(self, batch: tracer.Batch) -> bool:
        for event in batch.events():  # decoded wire-shape dicts
            print(event["event_id"], event["event_name"])
        return True  # or an ExportResult(delivered, failed, reason, updates_failed)


tracer.init(exporter=[PrintIds(), tracer.JSONLExporter("events.jsonl")])
tracer.init(exporter=tracer.OTLPExporter("http://localhost:4318/v1/traces"))  # protobuf + gzip by default
tracer.init(
    exporter=[
        tracer.OTLPExporter(
            "https://otlp.example.com/v1/traces",
            headers={"x-api-key": "…"},
            protocol="http/json",
            compression=None,
            timeout=10.0,
        )
    ]
)


# Distributed tracing
def call_b(payload: dict[str, str]) -> None:  # service A, calling B
    with tracer.span("ask_b"):
        httpx.post("http://b/answer", json=payload, headers=tracer.inject({}))


async def answer_b(request: Request) -> JSONResponse:  # service B, handling it
    async with tracer.continue_trace(request.headers):
        return JSONResponse({"answer": await answer_async("…")})


tracer.init(propagate_http=True)
app = Starlette(routes=[Route("/answer", answer_b)], middleware=[Middleware(asgi.TracerMiddleware)])
asgi_app = asgi.TracerMiddleware(app)
flask_app = flask.Flask(__name__)
flask_app.wsgi_app = wsgi.TracerMiddleware(flask_app.wsgi_app)  # type: ignore[method-assign]
wsgi_app = wsgi.TracerMiddleware(flask_app)
print(answer("what is the capital of france"), asyncio.run(answer_async("and of Italy?")))
