"""Traced generators and async generators cover the whole iteration and never leak context."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from tracer import Span, Tracer
from tracer._tracer import recorder_of

from ..conftest import Recorder


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


class CleanupError(Exception):
    pass


def test_error_raised_by_cleanup_on_close_is_recorded_and_reaches_the_caller(rec: Recorder) -> None:
    raised: list[BaseException] = []

    @rec.tracer.trace(event_name="leaky")
    def leaky() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            raised.append(CleanupError("connection reset while closing"))
            raise raised[-1]

    @rec.tracer.trace(event_name="stubborn")
    def stubborn() -> Iterator[int]:
        try:
            yield 1
        finally:
            yield 2  # ignoring GeneratorExit: Python raises RuntimeError from close()

    it = leaky()
    assert next(it) == 1
    with pytest.raises(CleanupError) as caught:
        it.close()
    assert caught.value is raised[0]
    it2 = stubborn()
    next(it2)
    with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
        it2.close()
    event = rec.by_name("leaky")
    assert event["error"] == "CleanupError: connection reset while closing"
    assert "CleanupError" in event["metadata"]["traceback"]
    assert (event["metadata"]["end_reason"], event["metadata"]["ended_early"]) == ("closed", True)
    assert event["outputs"] == {"result": [1]} and event["metrics"]["item_count"] == 1
    assert rec.by_name("stubborn")["error"] == "RuntimeError: generator ignored GeneratorExit"
    assert rec.tracer.current_span() is None


def test_error_raised_by_cleanup_during_garbage_collection_is_recorded(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda info: unraisable.append(info.exc_value))

    @rec.tracer.trace(event_name="abandoned")
    def abandoned() -> Iterator[int]:
        try:
            yield 1
        finally:
            raise CleanupError("in finally")

    it = abandoned()
    next(it)
    del it
    gc.collect()
    assert [type(e) for e in unraisable] == [CleanupError]  # Python reports it as usual
    event = rec.by_name("abandoned")
    assert event["error"] == "CleanupError: in finally" and event["metadata"]["end_reason"] == "closed"


def test_error_raised_by_async_cleanup_on_aclose_is_recorded(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="aleaky")
    async def aleaky() -> AsyncIterator[int]:
        try:
            yield 1
        finally:
            await asyncio.sleep(0)
            raise CleanupError("async cleanup")

    async def main() -> None:
        agen = aleaky()
        assert await agen.__anext__() == 1
        with pytest.raises(CleanupError, match="async cleanup"):
            await agen.aclose()

    asyncio.run(main())
    event = rec.by_name("aleaky")
    assert event["error"] == "CleanupError: async cleanup" and event["metadata"]["end_reason"] == "closed"


def test_generator_parent_is_the_span_current_at_its_first_next(rec: Recorder) -> None:
    """The documented choice: a traced generator function stays a generator function (frameworks
    dispatch on inspect.isgeneratorfunction), so its event starts at the first next()."""
    t = rec.tracer

    @t.trace(event_name="gen")
    def gen() -> Iterator[int]:
        yield 1

    assert inspect.isgeneratorfunction(gen)
    with t.span("creator"):
        it = gen()
    with t.span("consumer"):
        assert list(it) == [1]
    assert rec.by_name("gen")["parent_id"] == rec.by_name("consumer")["event_id"]


def _streaming_handler(t: Tracer) -> tuple[Iterator[str], Span]:
    """A request handler: its span returns a traced stream for the framework to send later."""

    @t.trace(event_name="tokenize")
    def tokenize(word: str) -> str:
        return word

    @t.trace(event_name="answer_stream")
    def answer_stream(question: str) -> Iterator[str]:
        for word in question.split():
            assert t.current_span() is not None and t.current_span().event_name == "answer_stream"  # type: ignore[union-attr]
            yield tokenize(word) + " "

    with t.session("request"), t.span("handler") as handler:
        stream = t.bind_context(answer_stream("why is the sky blue"))
    return stream, handler


def _check_streaming_events(rec: Recorder, handler: Span) -> None:
    stream = rec.by_name("answer_stream")
    handler_event = rec.by_name("handler")
    assert stream["parent_id"] == handler.event_id  # parented where it was created...
    assert stream["session_id"] == handler.session_id  # ...in that span's session
    assert stream["outputs"] == {"result": "why is the sky blue "}
    # The handler ended before the stream did, so it cannot list it (README: Context).
    assert handler_event["children_ids"] == []
    tokens = [e for e in rec.events() if e["event_name"] == "tokenize"]
    assert len(tokens) == 5 and {e["parent_id"] for e in tokens} == {stream["event_id"]}


def test_streaming_response_consumed_in_another_thread_after_the_handler_ended(rec: Recorder) -> None:
    t = rec.tracer
    stream, handler = _streaming_handler(t)
    assert handler.duration_ms is not None  # ended
    seen_between_items: list[object] = []

    def framework_sends() -> None:
        for _chunk in stream:
            seen_between_items.append(t.current_span())

    sender = threading.Thread(target=framework_sends)
    sender.start()
    sender.join()
    assert seen_between_items == [None] * 5  # current only while the generator body runs
    _check_streaming_events(rec, handler)


def test_streaming_response_consumed_in_another_task_after_the_handler_ended(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="tokenize")
    def tokenize(word: str) -> str:
        return word

    @t.trace(event_name="answer_stream")
    async def answer_stream(question: str) -> AsyncIterator[str]:
        for word in question.split():
            await asyncio.sleep(0)
            yield tokenize(word) + " "

    async def handler_fn() -> tuple[AsyncIterator[str], Span]:
        async with t.span("handler") as handler:
            return t.bind_context(answer_stream("why is the sky blue")), handler

    async def framework_sends(body: AsyncIterator[str]) -> list[object]:
        seen = []
        async for _chunk in body:
            seen.append(t.current_span())
        return seen

    async def main() -> tuple[list[object], Span]:
        with t.session("request"):
            body, handler = await handler_fn()
        # The framework's task starts from an empty context: nothing of the request's is current.
        task = contextvars.Context().run(asyncio.create_task, framework_sends(body))
        return await task, handler

    seen, handler = asyncio.run(main())
    assert seen == [None] * 5
    _check_streaming_events(rec, handler)


def test_streaming_response_without_bind_context_is_a_root_event(rec: Recorder) -> None:
    """What bind_context() is for: consumed where nothing is current, the stream has no parent."""
    t = rec.tracer

    @t.trace(event_name="answer_stream")
    def answer_stream() -> Iterator[str]:
        yield "x"

    with t.span("handler"):
        stream = answer_stream()
    consumer = threading.Thread(target=lambda: list(stream))
    consumer.start()
    consumer.join()
    event = rec.by_name("answer_stream")
    assert event["parent_id"] == event["session_id"]


def test_unprintable_exception_inside_a_generator_ends_its_span(rec: Recorder) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    @rec.tracer.trace(event_name="bad_stream")
    def bad_stream() -> Iterator[int]:
        yield 1
        raise Unprintable()

    @rec.tracer.trace(event_name="abad_stream")
    async def abad_stream() -> AsyncIterator[int]:
        yield 1
        raise Unprintable()

    async def drain() -> None:
        async for _ in abad_stream():
            pass

    with pytest.raises(Unprintable):
        list(bad_stream())
    with pytest.raises(Unprintable):
        asyncio.run(drain())
    assert recorder_of(rec.tracer).open_spans == {}
    for name in ("bad_stream", "abad_stream"):
        event = rec.by_name(name)
        assert event["error"] == "Unprintable: <str() raised RuntimeError>" and event["outputs"] == {"result": [1]}
