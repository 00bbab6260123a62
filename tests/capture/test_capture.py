"""Capture safety: any value becomes bounded, scrubbed JSON, and tracing never breaks the call."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import pathlib
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np
import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer import InMemoryExporter, Tracer
from tracer._capture import CIRCULAR, REDACTED, Limits, Sanitizer, snapshot
from tracer._span import Recorder as SpanRecorder

from ..conftest import Recorder


def _roundtrip(rec: Recorder, value: Any, **trace_kwargs: Any) -> Any:
    @rec.tracer.trace(event_name="probe", **trace_kwargs)
    def probe(value: Any) -> Any:
        return value

    assert probe(value) is value
    event = rec.by_name("probe")
    rec.exporter.clear()
    return event


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


@attrs.define
class Box:
    size: int


class Model(pydantic.BaseModel):
    name: str
    when: dt.datetime


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_rich_python_values_become_json(rec: Recorder) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = {
        "enum": Colour.RED,
        "uuid": uid,
        "datetime": when,
        "date": dt.date(2026, 1, 2),
        "decimal": decimal.Decimal("1.10"),
        "path": pathlib.Path("/tmp/x"),
        "set": {3},
        "bytes": b"hi",
        "binary": b"\xff\xfe",
        "dataclass": Point(1, 2),
        "attrs": Box(3),
        "pydantic": Model(name="n", when=when),
        "np_array": np.arange(3),
        "np_scalar": np.float64(1.5),
        "np_int": np.int32(7),
        "exception": ValueError("bad"),
        "tuple": (1, "a"),
        "big_int": 2**100,
        "int_keys": {1: "one"},
        "nan": float("nan"),
    }
    result = _roundtrip(rec, value)["outputs"]["result"]
    assert result["enum"] == "red"
    assert result["uuid"] == str(uid)
    assert result["datetime"].startswith("2026-01-02T03:04:05")
    assert result["date"] == "2026-01-02"
    assert result["decimal"] == "1.10"
    assert result["path"] == "/tmp/x"
    assert result["set"] == [3]
    assert result["bytes"] == "hi"
    assert result["binary"] == "<2 bytes>"
    assert result["dataclass"] == {"x": 1, "y": 2}
    assert result["attrs"] == {"size": 3}
    assert result["pydantic"]["name"] == "n"
    assert result["np_array"] == [0, 1, 2]
    assert result["np_scalar"] == 1.5 and result["np_int"] == 7
    assert result["exception"] == "ValueError: bad"
    assert result["tuple"] == [1, "a"]
    assert result["big_int"] == str(2**100)
    assert result["int_keys"] == {"1": "one"}
    assert result["nan"] == "NaN"


def test_hostile_values_are_captured_safely(rec: Recorder) -> None:
    circular: dict[str, Any] = {"name": "loop"}
    circular["self"] = circular
    nested_list: list[Any] = [1]
    nested_list.append(nested_list)
    sock = socket.socket()
    consumed: list[int] = []

    def gen() -> Iterator[int]:
        consumed.append(1)
        yield 1

    generator = gen()
    try:
        event = _roundtrip(
            rec, {"circular": circular, "list": nested_list, "broken": BrokenRepr(), "sock": sock, "gen": generator}
        )
    finally:
        sock.close()
    result = event["outputs"]["result"]
    assert result["circular"] == {"name": "loop", "self": CIRCULAR}
    assert result["list"] == [1, CIRCULAR]
    assert result["broken"] == "<unrepresentable BrokenRepr object>"
    assert result["sock"].startswith("<socket.socket")
    assert result["gen"].startswith("<generator object")
    assert consumed == []  # the user's generator was never consumed
    assert next(generator) == 1


def test_ten_megabyte_string_keeps_head_and_tail(rec: Recorder) -> None:
    huge = "a" * 5_000_000 + "b" * 5_000_000
    event = _roundtrip(rec, huge, capture_inputs=False)
    text = event["outputs"]["result"]
    assert len(text) < 40_000
    assert text.startswith("a" * 1000) and text.endswith("b" * 1000)
    assert "[truncated: 10000000 chars in total]" in text
    assert len(orjson.dumps(event)) < 1024 * 1024


def test_depth_and_breadth_limits(rec: Recorder) -> None:
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(30):
        cursor["d"] = {}
        cursor = cursor["d"]
    event = _roundtrip(rec, {"deep": deep, "wide": list(range(5000)), "wide_map": {str(i): i for i in range(1500)}})
    result = event["outputs"]["result"]
    depth, cursor = 1, result["deep"]
    while isinstance(cursor, dict):
        cursor = cursor["d"]
        depth += 1
    assert cursor == "<max depth reached>"
    assert depth == 9  # outputs is level 0 and its "result" level 1, so the marker sits at level 10
    assert len(result["wide"]) == 1001 and result["wide"][-1] == "<4000 more items>"
    assert len(result["wide_map"]) == 1001 and result["wide_map"]["…"] == "<500 more items>"


def test_whole_event_is_kept_under_the_size_cap() -> None:
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False, max_event_bytes=64 * 1024)

    @t.trace
    def big(chunks: list[str]) -> list[str]:
        return chunks

    big(["x" * 30_000 for _ in range(20)])
    event = memory.events[0]
    assert len(orjson.dumps(event)) <= 64 * 1024
    assert event["metadata"]["truncated"] is True
    assert event["event_name"].endswith("big")


def test_values_are_captured_when_the_span_ends(rec: Recorder) -> None:
    state = {"items": [1]}

    @rec.tracer.trace(event_name="mutating")
    def mutating(state: dict[str, list[int]]) -> dict[str, list[int]]:
        state["items"].append(2)
        return state

    result = mutating(state)
    result["items"].append(3)  # after the span ended: must not show up
    event = rec.by_name("mutating")
    assert event["inputs"] == {"state": {"items": [1, 2]}}
    assert event["outputs"] == {"result": {"items": [1, 2]}}


def test_secrets_are_scrubbed_by_key_and_by_shape(rec: Recorder) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    value = {
        "password": "hunter2",
        "API_KEY": "abc",
        "Authorization": "whatever",
        "nested": {"client_secret": {"deep": 1}, "access_token": "t", "cookie": "c"},
        "max_tokens": 100,
        "prompt_tokens": 5,
        "text": "my key is sk-proj-abcdefghijklmnopqrstuvwx ok",
        "anthropic": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "aws": "AKIAIOSFODNN7EXAMPLE",
        "github": "ghp_" + "a" * 36,
        "jwt": jwt,
        "header": "Bearer abcdefghijklmnop",
        "harmless": "a normal sentence about keys and tokens",
    }
    result = _roundtrip(rec, value, capture_inputs=False)["outputs"]["result"]
    assert result["password"] == REDACTED and result["API_KEY"] == REDACTED
    assert result["Authorization"] == REDACTED
    assert result["nested"] == {"client_secret": REDACTED, "access_token": REDACTED, "cookie": REDACTED}
    assert result["max_tokens"] == 100 and result["prompt_tokens"] == 5
    assert result["text"] == f"my key is {REDACTED} ok"
    assert result["anthropic"] == REDACTED and result["aws"] == REDACTED
    assert result["github"] == REDACTED and result["jwt"] == REDACTED
    assert result["header"] == f"Bearer {REDACTED}"  # the scheme is kept, the credential replaced
    assert result["harmless"] == "a normal sentence about keys and tokens"


def test_parameters_named_like_secrets_are_scrubbed(rec: Recorder) -> None:
    @rec.tracer.trace(event_name="login")
    def login(user: str, password: str) -> bool:
        return True

    login("ann", "hunter2")
    assert rec.by_name("login")["inputs"] == {"user": "ann", "password": REDACTED}


def test_scrubbing_can_be_turned_off() -> None:
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False, scrub=False)
    with t.span("raw", inputs={"password": "hunter2"}):
        pass
    assert memory.events[0]["inputs"] == {"password": "hunter2"}


def test_mask_hook_runs_on_every_event() -> None:
    memory = InMemoryExporter()

    def mask(event: dict[str, Any]) -> dict[str, Any] | None:
        if event["event_name"] == "drop-me":
            return None
        event["inputs"] = {k: "***" for k in event["inputs"]}
        return event

    t = Tracer(exporter=memory, batch=False, mask=mask)
    with t.span("keep", inputs={"email": "a@b.c"}):
        pass
    with t.span("drop-me"):
        pass
    assert [e["event_name"] for e in memory.events] == ["keep"]
    assert memory.events[0]["inputs"] == {"email": "***"}
    assert t.stats()["dropped"]["masked"] == 1


def test_failing_mask_drops_the_event_instead_of_leaking(caplog: pytest.LogCaptureFixture) -> None:
    memory = InMemoryExporter()

    def mask(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("mask bug")

    t = Tracer(exporter=memory, batch=False, mask=mask)
    for _ in range(3):
        with t.span("secret", inputs={"ssn": "123"}):
            pass
    assert memory.events == []
    assert t.stats()["dropped"]["masked"] == 3
    assert sum("mask hook raised" in r.getMessage() for r in caplog.records) == 1


def test_internal_errors_are_logged_once_and_swallowed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside our own test-suite a library bug never reaches the user's call."""
    monkeypatch.delenv("TRACER_RAISE_INTERNAL_ERRORS")
    t = Tracer(exporter=InMemoryExporter(), batch=False)

    def broken_start(*args: Any) -> None:
        raise RuntimeError("library bug")

    monkeypatch.setattr(SpanRecorder, "start_under", broken_start)

    @t.trace
    def user(x: int) -> int:
        return x + 1

    assert [user(i) for i in range(5)] == [1, 2, 3, 4, 5]
    errors = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(errors) == 1


def test_user_exceptions_pass_through_even_if_tracing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACER_RAISE_INTERNAL_ERRORS")
    t = Tracer(exporter=InMemoryExporter(), batch=False)
    monkeypatch.setattr("tracer._span.Span.set_error", lambda self, exc: 1 / 0)

    @t.trace
    def fails() -> None:
        raise LookupError("mine")

    with pytest.raises(LookupError, match="mine"):
        fails()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-9e18, max_value=9e18)
    | st.text(max_size=50).filter(lambda text: not any("\ud800" <= char <= "\udfff" for char in text)),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_json_values_within_limits_round_trip_unchanged(value: Any) -> None:
    sanitizer = Sanitizer(Limits(scrub=False, max_depth=50))
    bucket = {"value": value}
    assert orjson.loads(sanitizer.finalize(snapshot(bucket))) == orjson.loads(orjson.dumps(bucket))


hostile = st.recursive(
    st.none()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.builds(BrokenRepr)
    | st.sampled_from([Colour.RED, decimal.Decimal("NaN"), pathlib.Path("p"), uuid.UUID(int=5)]),
    lambda children: (
        st.lists(children)
        | st.dictionaries(st.one_of(st.text(), st.integers(), st.none()), children)
        | st.frozensets(st.integers())
    ),
    max_leaves=50,
)


@given(hostile, st.integers(1, 5), st.integers(1, 20), st.integers(16, 64))
@settings(max_examples=200, deadline=None)
def test_any_value_becomes_bounded_json(value: Any, depth: int, items: int, length: int) -> None:
    limits = Limits(max_depth=depth, max_items=items, max_string_length=length)
    result = orjson.loads(Sanitizer(limits).finalize(snapshot({"value": value})))

    def check(node: Any, level: int) -> None:
        assert level <= depth
        if isinstance(node, str):
            assert len(node) <= length + 60  # the marker adds a few dozen characters
        elif isinstance(node, list):
            assert len(node) <= items + 1
            for child in node:
                check(child, level + 1)
        elif isinstance(node, dict):
            assert len(node) <= items + 1
            for child in node.values():
                check(child, level + 1)

    check(result, 0)
