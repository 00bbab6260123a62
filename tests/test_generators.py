"""Traced generators and async generators cover the whole iteration and never leak context."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

from .conftest import Recorder


def test_generator_event_covers_the_iteration_and_joins_text(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="child")
    def child(x: int) -> int:
        return x

    @t.trace(event_name="stream")
    def stream(n: int) -> Iterator[str]:
        for i in range(n):
            child(i)
            yield f"t{i} "

    assert list(stream(3)) == ["t0 ", "t1 ", "t2 "]
    event = rec.by_name("stream")
    assert event["outputs"] == {"result": "t0 t1 t2 "}
    assert event["metrics"]["item_count"] == 3
    assert event["metrics"]["time_to_first_item_ms"] >= 0
    assert "ended_early" not in event["metadata"]
    children = [e for e in rec.events() if e["event_name"] == "child"]
    assert len(children) == 3
    assert all(c["parent_id"] == event["event_id"] for c in children)
    assert sorted(event["children_ids"]) == sorted(c["event_id"] for c in children)


def test_generator_with_non_text_items_records_the_list(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="nums")
    def nums() -> Iterator[int]:
        yield from (1, 2, 3)

    assert sum(nums()) == 6
    assert rec.by_name("nums")["outputs"] == {"result": [1, 2, 3]}


def test_span_is_not_current_between_items(rec: Recorder) -> None:
    t = rec.tracer
    seen_inside: list[object] = []

    @t.trace(event_name="gen")
    def gen() -> Iterator[int]:
        for i in range(2):
            seen_inside.append(t.current_span())
            yield i

    with t.span("caller") as caller:
        for _ in gen():
            assert t.current_span() is caller  # the generator's span does not leak into the loop
    assert all(s is not None and s.event_name == "gen" for s in seen_inside)
    assert rec.by_name("gen")["parent_id"] == rec.by_name("caller")["event_id"]


def test_break_closes_the_event_as_ended_early(rec: Recorder) -> None:
    closed = []

    @rec.tracer.trace(event_name="endless")
    def endless() -> Iterator[str]:
        try:
            while True:
                yield "x"
        finally:
            closed.append(True)

    for i, _ in enumerate(endless()):
        if i == 2:
            break
    gc.collect()
    event = rec.by_name("endless")
    assert closed == [True]
    assert event["metadata"]["ended_early"] is True
    assert event["outputs"] == {"result": "xxx"}
    assert event["error"] is None


def test_explicit_close_and_garbage_collection(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="g")
    def g() -> Iterator[int]:
        yield 1
        yield 2

    it = g()
    next(it)
    it.close()
    abandoned = g()
    next(abandoned)
    del abandoned
    gc.collect()
    events = rec.events()
    assert [e["metadata"].get("end_reason") for e in events] == ["closed", "closed"]


def test_exception_inside_generator(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="bad")
    def bad() -> Iterator[int]:
        yield 1
        raise RuntimeError("mid-stream")

    got = []
    with pytest.raises(RuntimeError, match="mid-stream"):
        for item in bad():
            got.append(item)
    assert got == [1]
    event = rec.by_name("bad")
    assert event["error"] == "RuntimeError: mid-stream"
    assert event["outputs"] == {"result": [1]}  # the partial output is kept
    assert event["metrics"]["item_count"] == 1


def test_send_and_throw_are_forwarded(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="echo")
    def echo() -> Iterator[object]:
        received = yield "ready"
        while True:
            try:
                received = yield received
            except KeyError:
                received = yield "caught"

    it = echo()
    assert next(it) == "ready"
    assert it.send(5) == 5
    assert it.throw(KeyError("k")) == "caught"
    assert it.send("z") == "z"
    it.close()
    assert rec.by_name("echo")["metrics"]["item_count"] == 4


def test_generator_return_value_is_kept(rec: Recorder) -> None:
    @rec.tracer.trace
    def inner() -> Iterator[int]:
        yield 1
        return "done"  # type: ignore[misc]

    def outer() -> Iterator[int]:
        result = yield from inner()
        assert result == "done"

    assert list(outer()) == [1]


def test_async_generator(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="child")
    async def child() -> None:
        await asyncio.sleep(0)

    @t.trace(event_name="astream")
    async def astream(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await child()
            yield str(i)

    async def main() -> list[str]:
        out = []
        with t.span("caller") as caller:
            async for item in astream(3):
                assert t.current_span() is caller
                out.append(item)
        return out

    assert asyncio.run(main()) == ["0", "1", "2"]
    event = rec.by_name("astream")
    assert event["outputs"] == {"result": "012"} and event["metrics"]["item_count"] == 3
    assert event["parent_id"] == rec.by_name("caller")["event_id"]
    assert {c["parent_id"] for c in rec.events() if c["event_name"] == "child"} == {event["event_id"]}


def test_async_generator_early_exit_and_error(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="ticks")
    async def ticks() -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    @t.trace(event_name="failing")
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ValueError("async boom")

    async def main() -> None:
        agen = ticks()
        async for i in agen:
            if i == 1:
                break
        await agen.aclose()
        with pytest.raises(ValueError):
            async for _ in failing():
                pass

    asyncio.run(main())
    assert rec.by_name("ticks")["metadata"]["end_reason"] == "closed"
    assert rec.by_name("ticks")["outputs"] == {"result": [0, 1]}
    assert rec.by_name("failing")["error"] == "ValueError: async boom"


def test_async_generator_abandoned_is_finalized_by_the_loop(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="abandoned")
    async def abandoned() -> AsyncIterator[int]:
        while True:
            yield 1

    async def main() -> None:
        agen = abandoned()
        await agen.__anext__()
        del agen
        gc.collect()
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert rec.by_name("abandoned")["metadata"]["ended_early"] is True


def test_never_started_generator_records_nothing(rec: Recorder) -> None:
    @rec.tracer.trace
    def unused() -> Iterator[int]:
        yield 1

    gen = unused()
    del gen
    gc.collect()
    assert rec.events() == []
