"""Async functions, concurrent tasks and streaming generators keep their nesting.

python examples/async_and_generators.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import tracer

tracer.init(project="examples", session_name="async-and-generators", exporter=tracer.ConsoleExporter())


@tracer.trace(event_type="model")
async def fake_llm(prompt: str) -> AsyncIterator[str]:
    """A streaming 'model': the event covers the whole stream, with time to first item."""
    for word in f"echo: {prompt}".split():
        await asyncio.sleep(0.001)
        yield word + " "


@tracer.trace
def tokenize(text: str) -> Iterator[str]:
    yield from text.split()


@tracer.trace
async def ask(prompt: str) -> str:
    tokens = list(tokenize(prompt))
    chunks = [chunk async for chunk in fake_llm(" ".join(tokens))]
    return "".join(chunks).strip()


@tracer.trace
async def main() -> list[str]:
    # Sibling tasks stay siblings under main().
    return await asyncio.gather(ask("hello there"), ask("how are you"), ask("bye now"))


if __name__ == "__main__":
    print(asyncio.run(main()))
    tracer.flush()
