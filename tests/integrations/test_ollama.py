"""Ollama client calls become model events: real ``ollama`` package against the fake server's /api routes."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracer
from tracer import integrations
from tracer.testing import CapturedEvents

from ..fake_llm_server import FakeLLMServer
from .conftest import USER, model_events, only_model_event

ollama = pytest.importorskip("ollama")

ROOT = Path(__file__).resolve().parents[2]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[Any]:
    made = ollama.Client(host=server.url)
    yield made
    made._client.close()  # its httpx client (no close() of its own before 0.6)


def test_chat_is_one_model_event_under_the_current_span(
    events: CapturedEvents, client: Any, server: FakeLLMServer
) -> None:
    with tracer.span("agent", event_type="chain"):
        reply = client.chat("llama3", USER, options={"temperature": 0.2})  # positional, as the docs show
    assert reply.message.content == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "ollama.chat"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    config = event["config"]
    assert (config["provider"], config["model"], config["options"]) == ("ollama", "llama3", {"temperature": 0.2})
    assert config["base_url"] == server.url
    assert event["inputs"]["chat_history"] == USER
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "stop"}
    metadata = event["metadata"]
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (8, 2, 10)
    assert (metadata["response_model"], metadata["total_duration_ms"]) == ("llama3", 5.0)


def test_chat_tool_call(events: CapturedEvents, client: Any) -> None:
    client.chat(model="llama3", messages=USER, tools=TOOLS)
    outputs = only_model_event(events)["outputs"]
    assert outputs["tool_calls"] == [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]


def test_generate(events: CapturedEvents, client: Any) -> None:
    assert client.generate("llama3", "Say hi", system="be brief").response == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "ollama.generate"
    assert event["inputs"]["chat_history"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Say hi"},
    ]
    assert event["outputs"]["content"] == "Hello!"
    assert event["metadata"]["total_tokens"] == 10


def test_chat_stream_is_one_event(events: CapturedEvents, client: Any) -> None:
    parts = client.chat(model="llama3", messages=USER, stream=True)
    assert "".join(part.message.content for part in parts) == "Hello!"
    event = only_model_event(events)
    assert event["config"]["stream"] is True
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "stop"}
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert event["metadata"]["total_tokens"] == 10
    assert "ended_early" not in event["metadata"]


def test_generate_stream_break_and_abandon(events: CapturedEvents, client: Any) -> None:
    parts = client.generate(model="llama-long", prompt="count", stream=True)
    next(parts)
    parts.close()
    first = only_model_event(events)
    assert (first["metadata"]["end_reason"], first["outputs"]["content"]) == ("closed", "tok0 ")

    def read_one() -> None:
        for _part in client.generate(model="llama-long", prompt="count", stream=True):
            break

    read_one()
    gc.collect()
    second = model_events(events)[1]
    assert (second["metadata"]["end_reason"], second["outputs"]["content"]) == ("abandoned", "tok0 ")


def test_errors_are_recorded_and_reraised_unchanged(events: CapturedEvents, client: Any) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="error-429", messages=USER)
    assert caught.value.status_code == 429
    with pytest.raises(ollama.ResponseError):
        for _part in client.chat(model="llama-midstream-error", messages=USER, stream=True):
            pass
    failed, midstream = model_events(events)
    assert failed["error"].startswith("ResponseError")
    assert (failed["metadata"]["status_code"], failed["metadata"]["error_message"]) == (429, "rate limited")
    assert midstream["metadata"]["end_reason"] == "error"


def test_async_client_chat_generate_and_stream(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = ollama.AsyncClient(host=server.url)
        with tracer.span("task", event_type="chain"):
            await client.chat("llama3", USER)
            await client.generate("llama3", "hi")
            text = [part.message.content async for part in await client.chat("llama3", USER, stream=True)]
            assert "".join(text) == "Hello!"
            with pytest.raises(ollama.ResponseError):
                await client.chat(model="error-500", messages=USER)
        await client._client.aclose()

    asyncio.run(main())
    chat, generate, streamed, failed = model_events(events)
    task = events.by_name("task")["event_id"]
    assert {event["parent_id"] for event in (chat, generate, streamed, failed)} == {task}
    assert [chat["event_name"], generate["event_name"]] == ["ollama.chat", "ollama.generate"]
    assert streamed["outputs"]["content"] == "Hello!" and streamed["metrics"]["time_to_first_token_ms"] > 0
    assert failed["metadata"]["status_code"] == 500


def test_capture_content_false(client: Any) -> None:
    with tracer.testing.capture(capture_content=False) as captured:
        client.chat(model="llama3", messages=USER)
    event = only_model_event(captured)
    assert event["inputs"] in ({}, None)
    assert event["outputs"] == {"finish_reason": "stop"}
    assert event["metadata"]["total_tokens"] == 10


def test_uninstrument_restores_and_instrument_again(events: CapturedEvents, client: Any) -> None:
    module = importlib.import_module("ollama._client")
    wrapped = module.Client.__dict__["chat"]
    try:
        assert integrations.uninstrument("ollama") == ["ollama"]
        assert module.Client.__dict__["chat"] is wrapped.__wrapped__
        client.chat(model="llama3", messages=USER)
        assert model_events(events) == []
    finally:
        integrations.instrument("ollama")
    client.chat(model="llama3", messages=USER)
    assert len(model_events(events)) == 1


_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from tests.fake_llm_server import FakeLLMServer
server = FakeLLMServer().start()
import os
os.environ["OLLAMA_HOST"] = server.url
import tracer
exporter = tracer.InMemoryExporter()
if {import_first}:
    import ollama
tracer.init(exporter=exporter, batch=False)
import ollama
ollama.chat("llama3", [{{"role": "user", "content": "hi"}}])
ollama.generate(model="llama3", prompt="hi")
print(json.dumps([e["event_name"] for e in exporter.events if e["event_type"] == "model"]))
"""


@pytest.mark.parametrize("import_first", [True, False], ids=["imported-before-init", "imported-after-init"])
def test_module_level_functions_are_traced_once_whatever_the_import_order(import_first: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_", "OLLAMA_"))}
    env["TRACER_RAISE_INTERNAL_ERRORS"] = "1"
    script = textwrap.dedent(_SCRIPT.format(root=str(ROOT), import_first=import_first))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["ollama.chat", "ollama.generate"]
