"""Nesting stays right under deep recursion, asyncio, threads, executors and explicit binding."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import tracer
from tracer import InMemoryExporter, Tracer

from ..conftest import Recorder


def _check_tree(events: list[dict]) -> dict[str, dict]:
    """Every parent_id points at a recorded event (or the session); children_ids mirror parent_id."""
    by_id = {e["event_id"]: e for e in events}
    assert len(by_id) == len(events), "event ids are unique"
    for event in events:
        parent = event["parent_id"]
        if parent != event["session_id"]:
            assert parent in by_id, event
            assert event["event_id"] in by_id[parent]["children_ids"]
    return by_id


def test_deep_nesting(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="level")
    def level(n: int) -> int:
        return 0 if n == 0 else 1 + level(n - 1)

    assert level(200) == 200
    events = rec.events()
    assert len(events) == 201
    by_id = _check_tree(events)
    depth = {e["inputs"]["n"]: e for e in events}
    for n in range(200):
        assert depth[n]["parent_id"] == depth[n + 1]["event_id"]
    assert depth[200]["parent_id"] == depth[200]["session_id"]
    assert len(by_id) == 201


def test_gather_and_create_task_keep_siblings_siblings(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="leaf")
    async def leaf(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))
        return i

    @t.trace(event_name="root")
    async def root() -> list[int]:
        gathered = await asyncio.gather(*(leaf(i) for i in range(5)))
        task = asyncio.create_task(leaf(99))
        return [*gathered, await task]

    asyncio.run(root())
    events = rec.events()
    root_event = next(e for e in events if e["event_name"] == "root")
    leaves = [e for e in events if e["event_name"] == "leaf"]
    assert len(leaves) == 6
    assert {e["parent_id"] for e in leaves} == {root_event["event_id"]}
    assert len(root_event["children_ids"]) == 6


def test_task_group_siblings(rec: Recorder) -> None:
    t = rec.tracer
    if not hasattr(asyncio, "TaskGroup"):  # Python 3.10
        return

    @t.trace(event_name="member")
    async def member(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main() -> None:
        async with t.span("group") as group, asyncio.TaskGroup() as tg:
            for i in range(4):
                tg.create_task(member(i))
        assert group.event_id

    asyncio.run(main())
    group = rec.by_name("group")
    members = [e for e in rec.events() if e["event_name"] == "member"]
    assert {e["parent_id"] for e in members} == {group["event_id"]}


def test_thousand_tasks_and_eight_threads_build_correct_trees() -> None:
    # A queue large enough for the whole burst: this test is about nesting, not about back-pressure.
    batch_rec = Recorder(batch=True, max_queue_size=10_000)
    t = batch_rec.tracer

    @t.trace(event_name="inner")
    def inner(tag: str) -> str:
        return tag

    @t.trace(event_name="middle")
    def middle(tag: str) -> str:
        return inner(tag)

    @t.trace(event_name="ainner")
    async def ainner(tag: str) -> str:
        await asyncio.sleep(0)
        return tag

    @t.trace(event_name="aouter")
    async def aouter(tag: str) -> str:
        await asyncio.sleep(0)
        return await ainner(tag)

    async def many() -> None:
        await asyncio.gather(*(aouter(f"task{i}") for i in range(1000)))

    def threaded(n: int) -> None:
        for i in range(50):
            with t.span("thread-root", inputs={"tag": f"th{n}-{i}"}):
                middle(f"th{n}-{i}")

    threads = [threading.Thread(target=threaded, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    asyncio.run(many())
    for thread in threads:
        thread.join()
    events = batch_rec.events()
    assert len(events) == 2000 + 8 * 50 * 3
    by_id = _check_tree(events)
    for event in events:
        if event["event_name"] in ("ainner", "inner"):
            parent = by_id[event["parent_id"]]
            # the parent was called with the same tag, so no cross-talk between tasks or threads
            assert parent["inputs"]["tag"] == event["inputs"]["tag"]
        if event["event_name"] == "middle":
            assert by_id[event["parent_id"]]["inputs"]["tag"] == event["inputs"]["tag"]
    assert batch_rec.tracer.stats()["dropped_total"] == 0
    t.shutdown()


def test_thread_pool_and_threads_nest_under_the_submitting_span(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="work")
    def work(i: int) -> int:
        return i

    with t.span("parent") as parent:
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(work, range(3))) == [0, 1, 2]
        thread = threading.Thread(target=work, args=(7,))
        thread.start()
        thread.join()

    async def via_loop() -> None:
        with t.span("loop-parent"):
            await asyncio.to_thread(work, 10)
            await asyncio.get_running_loop().run_in_executor(None, work, 11)

    asyncio.run(via_loop())
    works = {e["inputs"]["i"]: e for e in rec.events() if e["event_name"] == "work"}
    assert {works[i]["parent_id"] for i in (0, 1, 2, 7)} == {parent.event_id}
    assert {works[i]["parent_id"] for i in (10, 11)} == {rec.by_name("loop-parent")["event_id"]}


def test_submitted_calls_keep_their_own_arguments_named_like_ours(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="keywords")
    def keywords(fn: int, /, span: int, session: int, **rest: int) -> int:
        return fn + span + session + sum(rest.values())

    with t.span("parent") as parent, ThreadPoolExecutor(1) as pool:
        assert pool.submit(keywords, 1, span=2, session=3, fn=4).result() == 10
    assert rec.by_name("keywords")["parent_id"] == parent.event_id


def test_thread_subclass_overriding_run_nests(rec: Recorder) -> None:
    t = rec.tracer

    class Worker(threading.Thread):
        def run(self) -> None:
            with t.span("in-thread"):
                pass

    with t.span("spawner"):
        worker = Worker()
        worker.start()
        worker.join()
    assert rec.by_name("in-thread")["parent_id"] == rec.by_name("spawner")["event_id"]


def test_thread_propagation_can_be_turned_off() -> None:
    from tracer._context import install_thread_propagation, uninstall_thread_propagation

    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False, propagate_to_threads=False)
    uninstall_thread_propagation()
    try:
        with t.span("parent"), ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: t.span("orphan").__enter__().end()).result()
        orphan = next(e for e in memory.events if e["event_name"] == "orphan")
        assert orphan["parent_id"] == orphan["session_id"]
    finally:
        install_thread_propagation()
        t.shutdown()


def test_bind_context_for_other_pools(rec: Recorder) -> None:
    t = rec.tracer
    results: list[str] = []

    def job() -> None:
        with t.span("bound-child"):
            results.append("ran")

    with t.span("binder"):
        bound = tracer.bind_context(job)
    runner = threading.Thread(target=bound)
    runner.start()  # started outside any span: only bind_context carries the parent
    runner.join()
    assert results == ["ran"]
    assert rec.by_name("bound-child")["parent_id"] == rec.by_name("binder")["event_id"]


def test_span_handle_and_current_span(rec: Recorder) -> None:
    t = rec.tracer
    assert t.current_span() is None
    with t.span("outer", event_type="chain", inputs={"q": 1}, metadata={"m": 1}) as outer:
        assert t.current_span() is outer
        with t.span("inner") as inner:
            assert inner.parent_id == outer.event_id
            assert inner.session_id == outer.session_id
            inner.update(outputs={"a": 1}, metrics={"score": 0.5}, feedback={"ok": True})
            inner.update(outputs={"b": 2}, user_properties={"user": "u1"}, config={"model": "x"})
            assert t.enrich_span(metadata={"enriched": True})
        assert t.current_span() is outer
    assert t.current_span() is None
    assert not t.enrich_span(metadata={"nowhere": 1})
    inner_event = rec.by_name("inner")
    assert inner_event["outputs"] == {"a": 1, "b": 2}
    assert inner_event["metrics"] == {"score": 0.5}
    assert inner_event["feedback"] == {"ok": True}
    assert inner_event["user_properties"] == {"user": "u1"}
    assert inner_event["config"] == {"model": "x"}
    assert inner_event["metadata"] == {"enriched": True}
    outer_event = rec.by_name("outer")
    assert outer_event["inputs"] == {"q": 1} and outer_event["metadata"] == {"m": 1}
    assert outer_event["event_id"] == outer.event_id and outer_event["parent_id"] == outer.session_id


def test_span_block_records_and_reraises_errors(rec: Recorder) -> None:
    t = rec.tracer
    try:
        with t.span("failing"):
            raise OSError("disk")
    except OSError as exc:
        assert str(exc) == "disk"
    with t.span("marked") as s:
        s.set_error("custom failure")
    assert rec.by_name("failing")["error"] == "OSError: disk"
    assert rec.by_name("marked")["error"] == "custom failure"


def test_async_with_span(rec: Recorder) -> None:
    t = rec.tracer

    async def main() -> None:
        async with t.span("a-outer") as outer:
            await asyncio.sleep(0)
            async with t.span("a-inner") as inner:
                assert inner.parent_id == outer.event_id

    asyncio.run(main())
    assert rec.by_name("a-inner")["parent_id"] == rec.by_name("a-outer")["event_id"]


def test_timing_fields(rec: Recorder) -> None:
    import time

    before = int(time.time() * 1000)
    with rec.tracer.span("timed"):
        time.sleep(0.02)
    after = int(time.time() * 1000)
    event = rec.by_name("timed")
    assert isinstance(event["start_time"], int) and isinstance(event["end_time"], int)
    assert before - 1 <= event["start_time"] <= event["end_time"] <= after + 1
    assert 19 <= event["duration"] < 1000
    # Both ends come from one clock, rounded down to the millisecond each.
    assert event["end_time"] - event["start_time"] in (int(event["duration"]), int(event["duration"]) + 1)


def test_bind_context_binds_iterators_and_forwards_close(rec: Recorder) -> None:
    """Any (async) iterator can be bound: each step runs under the span current when it was bound."""
    from tracer._context import current_span_var

    t = rec.tracer
    seen: list[str | None] = []

    class Chunks:
        """An SDK-style stream object: an iterator with close(), not a generator."""

        def __init__(self) -> None:
            self.left = 3
            self.closed_under: str | None = "never"

        def __iter__(self) -> Chunks:
            return self

        def __next__(self) -> int:
            span = current_span_var.get()  # the handler has ended: current_span() says None
            seen.append(span.event_name if span is not None else None)
            if not self.left:
                raise StopIteration
            self.left -= 1
            return self.left

        def close(self) -> None:
            span = current_span_var.get()
            self.closed_under = span.event_name if span is not None else None

    class AChunks:
        def __init__(self) -> None:
            self.left = 2

        def __aiter__(self) -> AChunks:
            return self

        async def __anext__(self) -> int:
            span = current_span_var.get()
            seen.append(span.event_name if span is not None else None)
            if not self.left:
                raise StopAsyncIteration
            self.left -= 1
            return self.left

    chunks, partial = Chunks(), Chunks()
    with t.span("handler"):
        bound = t.bind_context(chunks)
        bound_partial = t.bind_context(partial)
        abound = t.bind_context(AChunks())
    assert list(bound) == [2, 1, 0]
    next(bound_partial)
    bound_partial.close()  # type: ignore[attr-defined]

    async def drain() -> list[int]:
        return [item async for item in abound]

    assert asyncio.run(drain()) == [1, 0]
    assert seen == ["handler"] * 4 + ["handler"] + ["handler"] * 3
    assert partial.closed_under == "handler" and chunks.closed_under == "never"
    assert current_span_var.get() is None


def test_a_child_still_running_when_its_parent_ends_is_listed_but_one_started_after_is_not(rec: Recorder) -> None:
    t = rec.tracer
    started, parent_ended = threading.Event(), threading.Event()

    def slow_child() -> None:
        with t.span("slow-child"):
            started.set()
            parent_ended.wait(10)  # still running when its parent ends

    def late_child() -> None:
        with t.span("late-child"):
            pass

    with t.span("parent"):
        worker = threading.Thread(target=t.bind_context(slow_child))
        worker.start()
        assert started.wait(10)
        late = t.bind_context(late_child)  # called after the parent ended
    parent_ended.set()
    worker.join(10)
    late()
    parent, slow, after = rec.by_name("parent"), rec.by_name("slow-child"), rec.by_name("late-child")
    assert slow["parent_id"] == after["parent_id"] == parent["event_id"]
    assert parent["children_ids"] == [slow["event_id"]]  # started before the parent ended
    assert parent["event_type"] == "chain"
    assert slow["end_time"] >= parent["end_time"]
