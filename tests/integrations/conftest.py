"""Fixtures for the LLM client integrations: a fake API server, real SDK clients, captured events."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import wrapt

import tracer
from tracer import integrations
from tracer.integrations._patch import is_ours
from tracer.testing import CapturedEvents

from ..fake_llm_server import FakeLLMServer

# Each test file needs only its own client library: the range runs (tests/integrations/ranges.py)
# install one library per venv.

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="session")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def events() -> Iterator[CapturedEvents]:
    """What the default tracer records during the test (synchronously), all integrations instrumented."""
    with tracer.testing.capture() as captured:
        yield captured
    gc.collect()  # streams abandoned by the test end before the next one starts


@pytest.fixture(scope="session")
def oai(server: FakeLLMServer) -> Any:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.openai_url, api_key="sk-test", max_retries=0)


@pytest.fixture(scope="session")
def claude(server: FakeLLMServer) -> Any:
    anthropic = pytest.importorskip("anthropic")
    return anthropic.Anthropic(base_url=server.url, api_key="sk-test", max_retries=0)


def model_events(captured: CapturedEvents) -> list[dict[str, Any]]:
    return [event for event in captured if event["event_type"] == "model"]


def only_model_event(captured: CapturedEvents) -> dict[str, Any]:
    found = model_events(captured)
    assert len(found) == 1, [(e["event_name"], e["event_type"]) for e in captured]
    return found[0]


def is_our_wrapper(value: Any) -> bool:
    return wrapt.find_wrapper(value, predicate=is_ours) is not None


async def cancel_midway(consume: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run *consume* (reading a slow stream; it sets the event it is given once a chunk is in) as a
    task and cancel it while it reads: cancelled then, not before the response (as a fixed sleep
    would be on a loaded machine)."""
    reading = asyncio.Event()
    task = asyncio.create_task(consume(reading))
    await asyncio.wait_for(reading.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def assert_content_left_out(captured: CapturedEvents, finish_reason: str, total_tokens: int) -> None:
    """capture_content=False: the model events keep counts and the finish reason, no text ("secret")."""
    found = model_events(captured)
    assert found
    for event in found:
        assert event["inputs"] in ({}, None)
        assert event["outputs"] == {"finish_reason": finish_reason}
        assert event["metadata"]["total_tokens"] == total_tokens
    assert "secret" not in json.dumps(list(captured))


def assert_uninstrument_restores(
    events: CapturedEvents, name: str, owners: tuple[type, ...], methods: tuple[str, ...], call: Callable[[], Any]
) -> None:
    """``uninstrument(name)`` puts the SDK's *methods* of *owners* back (*call* then records nothing);
    instrumenting again, twice, gives one event per call."""
    assert is_our_wrapper(owners[0].__dict__[methods[0]])
    try:
        assert integrations.uninstrument(name) == [name]
        for owner in owners:
            for method in methods:
                assert not is_our_wrapper(owner.__dict__[method])
        call()
        assert model_events(events) == []
    finally:
        assert integrations.instrument(name) == [name]
    integrations.instrument(name)  # twice: still one event per call
    call()
    assert len(model_events(events)) == 1


def assert_closed_then_abandoned(captured: CapturedEvents) -> None:
    """A long stream closed after two text chunks, then one dropped after one ("tok0 ", "tok1 "…)."""
    gc.collect()  # the dropped one ends when collected
    closed, abandoned = model_events(captured)
    assert (closed["metadata"]["end_reason"], closed["outputs"]["content"]) == ("closed", "tok0 tok1 ")
    assert (abandoned["metadata"]["end_reason"], abandoned["outputs"]["content"]) == ("abandoned", "tok0 ")
