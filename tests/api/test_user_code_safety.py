"""Nothing the library does raises into user code or leaves the context changed (issue 11, part 4)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import tracer
from tracer import Tracer
from tracer._span import Recorder as SpanRecorder

from ..conftest import Recorder


class BrokenMapping(Mapping[str, Any]):
    """A mapping whose iteration (so keys(), items(), dict()) raises."""

    def __getitem__(self, key: str) -> Any:
        return 1

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")

    def __len__(self) -> int:
        return 1


class BrokenKeys:
    """Duck-typed like a mapping (dict() calls keys()), but keys() raises."""

    def keys(self) -> list[str]:
        raise KeyError("keys")

    def __getitem__(self, key: str) -> Any:
        return 1


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no str")


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise ValueError("no str")


BUCKETS = ("inputs", "outputs", "config", "metadata", "metrics", "feedback", "user_properties")


def test_enrich_span_with_non_mappings_wraps_them(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="f")
    def f(x: int) -> int:
        assert t.enrich_span(inputs=[1, 2], config="gpt", metadata=3, metrics=0.5, feedback=True)
        assert t.enrich_span(user_properties=("u",), outputs="partial")
        return x

    assert f(7) == 7  # the traced call is not failed by its own enrichment
    event = rec.by_name("f")
    assert event["inputs"] == {"x": 7, "value": [1, 2]}
    assert event["config"] == {"value": "gpt"}
    assert event["metadata"] == {"value": 3}
    assert event["metrics"] == {"value": 0.5}
    assert event["feedback"] == {"value": True}
    assert event["user_properties"] == {"value": ["u"]}
    # outputs of an open span: "result", like the function's own return value (which is kept)
    assert event["outputs"] == {"result": "partial"}


def test_mapping_types_are_copied_not_wrapped(rec: Recorder) -> None:
    import types

    with rec.tracer.span("m") as s:
        s.update(metadata=types.MappingProxyType({"a": 1}), outputs=types.MappingProxyType({"o": 2}))
    event = rec.by_name("m")
    assert event["metadata"] == {"a": 1} and event["outputs"] == {"o": 2}


@pytest.mark.parametrize("bad", [BrokenMapping(), BrokenKeys()], ids=["iteration-raises", "keys-raises"])
def test_unreadable_mappings_are_marked_and_logged_once(
    rec: Recorder, bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    t = rec.tracer
    name = type(bad).__name__
    with caplog.at_level(logging.WARNING, logger="tracer"):
        for _ in range(3):
            with t.span("s", inputs=bad, config=bad, metadata=bad) as s:
                s.update(**{field: bad for field in BUCKETS})
                assert t.enrich_span(outputs=bad)
    events = [e for e in rec.events() if e["event_name"] == "s"]
    assert len(events) == 3
    for field in BUCKETS:
        assert events[0][field] == {"<unreadable>": name}, field
    warnings = [r for r in caplog.records if "could not be read" in r.getMessage() and name in r.getMessage()]
    assert len(warnings) == len(BUCKETS)  # once per bucket and type, not once per call


def test_update_error_with_unprintable_objects(rec: Recorder) -> None:
    t = rec.tracer
    with t.span("obj") as s:
        s.update(error=Unprintable())
    with t.span("exc") as s:
        s.set_error(UnprintableError())
    with t.span("late") as late:
        pass
    late.update(error=UnprintableError(), config=[1], metadata=BrokenMapping(), outputs=BrokenKeys())
    assert rec.by_name("obj")["error"] == "Unprintable: <str() raised ValueError>"
    assert rec.by_name("exc")["error"] == "UnprintableError: <str() raised ValueError>"
    (update,) = rec.exporter.updates
    assert update["metadata"] == {
        "<unreadable>": "BrokenMapping",
        "error": "UnprintableError: <str() raised ValueError>",
    }
    assert update["config"] == {"value": [1]} and update["outputs"] == {"<unreadable>": "BrokenKeys"}


def test_enrich_session_and_session_arguments_never_raise(rec: Recorder) -> None:
    t = rec.tracer
    with t.session("s", inputs=["q"], metadata=BrokenMapping(), user_properties="u") as session:
        t.enrich_session(inputs=5, outputs=["o"], config=BrokenKeys(), metrics="m", feedback=1.5)
        with t.span("e"):
            pass
    props = rec.exporter.sessions[session.session_id]
    assert props["inputs"] == {"value": 5}  # {"value": ["q"]} at start, then merged key by key
    assert props["metadata"] == {"<unreadable>": "BrokenMapping"}
    assert props["user_properties"] == {"value": "u"}
    assert props["outputs"] == {"value": ["o"]} and props["config"] == {"<unreadable>": "BrokenKeys"}
    assert props["metrics"] == {"value": "m"} and props["feedback"] == {"value": 1.5}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"inputs": [1, 2]},
        {"config": "model-x"},
        {"metadata": 42},
        {"inputs": BrokenMapping(), "config": BrokenKeys(), "metadata": BrokenMapping()},
    ],
    ids=["list-inputs", "str-config", "int-metadata", "unreadable"],
)
def test_span_with_bad_arguments_neither_raises_nor_changes_the_context(rec: Recorder, kwargs: dict) -> None:
    t = rec.tracer
    with t.span("outer") as outer:
        with t.span("x", **kwargs) as x:
            assert t.current_span() is x
        assert t.current_span() is outer
    assert t.current_span() is None
    event = rec.by_name("x")
    assert event["parent_id"] == outer.event_id
    for field, value in kwargs.items():
        if isinstance(value, (BrokenMapping, BrokenKeys)):
            assert event[field] == {"<unreadable>": type(value).__name__}
        else:
            assert event[field] == {"value": value}


def test_span_with_a_bad_event_type_raises_before_anything_starts(rec: Recorder) -> None:
    t = rec.tracer
    with t.span("outer") as outer:
        with pytest.raises(ValueError, match="event_type"):
            t.span("x", event_type="llm")
        assert t.current_span() is outer
    assert [e["event_name"] for e in rec.events()] == ["outer"]


def test_a_failure_inside_span_enter_leaves_the_context_unchanged(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library failure while starting the block is reported (re-raised under this suite's
    TRACER_RAISE_INTERNAL_ERRORS=1, logged in production) and the current span is untouched."""
    t = rec.tracer

    def broken_start(*args: object) -> None:
        raise RuntimeError("library bug")

    with t.span("outer") as outer:
        monkeypatch.setattr(SpanRecorder, "start", broken_start)
        with pytest.raises(RuntimeError, match="library bug"), t.span("x"):
            pass
        assert t.current_span() is outer
        monkeypatch.setenv("TRACER_RAISE_INTERNAL_ERRORS", "0")  # production: logged, block still runs
        with t.span("x") as detached:
            assert t.current_span() is outer
            detached.update(metadata={"kept": "locally"})
        assert t.current_span() is outer


def test_span_with_a_non_string_name(rec: Recorder) -> None:
    with rec.tracer.span(123):  # type: ignore[arg-type]
        pass
    assert rec.events()[0]["event_name"] == "123"


def test_module_level_enrich_span_inside_traced_function() -> None:
    with tracer.testing.capture() as events:

        @tracer.trace(event_name="handler")
        def handler() -> str:
            tracer.enrich_span(inputs="raw body", metadata=BrokenMapping())
            return "ok"

        assert handler() == "ok"
    event = events.by_name("handler")
    assert event["inputs"] == {"value": "raw body"} and event["metadata"] == {"<unreadable>": "BrokenMapping"}


def test_disabled_span_with_bad_arguments() -> None:
    t = Tracer(exporter=tracer.InMemoryExporter(), disabled=True, batch=False)
    with t.span("x", inputs=[1], metadata=BrokenMapping()) as s:
        s.update(config="c", error=Unprintable())
    assert t.current_span() is None
    t.shutdown()


def test_decorator_config_and_metadata_non_mappings(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="d", config="model-x", metadata=["tag"])  # type: ignore[arg-type]
    def d() -> int:
        return 1

    assert d() == 1
    event = rec.by_name("d")
    assert event["config"] == {"value": "model-x"} and event["metadata"] == {"value": ["tag"]}
