"""The stream proxies on their own: chained and pulling modes, hidden chunks, exit handling."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tracer import _lifecycle
from tracer.integrations._llm import Call, begin
from tracer.integrations._stream import StreamRecorder, traced_async_stream, traced_manager, traced_stream
from tracer.testing import CapturedEvents

from .conftest import only_model_event


class Words(StreamRecorder):
    """A minimal recorder: joins str chunks."""

    __slots__ = ("words",)

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.words: list[str] = []

    def take(self, item: Any) -> bool:
        self.words.append(item)
        return bool(item)  # an empty word is no output

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        return {"content": "".join(self.words)}, {}


class WordsAsTheyPass(Words):
    """The same, taking each chunk as it passes (``BATCH = 1``, as for Mistral's slow parsing)."""

    __slots__ = ()

    BATCH = 1


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
        # A plain for loop, as in the SDK: leaving it early does not close the generator it reads.
        for item in self._iterator:  # noqa: UP028
            yield item

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


def recorder(kind: type[Words] = Words) -> Words:
    call = begin("stream")
    assert call is not None
    words = kind(call)
    words.start(None, "x-request-id")
    return words


# Every recorder setting: chunks kept and taken in batches, and taken one by one as they pass.
WORDS = pytest.mark.parametrize("words", [Words, WordsAsTheyPass])


@WORDS
@pytest.mark.parametrize("kind", [Chained, Pulled])
def test_full_iteration(events: CapturedEvents, kind: type[Any], words: type[Words]) -> None:
    stream = traced_stream(kind(["a", "b", "c"]), recorder(words))
    assert isinstance(stream, kind)
    assert list(stream) == ["a", "b", "c"]
    event = only_model_event(events)
    assert event["outputs"] == {"content": "abc"}
    assert "ended_early" not in event["metadata"]


@WORDS
@pytest.mark.parametrize("kind", [Chained, Pulled])
def test_abandoned_after_a_break(events: CapturedEvents, kind: type[Any], words: type[Words]) -> None:
    def read_one() -> None:
        for _item in traced_stream(kind(["a", "b", "c"]), recorder(words)):
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


@WORDS
def test_error_mid_stream(events: CapturedEvents, words: type[Words]) -> None:
    with pytest.raises(RuntimeError, match="mid-stream failure"):
        list(traced_stream(Chained(["a"], fail=True), recorder(words)))
    event = only_model_event(events)
    assert event["error"] == "RuntimeError: mid-stream failure"
    assert event["metadata"]["end_reason"] == "error"


@WORDS
def test_hidden_chunks_are_recorded_not_shown(events: CapturedEvents, words: type[Words]) -> None:
    stream = traced_stream(Chained(["a", "USAGE", "b"]), recorder(words), hide=lambda item: item == "USAGE")
    assert list(stream) == ["a", "b"]
    assert only_model_event(events)["outputs"] == {"content": "aUSAGEb"}


def test_batches_are_taken_in_order(events: CapturedEvents) -> None:
    items = [str(i % 10) for i in range(StreamRecorder.BATCH * 3 + 5)]
    assert list(traced_stream(Chained(items), recorder())) == items
    assert only_model_event(events)["outputs"] == {"content": "".join(items)}


@WORDS
@pytest.mark.parametrize("kind", [AsyncChained, AsyncPulled])
def test_async_iteration_and_close(events: CapturedEvents, kind: type[Any], words: type[Words]) -> None:
    async def main() -> list[Any]:
        stream = traced_async_stream(kind(["a", "b"]), recorder(words))
        items = [item async for item in stream]
        partial = traced_async_stream(kind(["x", "y"]), recorder(words))
        assert await partial.__anext__() == "x"
        await partial.close()
        return items

    assert asyncio.run(main()) == ["a", "b"]
    whole, partial = [e for e in events if e["event_type"] == "model"]
    assert whole["outputs"] == {"content": "ab"}
    assert partial["metadata"]["end_reason"] == "closed"


@WORDS
def test_open_streams_end_at_interpreter_exit(events: CapturedEvents, words: type[Words]) -> None:
    stream = traced_stream(Chained(["a", "b"]), recorder(words))
    next(stream)
    _lifecycle.finish_open_streams()  # what the exit handler does first
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "process_exit"
    assert event["outputs"] == {"content": "a"}
    del stream


@WORDS
def test_time_to_first_token_is_when_the_first_output_arrived(events: CapturedEvents, words: type[Words]) -> None:
    """Chunks taken in batches, later, or as they pass: the first output chunk's own arrival time counts."""

    def slow(items: list[tuple[float, str]]) -> Iterator[str]:
        for delay, item in items:
            time.sleep(delay)
            yield item

    raw = Chained([])
    raw._iterator = slow([(0, ""), (0.05, "a"), (0.2, "b")])
    assert list(traced_stream(raw, recorder(words))) == ["", "a", "b"]
    event = only_model_event(events)
    assert 50 <= event["metrics"]["time_to_first_token_ms"] < 200
    assert event["outputs"] == {"content": "ab"}


@pytest.mark.parametrize("kind", [Chained, Pulled])
def test_chunks_taken_as_they_pass(events: CapturedEvents, kind: type[Any]) -> None:
    """With BATCH = 1 each chunk is recorded before the caller gets it; nothing waits in the buffer."""
    words = recorder(WordsAsTheyPass)
    stream = traced_stream(kind(["a", "b", "c"]), words)
    seen: list[str] = []
    for item in stream:
        seen.append(item)
        assert words.words == seen
        assert words.buffer is None and words.arrivals is None  # it has none
    assert only_model_event(events)["outputs"] == {"content": "abc"}


def test_chunks_taken_as_they_pass_async(events: CapturedEvents) -> None:
    async def main() -> list[str]:
        words = recorder(WordsAsTheyPass)
        seen: list[str] = []
        async for item in traced_async_stream(AsyncChained(["a", "b"]), words):
            seen.append(item)
            assert words.words == seen and words.buffer is None
        return seen

    assert asyncio.run(main()) == ["a", "b"]
    assert only_model_event(events)["outputs"] == {"content": "ab"}


def test_a_failing_take_loses_no_chunk(events: CapturedEvents, monkeypatch: pytest.MonkeyPatch) -> None:
    """In production a recorder bug is logged once: the caller still gets every chunk and the event ends."""
    monkeypatch.setenv("TRACER_RAISE_INTERNAL_ERRORS", "0")

    class Fragile(WordsAsTheyPass):
        __slots__ = ()

        def take(self, item: Any) -> bool:
            if item == "b":
                raise ValueError("a recorder bug")
            return super().take(item)

    assert list(traced_stream(Chained(["a", "b", "c"]), recorder(Fragile))) == ["a", "b", "c"]
    event = only_model_event(events)
    assert event["outputs"] == {"content": "ac"}
    assert "ended_early" not in event["metadata"]


class Helper:
    """Shaped like anthropic's MessageStream: reads its raw stream through its own generator."""

    def __init__(self, raw: Chained, own_generator: bool = True) -> None:
        self._raw_stream = raw
        self._iterator = self._stream() if own_generator else None

    # Plain for loops, as in the SDK: leaving one early does not close the iterator it reads.
    def _stream(self) -> Iterator[Any]:
        for item in self._raw_stream:  # noqa: UP028
            yield item

    def __iter__(self) -> Iterator[Any]:
        for item in self._raw_stream if self._iterator is None else self._iterator:  # noqa: UP028
            yield item


class Manager:
    def __init__(self, helper: Helper) -> None:
        self.helper = helper
        self.exited = False

    def __enter__(self) -> Helper:
        return self.helper

    def __exit__(self, *exc: object) -> None:
        self.exited = True


def manager(helper: Helper) -> Any:
    return traced_manager(
        Manager(helper), lambda: begin("helper"), lambda call, _helper: (Words(call), False), "", False
    )


@pytest.mark.parametrize("own_generator", [True, False])
def test_helper_stream_read_to_the_end(events: CapturedEvents, own_generator: bool) -> None:
    raw = Chained(["a", "b"])
    helper = Helper(raw, own_generator)
    with manager(helper) as entered:
        assert entered is helper
        assert list(entered) == ["a", "b"]
    event = only_model_event(events)
    assert event["outputs"] == {"content": "ab"}
    assert "ended_early" not in event["metadata"]
    assert helper._raw_stream is raw  # nothing of ours is left in the helper


@pytest.mark.parametrize("own_generator", [True, False])
def test_helper_stream_left_early(events: CapturedEvents, own_generator: bool) -> None:
    helper = Helper(Chained(["a", "b", "c"]), own_generator)
    with manager(helper) as entered:
        for _item in entered:
            break
    event = only_model_event(events)
    assert event["metadata"]["end_reason"] == "closed"
    assert event["outputs"] == {"content": "a"}
