"""Anthropic streams, traced: ``messages.stream(...)`` and ``async with`` each become one ``model`` event.

python examples/anthropic_stream.py

Offline by default: the bundled fake Anthropic server (tests/fake_llm_server.py) is started on
127.0.0.1. With ANTHROPIC_API_KEY set, the real API is used (model from ANTHROPIC_MODEL, default
claude-haiku-4-5). The trace tree is printed to stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import anthropic

import tracer

tracer.init(session_name="anthropic_stream", exporter=tracer.ConsoleExporter())  # after `import anthropic`: fine

SYSTEM = "You are terse."


@tracer.trace(event_type="chain")
def stream_story(client: anthropic.Anthropic, model: str) -> str:
    # One model event for the whole stream: text, stop reason, tokens, time to first token.
    with client.messages.stream(
        model=model,
        max_tokens=200,
        system=SYSTEM,
        messages=[{"role": "user", "content": "Say hello in five words."}],
    ) as stream:
        pieces = [text for text in stream.text_stream]
        stream.get_final_message()
    return "".join(pieces)


@tracer.trace(event_type="chain")
async def ask_twice(client: anthropic.AsyncAnthropic, model: str) -> list[str]:
    # Concurrent streams: each model event nests under this chain, even across tasks.
    async def ask(question: str) -> str:
        async with client.messages.stream(
            model=model, max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": question}]
        ) as stream:
            message = await stream.get_final_message()
        return "".join(block.text for block in message.content if block.type == "text")

    return list(await asyncio.gather(ask("Say hi."), ask("Say bye.")))


async def run(base_url: str | None, api_key: str | None, model: str) -> None:
    options = {"base_url": base_url, "api_key": api_key, "max_retries": 0} if base_url else {}
    print(stream_story(anthropic.Anthropic(**options), model))  # type: ignore[arg-type]
    async with anthropic.AsyncAnthropic(**options) as client:  # type: ignore[arg-type]
        print(await ask_twice(client, model))


def main() -> None:
    model = os.environ.get("ANTHROPIC_MODEL", "claude-haiku-4-5")
    if os.environ.get("ANTHROPIC_API_KEY"):
        asyncio.run(run(None, None, model))
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.fake_llm_server import FakeLLMServer

        with FakeLLMServer() as server:
            asyncio.run(run(server.url, "sk-fake", model))
    tracer.flush()


if __name__ == "__main__":
    main()
