"""The stream proxies on their own: chained and pulling modes, hidden chunks, exit handling."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tracer.integrations import _stream
from tracer.integrations._llm import begin
from tracer.integrations._stream import Batched, StreamRecorder, traced_async_stream, traced_stream
from tracer.testing import CapturedEvents

from .conftest import only_model_event


class Words(Batched):
    """A minimal accumulator: joins str chunks."""

    __slots__ = ("words",)

    def __init__(self) -> None:
        super().__init__()
        self.words: list[str] = []

    def take(self, item: Any) -> None:
        self.words.append(item)
        if not self.first_ns:
            self.first_ns = 1

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        return {"content": "".join(self.words)}, {}


class Chained:
    """Shaped like the SDK streams: chunks come from ``self._iterator``."""

    def __init__(self, items: list[Any], fail: bool = False) -> None:
        self._iterator = self._stream(items, fail)
        self.closed = False

    @staticmethod
    def _stream(items: list[Any], fail: bool) -> Iterator[Any]:
        yield from items
        if fail:
            raise RuntimeError("mid-stream failure")

    def __iter__(self) -> Iterator[Any]:
        yield from self._iterator

    def __next__(self) -> Any:
        return next(self._iterator)

    def close(self) -> None:
        self.closed = True


class Pulled:
    """A stream without a generator to chain: the proxy must pull chunks itself."""

    def __init__(self, items: list[Any]) -> None:
        self._items = iter(items)

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        pass


class AsyncPulled:
    def __init__(self, items: list[Any]) -> None:
        self._items = iter(items)

    async def __anext__(self) -> Any:
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        pass


class AsyncChained:
    def __init__(self, items: list[Any]) -> None:
        self._iterator = self._stream(items)

    @staticmethod
    async def _stream(items: list[Any]) -> AsyncIterator[Any]:
        for item in items:
            yield item

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for item in self._iterator:
            yield item

    async def __anext__(self) -> Any:
        return await self._iterator.__anext__()

    async def close(self) -> None:
        pass


def recorder() -> StreamRecorder:
    call = begin("stream")
    assert call is not None
    return StreamRecorder(call, Words())


@pytest.mark.parametrize("kind", [Chained, Pulled])
def test_full_iteration(events: CapturedEvents, kind: type[Any]) -> None:
    stream = traced_stream(kind(["a", "b", "c"]), recorder())
    assert isinstance(stream, kind)
    assert list(stream) == ["a", "b", "c"]
    event = only_model_event(events)
    assert event["outputs"] == {"content": "abc"}
    assert "ended_early" not in event["metadata"]


@pytest.mark.parametrize("kind", [Chained, Pulled])
def test_abandoned_after_a_break(events: CapturedEvents, kind: type[Any]) -> None:
    def read_one() -> None:
        for _item in traced_stream(kind(["a", "b", "c"]), recorder()):
            break

    read_one()
    gc.collect()
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "abandoned"
    assert event["outputs"] == {"content": "a"}


def test_close_in_the_middle(events: CapturedEvents) -> None:
    raw = Chained(["a", "b", "c"])
    stream = traced_stream(raw, recorder())
    assert next(stream) == "a"
    stream.close()
    assert raw.closed
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "closed"
    assert list(stream) == []  # our generator was closed with the stream


def test_error_mid_stream(events: CapturedEvents) -> None:
    with pytest.raises(RuntimeError, match="mid-stream failure"):
        list(traced_stream(Chained(["a"], fail=True), recorder()))
    event = only_model_event(events)
    assert event["error"] == "RuntimeError: mid-stream failure"
    assert event["metadata"]["end_reason"] == "error"


def test_hidden_chunks_are_recorded_not_shown(events: CapturedEvents) -> None:
    stream = traced_stream(Chained(["a", "USAGE", "b"]), recorder(), hide=lambda item: item == "USAGE")
    assert list(stream) == ["a", "b"]
    assert only_model_event(events)["outputs"] == {"content": "aUSAGEb"}


def test_batches_are_taken_in_order(events: CapturedEvents) -> None:
    items = [str(i % 10) for i in range(Batched.BATCH * 3 + 5)]
    assert list(traced_stream(Chained(items), recorder())) == items
    assert only_model_event(events)["outputs"] == {"content": "".join(items)}


@pytest.mark.parametrize("kind", [AsyncChained, AsyncPulled])
def test_async_iteration_and_close(events: CapturedEvents, kind: type[Any]) -> None:
    async def main() -> list[Any]:
        stream = traced_async_stream(kind(["a", "b"]), recorder())
        items = [item async for item in stream]
        partial = traced_async_stream(kind(["x", "y"]), recorder())
        assert await partial.__anext__() == "x"
        await partial.close()
        return items

    assert asyncio.run(main()) == ["a", "b"]
    whole, partial = [e for e in events if e["event_type"] == "model"]
    assert whole["outputs"] == {"content": "ab"}
    assert partial["metadata"]["end_reason"] == "closed"


def test_open_streams_end_at_interpreter_exit(events: CapturedEvents) -> None:
    stream = traced_stream(Chained(["a", "b"]), recorder())
    next(stream)
    _stream._finish_open_streams()  # what the exit handler does
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "process_exit"
    assert event["outputs"] == {"content": "a"}
    del stream
