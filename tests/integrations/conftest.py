"""Fixtures for the LLM client integrations: a fake API server, real SDK clients, captured events."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

import tracer
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
