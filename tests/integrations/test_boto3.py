"""Bedrock Runtime calls become model events: real ``boto3`` against the fake server's AWS event streams."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest
import wrapt

import tracer
from tracer import integrations
from tracer.integrations import _patch
from tracer.testing import CapturedEvents

from ..api.test_lifecycle import _run as run_script
from ..fake_llm_server import FakeLLMServer
from .conftest import model_events, only_model_event

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402

MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def make_client(server: FakeLLMServer, service: str = "bedrock-runtime") -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="AKIDFAKEFAKEFAKE",
        aws_secret_access_key="fake-secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def bedrock(server: FakeLLMServer) -> Any:
    return make_client(server)


def converse_usage(metadata: dict[str, Any], usage: dict[str, Any]) -> None:
    """inputTokens 12 + cache reads 4 + cache writes 0 (Bedrock counts cached input apart); botocore
    before 1.35 does not know the cache fields and drops them from the response."""
    read, write = usage.get("cacheReadInputTokens"), usage.get("cacheWriteInputTokens")
    prompt = 12 + (read or 0) + (write or 0)
    assert (metadata["prompt_tokens"], metadata["completion_tokens"], metadata["total_tokens"]) == (
        prompt,
        3,
        prompt + 3,
    )
    if read is not None:
        assert (read, write) == (4, 0)
        assert (metadata["cache_read_input_tokens"], metadata["cache_creation_input_tokens"]) == (4, 0)


# -- converse -------------------------------------------------------------------------------------------------


def test_converse_records_a_model_event_under_the_current_span(events: CapturedEvents, bedrock: Any) -> None:
    with tracer.span("agent", event_type="chain"):
        response = bedrock.converse(
            modelId=CLAUDE,
            messages=MESSAGES,
            system=[{"text": "be brief"}],
            inferenceConfig={"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
            additionalModelRequestFields={"top_k": 5},
        )
    assert response["output"]["message"]["content"] == [{"text": "Hello!"}]
    event = only_model_event(events)
    assert event["event_name"] == "bedrock.converse"
    assert event["parent_id"] == events.by_name("agent")["event_id"]
    config = event["config"]
    assert (config["provider"], config["model"]) == ("bedrock", CLAUDE)
    assert (config["maxTokens"], config["temperature"], config["topP"], config["stopSequences"]) == (
        50,
        0.2,
        0.9,
        ["END"],
    )
    assert config["additionalModelRequestFields"] == {"top_k": 5}
    assert not {"messages", "system", "modelId", "inferenceConfig"} & set(config)
    assert event["inputs"]["chat_history"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "end_turn"}
    metadata = event["metadata"]
    converse_usage(metadata, response["usage"])
    assert (metadata["request_id"], metadata["latency_ms"]) == ("req-bedrock-1", 42)
    assert event["error"] is None


def test_converse_tool_call_and_non_text_content_kept_as_given(events: CapturedEvents, bedrock: Any) -> None:
    image = {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}
    messages = [{"role": "user", "content": [{"text": "weather?"}, image]}]
    tool = {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}
    bedrock.converse(modelId="m-tools", messages=messages, toolConfig={"tools": [tool]})
    event = only_model_event(events)
    assert event["outputs"]["finish_reason"] == "tool_use"
    assert event["outputs"]["tool_calls"] == [
        {"id": "tool_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    ]
    content = event["inputs"]["chat_history"][0]["content"]
    assert content[0] == {"text": "weather?"} and content[1]["image"]["format"] == "png"


def test_converse_stream_covers_the_whole_stream(events: CapturedEvents, bedrock: Any) -> None:
    response = bedrock.converse_stream(modelId=CLAUDE, messages=MESSAGES, inferenceConfig={"maxTokens": 9})
    assert model_events(events) == []  # open until the stream ends
    kinds = [next(iter(item)) for item in response["stream"]]
    assert kinds[0] == "messageStart" and kinds[-1] == "metadata"
    event = only_model_event(events)
    assert event["event_name"] == "bedrock.converse_stream"
    assert event["outputs"] == {"role": "assistant", "content": "Hello!", "finish_reason": "end_turn"}
    assert (event["metadata"]["prompt_tokens"], event["metadata"]["completion_tokens"]) == (12, 3)
    assert event["metadata"]["request_id"] == "req-bedrock-1"
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert "ended_early" not in event["metadata"]
    assert event["config"]["maxTokens"] == 9


def test_converse_stream_tool_call(events: CapturedEvents, bedrock: Any) -> None:
    list(bedrock.converse_stream(modelId="m-tools", messages=MESSAGES)["stream"])
    outputs = only_model_event(events)["outputs"]
    assert outputs["tool_calls"] == [
        {"id": "tool_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert (outputs["content"], outputs["finish_reason"]) == ("Hello!", "tool_use")


def test_converse_stream_closed_early(events: CapturedEvents, bedrock: Any) -> None:
    stream = bedrock.converse_stream(modelId="m-long", messages=MESSAGES)["stream"]
    for index, _item in enumerate(stream):
        if index == 2:
            break
    assert model_events(events) == []
    stream.close()
    event = only_model_event(events)
    assert (event["metadata"]["ended_early"], event["metadata"]["end_reason"]) == (True, "closed")
    assert event["outputs"]["content"] == "tok0 tok1 "


# botocore leaves an abandoned stream's socket to the garbage collector, which warns (without tracer too).
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_converse_stream_abandoned(events: CapturedEvents, bedrock: Any) -> None:
    def read_a_little() -> None:
        stream = bedrock.converse_stream(modelId="m-long", messages=MESSAGES)["stream"]
        next(iter(stream))

    read_a_little()
    gc.collect()
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "abandoned"


def test_converse_stream_error_midway_is_recorded_and_reraised(events: CapturedEvents, bedrock: Any) -> None:
    stream = bedrock.converse_stream(modelId="midstream-error", messages=MESSAGES)["stream"]
    seen = []
    with pytest.raises(EventStreamError) as raised:
        try:
            for item in stream:
                seen.append(item)
        finally:
            stream.close()  # botocore leaves the connection open after an error event
    assert raised.value.response["Error"]["Code"] == "modelStreamErrorException"
    event = only_model_event(events)
    assert event["error"].startswith("EventStreamError")
    assert event["metadata"]["error_code"] == "modelStreamErrorException"
    assert event["metadata"]["error_message"] == "The model stream failed"
    assert (event["metadata"]["end_reason"], event["outputs"]["content"]) == ("error", "Hel")


def test_http_error_is_recorded_and_reraised(events: CapturedEvents, bedrock: Any) -> None:
    with tracer.span("agent", event_type="chain"), pytest.raises(ClientError) as raised:
        bedrock.converse(modelId="m-error-429", messages=MESSAGES)
    assert type(raised.value).__name__ == "ThrottlingException"
    event = only_model_event(events)
    assert event["error"].startswith("ThrottlingException: An error occurred (ThrottlingException)")
    metadata = event["metadata"]
    assert (metadata["status_code"], metadata["error_code"], metadata["request_id"]) == (
        429,
        "ThrottlingException",
        "req-bedrock-1",
    )
    assert metadata["error_message"].startswith("Too many requests")


# -- invoke_model: every model family's body ------------------------------------------------------------------

# (model id, request body, the event's inputs, config expected, (prompt, completion) tokens, finish reason)
FAMILIES = [
    (
        CLAUDE,
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "system": "be brief", "messages": MESSAGES},
        {"chat_history": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
        {"max_tokens": 50, "anthropic_version": "bedrock-2023-05-31"},
        (12, 3),  # input 10 + cache reads 2
        "end_turn",
    ),
    (
        "meta.llama3-8b-instruct-v1:0",
        {"prompt": "hi", "max_gen_len": 64, "temperature": 0.5},
        {"prompt": "hi"},
        {"max_gen_len": 64, "temperature": 0.5},
        (9, 3),
        "stop",
    ),
    (
        "amazon.titan-text-express-v1",
        {"inputText": "hi", "textGenerationConfig": {"maxTokenCount": 64, "temperature": 0}},
        {"prompt": "hi"},
        {"maxTokenCount": 64, "temperature": 0},
        (8, 3),
        "FINISH",
    ),
    (
        "amazon.nova-lite-v1:0",
        {"messages": MESSAGES, "system": [{"text": "be brief"}], "inferenceConfig": {"max_new_tokens": 64}},
        {"chat_history": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
        {"max_new_tokens": 64},
        (7, 3),
        "end_turn",
    ),
    (
        "mistral.mistral-7b-instruct-v0:2",
        {"prompt": "<s>[INST] hi [/INST]", "max_tokens": 64},
        {"prompt": "<s>[INST] hi [/INST]"},
        {"max_tokens": 64},
        (11, 3),  # from the x-amzn-bedrock-*-token-count headers: Mistral's body has no usage
        "stop",
    ),
    (
        "mistral.mistral-large-2407-v1:0",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 64},
        {"chat_history": [{"role": "user", "content": "hi"}]},
        {"max_tokens": 64},
        (11, 3),
        "stop",
    ),
]


@pytest.mark.parametrize(("model", "body", "inputs", "params", "tokens", "finish"), FAMILIES)
def test_invoke_model_formats(
    events: CapturedEvents,
    bedrock: Any,
    model: str,
    body: dict[str, Any],
    inputs: dict[str, Any],
    params: dict[str, Any],
    tokens: tuple[int, int],
    finish: str,
) -> None:
    response = bedrock.invoke_model(modelId=model, body=json.dumps(body), contentType="application/json")
    assert isinstance(response["body"], StreamingBody)
    answered = json.loads(response["body"].read())  # the caller still reads the whole body
    assert answered and "unknown" not in answered
    event = only_model_event(events)
    assert event["event_name"] == "bedrock.invoke_model"
    assert (event["config"]["provider"], event["config"]["model"]) == ("bedrock", model)
    assert {key: event["config"][key] for key in params} == params
    assert not {"body", "contentType", "messages", "prompt", "inputText"} & set(event["config"])
    assert event["inputs"] == inputs
    assert (event["outputs"]["content"], event["outputs"]["finish_reason"]) == ("Hello!", finish)
    assert (event["metadata"]["prompt_tokens"], event["metadata"]["completion_tokens"]) == tokens
    assert event["metadata"]["request_id"] == "req-bedrock-1"


def test_invoke_model_body_read_in_parts_and_by_line(events: CapturedEvents, bedrock: Any) -> None:
    response = bedrock.invoke_model(modelId="meta.llama3", body=b'{"prompt": "hi"}')
    body = response["body"]
    first = body.read(5)
    rest = b"".join(body.iter_chunks(7))
    assert json.loads(first + rest)["generation"] == "Hello!"
    assert only_model_event(events)["outputs"]["content"] == "Hello!"


def test_invoke_model_tool_use_and_embeddings(events: CapturedEvents, bedrock: Any) -> None:
    bedrock.invoke_model(modelId="anthropic.claude-tools", body=json.dumps({"messages": MESSAGES}))
    bedrock.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "hi"}))
    claude, titan = model_events(events)
    assert claude["outputs"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert claude["metadata"]["response_id"] == "msg_bdrk_1"
    assert titan["outputs"] == {"embeddings": 1, "dimensions": 4}
    assert titan["metadata"]["prompt_tokens"] == 5 and titan["inputs"] == {"prompt": "hi"}


def test_invoke_model_body_that_fails_to_read(events: CapturedEvents, bedrock: Any) -> None:
    """The fake promises more bytes than it sends: the read fails in the wrapper, is recorded, and
    the caller's own read raises that same exception."""
    response = bedrock.invoke_model(modelId="meta.truncated-body", body=b'{"prompt": "hi"}')
    event = only_model_event(events)
    with pytest.raises(Exception) as raised:
        response["body"].read()
    assert event["error"] is not None and event["error"].startswith(type(raised.value).__name__)


# -- invoke_model_with_response_stream -------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "body", "inputs", "params", "tokens", "finish"), FAMILIES)
def test_invoke_model_stream_formats(
    events: CapturedEvents,
    bedrock: Any,
    model: str,
    body: dict[str, Any],
    inputs: dict[str, Any],
    params: dict[str, Any],
    tokens: tuple[int, int],
    finish: str,
) -> None:
    response = bedrock.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
    chunks = [json.loads(item["chunk"]["bytes"]) for item in response["body"]]
    assert chunks
    event = only_model_event(events)
    assert event["event_name"] == "bedrock.invoke_model_with_response_stream"
    assert event["inputs"] == inputs
    assert (event["outputs"]["content"], event["outputs"]["finish_reason"]) == ("Hello!", finish)
    prompt = 6 if model.startswith("mistral.") else {CLAUDE: 10}.get(model, tokens[0])  # no cache tokens here
    completion = 2 if model.startswith(("meta.", "amazon.titan", "mistral.")) else 3  # one count per chunk
    assert (event["metadata"]["prompt_tokens"], event["metadata"]["completion_tokens"]) == (prompt, completion)
    assert event["metrics"]["time_to_first_token_ms"] > 0
    assert event["metadata"]["latency_ms"] == 40


def test_invoke_model_stream_error_midway(events: CapturedEvents, bedrock: Any) -> None:
    response = bedrock.invoke_model_with_response_stream(modelId="meta.midstream-error", body=b"{}")
    with pytest.raises(EventStreamError):
        try:
            list(response["body"])
        finally:
            response["body"].close()
    event = only_model_event(events)
    assert event["metadata"]["error_code"] == "modelStreamErrorException"
    assert event["outputs"]["content"] == "Hel"  # the text that came before the error


# -- what the integration leaves alone, and how it comes and goes ---------------------------------------------


def test_other_aws_services_are_not_traced(events: CapturedEvents, server: FakeLLMServer) -> None:
    s3 = make_client(server, "s3")
    with pytest.raises(ClientError):
        s3.list_buckets()  # the fake answers 404
    assert model_events(events) == []


def test_call_inside_the_users_model_span_enriches_it(events: CapturedEvents, bedrock: Any) -> None:
    with tracer.span("my-llm", event_type="model"):
        bedrock.converse(modelId=CLAUDE, messages=MESSAGES)
    (event,) = model_events(events)
    assert event["event_name"] == "my-llm"
    assert event["outputs"]["content"] == "Hello!" and event["config"]["provider"] == "bedrock"


def test_capture_content_false(bedrock: Any) -> None:
    with tracer.testing.capture(capture_content=False) as captured:
        bedrock.converse(modelId=CLAUDE, messages=MESSAGES)
        list(bedrock.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    for event in model_events(captured):
        assert event["inputs"] == {}
        assert event["outputs"] == {"finish_reason": "end_turn"}
        assert event["metadata"]["completion_tokens"] == 3


def test_from_a_thread_of_an_async_app(events: CapturedEvents, bedrock: Any) -> None:
    """boto3 has no async client: async apps call it in a thread, where the event nests all the same."""

    async def handler() -> None:
        async with tracer.span("request", event_type="chain"):
            await asyncio.to_thread(bedrock.converse, modelId=CLAUDE, messages=MESSAGES)

    asyncio.run(handler())
    assert only_model_event(events)["parent_id"] == events.by_name("request")["event_id"]


def test_uninstrument_and_instrument_again_on_an_existing_client(events: CapturedEvents, bedrock: Any) -> None:
    from botocore.client import BaseClient

    assert wrapt.find_wrapper(BaseClient.__dict__["_make_api_call"], predicate=_patch.is_ours) is not None
    try:
        assert integrations.uninstrument("boto3") == ["boto3"]
        assert wrapt.find_wrapper(BaseClient.__dict__["_make_api_call"], predicate=_patch.is_ours) is None
        bedrock.converse(modelId=CLAUDE, messages=MESSAGES)
        assert model_events(events) == []
    finally:
        integrations.instrument("boto3")
    bedrock.converse(modelId=CLAUDE, messages=MESSAGES)
    assert len(model_events(events)) == 1


def test_client_created_before_init_in_a_fresh_process(server: FakeLLMServer, tmp_path: Any) -> None:
    out = tmp_path / "events.jsonl"
    done = run_script(
        f"""
        import boto3
        from botocore.config import Config
        client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url={server.url!r},
                              aws_access_key_id="AKIDFAKEFAKEFAKE", aws_secret_access_key="fake",
                              config=Config(retries={{"total_max_attempts": 1}}))
        import tracer
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}))
        client.converse(modelId="m", messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}])
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    names = [json.loads(line)["event_name"] for line in out.read_text().splitlines()]
    assert names == ["bedrock.converse"]
