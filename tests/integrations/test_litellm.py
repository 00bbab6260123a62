"""LiteLLM calls become one model event each: real ``litellm`` against the fake OpenAI server (``api_base=``)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import wrapt

import tracer
from tracer import integrations
from tracer.integrations import _patch
from tracer.testing import CapturedEvents

from ..api.test_lifecycle import _run as run_script
from ..fake_llm_server import FakeLLMServer
from .conftest import USER, model_events, only_model_event

# litellm reads its model price map from the internet at import unless told to use its bundled copy.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
litellm = pytest.importorskip("litellm")
litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner on every error

from litellm.rust_bridge.dispatch import PublicDispatch  # noqa: E402

# litellm's own lazily imported types make pydantic warn on their first use (with or without tracer).
pytestmark = pytest.mark.filterwarnings("ignore:.* using the `ReadOnly` qualifier:UserWarning")


@pytest.fixture(scope="module")
def base(server: FakeLLMServer) -> dict[str, Any]:
    """Where litellm's OpenAI provider sends the calls: the fake server."""
    return {"api_base": server.openai_url, "api_key": "sk-test-not-a-real-key"}


def test_completion_is_one_event_with_the_resolved_provider_and_model(
    events: CapturedEvents, base: dict[str, Any]
) -> None:
    with tracer.span("agent", event_type="chain"):
        reply = litellm.completion(model="openai/gpt-x", messages=USER, temperature=0.2, max_tokens=50, **base)
    assert reply.choices[0].message.content == "Hello!"
    event = only_model_event(events)  # and no second one from the openai client litellm used
    assert event["event_name"] == "litellm.completion"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    config = event["config"]
    assert (config["provider"], config["model"], config["litellm_model"]) == ("openai", "gpt-x", "openai/gpt-x")
    assert (config["temperature"], config["max_tokens"], config["base_url"]) == (0.2, 50, base["api_base"])
    assert "api_key" not in config and "sk-test-not-a-real-key" not in json.dumps(event)
    assert event["inputs"]["chat_history"] == USER
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "stop"}
    metadata = event["metadata"]
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (11, 2, 13)
    assert metadata["cached_tokens"] == 3
    assert metadata["response_id"] == "chatcmpl-1"


def test_positional_arguments_and_a_provider_given_apart(events: CapturedEvents, base: dict[str, Any]) -> None:
    litellm.completion("gpt-x-tools", USER, custom_llm_provider="openai", tools=[], **base)
    event = only_model_event(events)
    assert (event["config"]["provider"], event["config"]["model"]) == ("openai", "gpt-x-tools")
    assert event["inputs"]["chat_history"] == USER
    assert event["outputs"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_stream_is_one_event_covering_the_stream(events: CapturedEvents, base: dict[str, Any]) -> None:
    stream = litellm.completion(model="openai/gpt-x", messages=USER, stream=True, **base)
    assert isinstance(stream, litellm.CustomStreamWrapper)
    assert model_events(events) == []  # open until the stream ends
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "Hello!"
    event = only_model_event(events)
    assert event["event_name"] == "litellm.completion"
    assert (event["outputs"]["content"], event["outputs"]["finish_reason"]) == ("Hello!", "stop")
    assert event["config"]["stream"] is True
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert "ended_early" not in event["metadata"]


def test_stream_closed_early(events: CapturedEvents, base: dict[str, Any]) -> None:
    stream = litellm.completion(model="openai/gpt-x-long", messages=USER, stream=True, **base)
    for index, _chunk in enumerate(stream):
        if index == 2:
            break
    stream.close()
    event = only_model_event(events)
    assert (event["metadata"]["ended_early"], event["metadata"]["end_reason"]) == (True, "closed")


# asyncio.run() leaves two of litellm's own sockets to the garbage collector (without tracer too).
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_async_completion_stream_and_embedding(events: CapturedEvents, base: dict[str, Any]) -> None:
    async def main() -> str:
        async with tracer.span("request", event_type="chain"):
            await litellm.acompletion(model="openai/gpt-x", messages=USER, **base)
            stream = await litellm.acompletion(model="openai/gpt-x", messages=USER, stream=True, **base)
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
            await litellm.aembedding(model="openai/emb-x", input=["a", "b"], **base)
            return text

    assert asyncio.run(main()) == "Hello!"
    calls = model_events(events)
    assert [event["event_name"] for event in calls] == [
        "litellm.acompletion",
        "litellm.acompletion",
        "litellm.aembedding",
    ]
    request = events.by_name("request")["event_id"]
    assert all(event["parent_id"] == request for event in calls)
    assert calls[1]["outputs"]["content"] == "Hello!" and calls[1]["metrics"]["time_to_first_token_ms"] > 0
    assert calls[2]["outputs"] == {"embeddings": 2, "dimensions": 3}


def test_embedding_made_through_the_patched_openai_client_is_one_event(
    events: CapturedEvents, base: dict[str, Any]
) -> None:
    """With encoding_format litellm calls ``embeddings.with_raw_response.create`` of the openai client,
    which the openai integration patches: the call inside litellm's records nothing more (no event of
    its own, and no second helping of fields on litellm's, as it would give a user's model span)."""
    response = litellm.embedding(model="openai/emb-x", input=["hi"], encoding_format="float", **base)
    assert len(response.data) == 1
    event = only_model_event(events)
    assert event["event_name"] == "litellm.embedding"
    assert (event["config"]["provider"], event["config"]["encoding_format"]) == ("openai", "float")
    assert event["inputs"] == {"input": ["hi"]}
    assert event["outputs"] == {"embeddings": 1, "dimensions": 3}
    assert event["metadata"]["prompt_tokens"] == 4
    assert "raw_response" not in event["metadata"]  # the openai wrapper did not enrich litellm's event either


def test_error_is_recorded_and_reraised(events: CapturedEvents, base: dict[str, Any]) -> None:
    with pytest.raises(litellm.RateLimitError) as raised:
        litellm.completion(model="openai/error-429", messages=USER, num_retries=0, **base)
    assert raised.value.status_code == 429
    event = only_model_event(events)
    assert event["error"].startswith("RateLimitError")
    assert (event["metadata"]["status_code"], event["config"]["provider"]) == (429, "openai")


def test_capture_content_false(base: dict[str, Any]) -> None:
    with tracer.testing.capture(capture_content=False) as captured:
        litellm.completion(model="openai/gpt-x", messages=USER, **base)
    event = only_model_event(captured)
    assert event["inputs"] == {} and event["outputs"] == {"finish_reason": "stop"}
    assert event["metadata"]["total_tokens"] == 13


def test_uninstrument_restores_the_dispatcher(events: CapturedEvents, base: dict[str, Any]) -> None:
    assert wrapt.find_wrapper(PublicDispatch.__dict__["run"], predicate=_patch.is_ours) is not None
    try:
        assert integrations.uninstrument("litellm") == ["litellm"]
        assert wrapt.find_wrapper(PublicDispatch.__dict__["run"], predicate=_patch.is_ours) is None
        litellm.completion(model="openai/gpt-x", messages=USER, **base)
        # (litellm 1.108 calls the openai client's chat.completions.create, traced by the openai
        # integration then; 1.110 posts the request itself.)
        assert not [event for event in model_events(events) if event["event_name"].startswith("litellm.")]
    finally:
        integrations.instrument("litellm")
    before = len(model_events(events))
    litellm.completion(model="openai/gpt-x", messages=USER, **base)
    assert [event["event_name"] for event in model_events(events)[before:]] == ["litellm.completion"]


def test_function_imported_before_init_in_a_fresh_process(server: FakeLLMServer, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = run_script(
        f"""
        import os
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        from litellm import completion, embedding
        import tracer
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}))
        kw = dict(api_base={server.openai_url!r}, api_key="sk-x")
        completion(model="openai/gpt-x", messages=[{{"role": "user", "content": "hi"}}], **kw)
        embedding(model="openai/emb-x", input=["hi"], encoding_format="float", **kw)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    names = [json.loads(line)["event_name"] for line in out.read_text().splitlines()]
    assert names == ["litellm.completion", "litellm.embedding"]
