"""@trace on every kind of callable: naming, typing, inputs, outputs, errors."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys

import pytest

import tracer
from tracer import Tracer
from tracer._tracer import recorder_of

from ..conftest import Recorder


def test_input_binding_follows_the_signature(rec: Recorder) -> None:
    """Defaults applied, *rest as a list, keyword-only and **kw flattened by name."""

    @rec.tracer.trace
    def f(a, b=2, *rest, c, **kw):  # type: ignore[no-untyped-def]
        return a

    f(1, 3, 4, 5, c=6, d=7)
    assert rec.by_name("test_input_binding_follows_the_signature.<locals>.f")["inputs"] == {
        "a": 1,
        "b": 3,
        "rest": [4, 5],
        "c": 6,
        "d": 7,
    }


def test_defaults_and_positional_only_parameters(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="g")
    def g(x, /, y=10, *, z="zz"):  # type: ignore[no-untyped-def]
        return x + y

    assert g(1) == 11
    assert rec.by_name("g")["inputs"] == {"x": 1, "y": 10, "z": "zz"}


def test_output_is_recorded_as_result(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="out")
    def out() -> dict[str, int]:
        return {"n": 1}

    out()
    assert rec.by_name("out")["outputs"] == {"result": {"n": 1}}


def test_wrapped_function_keeps_its_identity() -> None:
    t = Tracer(exporter=tracer.InMemoryExporter(), batch=False)

    def plain(a: int, b: str = "x") -> str:
        """Doc."""
        return b * a

    async def coro(a: int) -> int:
        return a

    def gen(n: int):  # type: ignore[no-untyped-def]
        yield n

    async def agen(n: int):  # type: ignore[no-untyped-def]
        yield n

    for fn in (plain, coro, gen, agen):
        wrapped = t.trace(fn)
        assert wrapped.__name__ == fn.__name__
        assert wrapped.__doc__ == fn.__doc__
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(fn)
        assert inspect.isgeneratorfunction(wrapped) == inspect.isgeneratorfunction(fn)
        assert inspect.isasyncgenfunction(wrapped) == inspect.isasyncgenfunction(fn)
    t.shutdown()


def test_bad_event_type_fails_at_decoration_time() -> None:
    with pytest.raises(ValueError, match="event_type must be one of"):
        tracer.trace(event_type="llm")
    with pytest.raises(ValueError, match="event_type"):
        tracer.span("x", event_type="bogus")


def test_event_type_defaults_to_chain_with_children_else_tool(rec: Recorder) -> None:
    @rec.tracer.trace
    def leaf() -> int:
        return 1

    @rec.tracer.trace
    def parent() -> int:
        return leaf()

    parent()
    events = {e["event_name"].rsplit(".", 1)[-1]: e for e in rec.events()}
    assert events["parent"]["event_type"] == "chain"
    assert events["leaf"]["event_type"] == "tool"
    assert events["leaf"]["parent_id"] == events["parent"]["event_id"]
    assert events["parent"]["children_ids"] == [events["leaf"]["event_id"]]
    assert events["parent"]["parent_id"] == events["parent"]["session_id"]


def test_explicit_event_type_config_and_metadata(rec: Recorder) -> None:
    @rec.tracer.trace(event_type="model", config={"model": "m"}, metadata={"k": 1})
    def call() -> str:
        return "hi"

    call()
    event = rec.events()[0]
    assert (event["event_type"], event["config"], event["metadata"]) == ("model", {"model": "m"}, {"k": 1})


def test_exception_is_recorded_and_reraised_unchanged(rec: Recorder) -> None:
    calls = []
    error = ValueError("bad input")

    @rec.tracer.trace(event_name="boom")
    def boom() -> None:
        calls.append(1)
        raise error

    with pytest.raises(ValueError) as caught:
        boom()
    assert caught.value is error
    assert calls == [1]  # never re-run
    events = rec.events()
    assert len(events) == 1  # no second "_error" event
    assert events[0]["error"] == "ValueError: bad input"
    assert "Traceback" in events[0]["metadata"]["traceback"]
    assert "raise error" in events[0]["metadata"]["traceback"]


def test_async_function(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="inner")
    async def inner(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @rec.tracer.trace(event_name="outer")
    async def outer() -> int:
        return await inner(2)

    assert asyncio.run(outer()) == 4
    inner_event, outer_event = rec.by_name("inner"), rec.by_name("outer")
    assert inner_event["parent_id"] == outer_event["event_id"]
    assert inner_event["inputs"] == {"x": 2} and inner_event["outputs"] == {"result": 4}


def test_async_exception_passes_through(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="afail")
    async def afail() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        asyncio.run(afail())
    assert rec.by_name("afail")["error"] == "KeyError: 'k'"


class Service:
    factor = 3

    def __init__(self) -> None:
        self.calls = 0

    @tracer.trace
    def method(self, x: int) -> int:
        self.calls += 1
        return x * self.factor

    @classmethod
    @tracer.trace
    def cm_inner(cls, x: int) -> int:
        return x + cls.factor

    @tracer.trace
    @classmethod
    def cm_outer(cls, x: int) -> int:
        return x - cls.factor

    @tracer.trace
    @staticmethod
    def sm(x: int) -> int:
        return -x

    @tracer.trace
    async def amethod(self, x: int) -> int:
        return x


def test_methods_drop_self_and_cls() -> None:
    with tracer.testing.capture() as events:
        service = Service()
        assert service.method(2) == 6
        assert Service.cm_inner(1) == 4
        assert Service.cm_outer(5) == 2
        assert service.sm(7) == -7
        assert asyncio.run(service.amethod(9)) == 9
    by_name = {e["event_name"]: e for e in events}
    assert by_name["Service.method"]["inputs"] == {"x": 2}
    assert by_name["Service.cm_inner"]["inputs"] == {"x": 1}
    assert by_name["Service.cm_outer"]["inputs"] == {"x": 5}
    assert by_name["Service.sm"]["inputs"] == {"x": 7}
    assert by_name["Service.amethod"]["inputs"] == {"x": 9}


def test_callable_instance(rec: Recorder) -> None:
    class Scorer:
        def __call__(self, text: str) -> int:
            return len(text)

    scored = rec.tracer.trace(Scorer(), event_name="scorer")
    assert scored("abcd") == 4
    assert rec.by_name("scorer")["inputs"] == {"text": "abcd"}


def test_capture_flags_and_ignored_inputs(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="nocap", capture_inputs=False, capture_output=False)
    def nocap(secret_sauce: str) -> str:
        return secret_sauce

    @rec.tracer.trace(event_name="partial", ignore_inputs=("big", "extra"))
    def partial(small: int, big: str, **kw: int) -> int:
        return small

    nocap("x")
    partial(1, "y" * 10, extra=3, kept=4)
    assert rec.by_name("nocap")["inputs"] == {} and rec.by_name("nocap")["outputs"] == {}
    assert rec.by_name("partial")["inputs"] == {"small": 1, "kept": 4}


def test_invalid_call_raises_the_users_type_error(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="two")
    def two(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        two(1)  # type: ignore[call-arg]
    assert rec.by_name("two")["error"].startswith("TypeError")


def test_decorated_before_init_uses_the_configured_default_tracer() -> None:
    """Module-level @trace resolves the default tracer per call, so init() after decoration works."""

    @tracer.trace(event_name="early")
    def early() -> int:
        return 5

    memory = tracer.InMemoryExporter()
    tracer.init(exporter=memory, batch=False, project="late")
    assert early() == 5
    assert [(e["event_name"], e["project"]) for e in memory.events] == [("early", "late")]


def test_disabled_calls_straight_through() -> None:
    memory = tracer.InMemoryExporter()
    t = Tracer(exporter=memory, disabled=True, batch=False)

    @t.trace
    def f(x: int) -> int:
        assert t.current_span() is None
        return x

    @t.trace
    def g():  # type: ignore[no-untyped-def]
        yield 1

    with t.span("block") as s:
        s.update(metadata={"a": 1})
    assert f(3) == 3 and list(g()) == [1]
    assert t.flush() and memory.events == []


def _retry(fn):  # type: ignore[no-untyped-def]
    """A typical framework decorator: functools.wraps around (*args, **kwargs)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return fn(*args, **kwargs)

    return wrapper


def _inject_db(fn):  # type: ignore[no-untyped-def]
    """A wrapper that accepts calls its wrapped function does not: it supplies the first argument."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        if args and isinstance(args[0], Repo):
            return fn(args[0], "db", *args[1:], **kwargs)
        return fn("db", *args, **kwargs)

    return wrapper


class Repo:
    @tracer.trace
    @_retry
    def find(self, key: str, limit: int = 10) -> str:
        return key

    @tracer.trace
    @_inject_db
    def query(self, db: str, sql: str) -> str:
        return db + sql


def test_functools_wraps_wrapper_records_the_wrapped_signature(rec: Recorder) -> None:
    """inputs follow inspect.signature (which follows __wrapped__), not the wrapper's (*args, **kwargs)."""

    @rec.tracer.trace(event_name="add")
    @_retry
    def add(a: int, b: int = 2) -> int:
        return a + b

    async def _afetch(url: str, *, timeout: float = 1.0) -> str:
        return url

    @functools.wraps(_afetch)
    async def afetch_wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return await _afetch(*args, **kwargs)

    afetch = rec.tracer.trace(afetch_wrapper, event_name="afetch")
    assert list(inspect.signature(add).parameters) == ["a", "b"]
    assert add(5) == 7
    assert asyncio.run(afetch("http://x")) == "http://x"
    assert rec.by_name("add")["inputs"] == {"a": 5, "b": 2}
    assert rec.by_name("afetch")["inputs"] == {"url": "http://x", "timeout": 1.0}


def test_wrapper_accepting_what_the_wrapped_signature_rejects_falls_back_to_args(rec: Recorder) -> None:
    """The binder never raises for a call the wrapper accepts: the call is recorded generically."""

    @rec.tracer.trace(event_name="lookup")
    @_inject_db
    def lookup(db: str, sql: str) -> str:
        return db + ":" + sql

    assert lookup("select 1") == "db:select 1"  # (db, sql) does not accept ("select 1",)
    assert lookup(sql="select 2") == "db:select 2"
    first, second = (e for e in rec.events() if e["event_name"] == "lookup")
    assert first["inputs"] == {"args": ["select 1"]} and first["error"] is None
    assert second["inputs"] == {"sql": "select 2"}


def test_functools_wraps_wrapper_around_a_method_drops_self() -> None:
    with tracer.testing.capture() as events:
        repo = Repo()
        assert repo.find("k") == "k"
        assert repo.query("q") == "dbq"  # wrapped signature rejects it: generic form, self dropped
    by_name = {e["event_name"]: e for e in events}
    assert by_name["Repo.find"]["inputs"] == {"key": "k", "limit": 10}
    assert by_name["Repo.query"]["inputs"] == {"args": ["q"]}


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() is broken")


class NotAString(Exception):
    def __str__(self) -> str:
        return 42  # type: ignore[return-value]


class NotesRaise(Exception):
    """traceback.format_exception itself raises on this one (it reads __notes__ with getattr)."""

    @property
    def __notes__(self) -> list[str]:
        raise RuntimeError("notes are broken")


def test_exception_whose_str_raises_is_recorded_and_the_span_ends(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="f")
    def f(exc: BaseException) -> None:
        raise exc

    @t.trace(event_name="af")
    async def af(exc: BaseException) -> None:
        raise exc

    raised = [Unprintable(), NotAString(), NotesRaise("with notes"), ValueError("x" * 100_000)]
    for exc in raised:
        with pytest.raises(type(exc)) as caught:
            f(exc)
        assert caught.value is exc
        with pytest.raises(type(exc)) as caught:
            asyncio.run(af(exc))
        assert caught.value is exc
        with pytest.raises(type(exc)) as caught, t.span("block"):
            raise exc
        assert caught.value is exc
    assert recorder_of(t).open_spans == {}  # nothing left open
    events = rec.events()
    assert len(events) == 3 * len(raised)
    errors = [e["error"] for e in events]
    assert errors[:3] == ["Unprintable: <str() raised RuntimeError>"] * 3
    assert errors[3:6] == ["NotAString: <str() raised TypeError>"] * 3
    assert errors[6:9] == ["NotesRaise: with notes"] * 3
    assert all(e.startswith("ValueError: xxx") and "[truncated" in e for e in errors[9:])
    assert "<exception str() failed>" in events[0]["metadata"]["traceback"]
    if sys.version_info >= (3, 13):  # traceback formats broken __notes__ itself since 3.13
        assert "Ignored error getting __notes__" in events[6]["metadata"]["traceback"]
    else:
        assert "traceback" not in events[6]["metadata"]  # could not be formatted: left out, not fatal


def test_many_unprintable_exceptions_leave_nothing_open(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="g")
    def g() -> None:
        raise Unprintable()

    for _ in range(1000):
        with pytest.raises(Unprintable):
            g()
        with pytest.raises(Unprintable), t.span("s"):
            raise Unprintable()
    assert recorder_of(t).open_spans == {}
    assert len(rec.events()) == 2000
    assert t.current_span() is None
