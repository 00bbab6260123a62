"""How each kind of value is recorded (the README's table), on every path, as a valid wire event.

Every test here goes through a real ``Tracer`` and reads the exported event, so it checks what a
backend would receive: the fast path (orjson alone) and the converter must agree, buckets are
always JSON objects, strings valid UTF-8, numbers representable, and scrubbing applies whatever
path produced a value.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import ipaddress
import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracer
from tracer import InMemoryExporter, Tracer

from ..conftest import Recorder


def _recorded(rec: Recorder, value: Any) -> Any:
    """What ``outputs.result`` records for *value* (and check the event is valid on the wire)."""

    @rec.tracer.trace(event_name="probe", capture_inputs=False)
    def probe() -> Any:
        return value

    probe()
    event = rec.by_name("probe")
    rec.exporter.clear()
    _assert_valid_wire_event(event)
    return event["outputs"]["result"]


BUCKETS = ("config", "inputs", "outputs", "metadata", "feedback", "metrics", "user_properties")


def _assert_valid_wire_event(event: dict[str, Any]) -> None:
    for name in BUCKETS:
        assert isinstance(event[name], dict), (name, event[name])
    text = orjson.dumps(event).decode()
    assert json.loads(text) == event  # round-trips through the standard library too

    def numbers(node: Any) -> None:
        if isinstance(node, dict):
            for item in node.values():
                numbers(item)
        elif isinstance(node, list):
            for item in node:
                numbers(item)
        elif isinstance(node, float):
            assert math.isfinite(node) and abs(node) < 2**63
        elif isinstance(node, int) and not isinstance(node, bool):
            assert -(2**63) <= node < 2**63

    numbers(event)


class MyMapping(Mapping[str, Any]):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class MySequence(Sequence[int]):
    def __getitem__(self, index: Any) -> Any:
        return [10, 20, 30][index]

    def __len__(self) -> int:
        return 3


class Plain:
    def __init__(self) -> None:
        self.name = "plain"
        self.size = 3
        self._private = "hidden"


class Slotted:
    __slots__ = ("_hidden", "a", "b")

    def __init__(self) -> None:
        self.a = 1
        self.b = "two"
        self._hidden = 3


class ToDict:
    def to_dict(self) -> dict[str, Any]:
        return {"via": "to_dict"}


class ModelDumpLike:
    def model_dump(self) -> dict[str, Any]:
        return {"via": "model_dump"}


class LegacyDict:
    def dict(self) -> dict[str, Any]:
        return {"via": "dict"}


class Settings(pydantic.BaseModel):
    url: pydantic.AnyUrl
    key: pydantic.SecretStr
    when: dt.datetime


@dataclasses.dataclass
class Account:
    user: str
    token_cache: str = dataclasses.field(repr=False, default="do-not-record")


def test_custom_mapping_is_recorded_as_an_object_on_both_paths(rec: Recorder) -> None:
    mapping = MyMapping({"foo": "bar"})
    assert _recorded(rec, mapping) == {"foo": "bar"}  # alone: orjson refuses it, the converter takes it
    # With something else in the same value that the fast path cannot take either way:
    assert _recorded(rec, {"m": mapping, "k": {1: "x"}}) == {"m": {"foo": "bar"}, "k": {"1": "x"}}


def test_containers_and_objects_are_recorded_by_their_contents(rec: Recorder) -> None:
    value = {
        "deque": collections.deque([1, 2]),
        "range": range(3),
        "sequence": MySequence(),
        "frozenset": frozenset({5}),
        "ipv4": ipaddress.ip_address("10.0.0.1"),
        "network": ipaddress.ip_network("10.0.0.0/8"),
        "plain": Plain(),
        "slots": Slotted(),
        "to_dict": ToDict(),
        "model_dump": ModelDumpLike(),
        "dict": LegacyDict(),
        "timedelta": dt.timedelta(minutes=1, milliseconds=500),
        "complex": 1 + 2j,
    }
    assert _recorded(rec, value) == {
        "deque": [1, 2],
        "range": [0, 1, 2],
        "sequence": [10, 20, 30],
        "frozenset": [5],
        "ipv4": "10.0.0.1",
        "network": "10.0.0.0/8",
        "plain": {"name": "plain", "size": 3},
        "slots": {"a": 1, "b": "two"},
        "to_dict": {"via": "to_dict"},
        "model_dump": {"via": "model_dump"},
        "dict": {"via": "dict"},
        "timedelta": 60.5,
        "complex": "(1+2j)",
    }


def test_huge_lazy_sequences_are_cut_without_being_materialized(rec: Recorder) -> None:
    result = _recorded(rec, range(10**12))
    assert len(result) == 1001 and result[:3] == [0, 1, 2]
    assert result[-1] == f"<{10**12 - 1000} more items>"


def test_pydantic_models_are_dumped_in_json_mode(rec: Recorder) -> None:
    model = Settings(url="https://example.com/x", key="hunter2-but-secret", when=dt.datetime(2026, 1, 2, 3, 4, 5))
    assert _recorded(rec, model) == {"url": "https://example.com/x", "key": "**********", "when": "2026-01-02T03:04:05"}


def test_dataclass_fields_declared_repr_false_are_left_out(rec: Recorder) -> None:
    assert _recorded(rec, Account("ada")) == {"user": "ada"}
    assert _recorded(rec, {"nested": [Account("bob")]}) == {"nested": [{"user": "bob"}]}


def test_lone_surrogates_become_replacement_characters_and_the_event_stays_valid(rec: Recorder) -> None:
    result = _recorded(rec, {"text": "a\ud800b", "key\udc80": ["x\udfff"]})
    assert result == {"text": "a\ufffdb", "key\ufffd": ["x\ufffd"]}


def test_numbers_are_recorded_so_that_a_backend_can_store_them(rec: Recorder) -> None:
    result = _recorded(
        rec,
        {
            "i64": 2**63 - 1,
            "u64": 2**63,
            "big": 2**70,
            "huge": 10**5000,
            "nan": math.nan,
            "inf": math.inf,
            "ninf": -math.inf,
            "big_float": 1e300,
            "fine": 1.5,
            "none": None,
        },
    )
    assert result == {
        "i64": 2**63 - 1,
        "u64": str(2**63),
        "big": str(2**70),
        "huge": f"<int of {(10**5000).bit_length()} bits>",
        "nan": "NaN",
        "inf": "Infinity",
        "ninf": "-Infinity",
        "big_float": "1e+300",
        "fine": 1.5,
        "none": None,
    }


def test_out_of_range_numbers_given_to_enrich_span_are_kept_as_strings(rec: Recorder) -> None:
    with rec.tracer.span("enriched") as span:
        span.update(metadata={"total_tokens": 10**19, "score": 1e300, "nan": math.nan}, metrics={"x": -math.inf})
    event = rec.by_name("enriched")
    _assert_valid_wire_event(event)
    assert event["metadata"]["total_tokens"] == "10000000000000000000"
    assert event["metadata"]["score"] == "1e+300"
    assert event["metadata"]["nan"] == "NaN"
    assert event["metrics"]["x"] == "-Infinity"


def test_keys_equal_once_converted_are_all_kept(rec: Recorder) -> None:
    assert _recorded(rec, {2: "int", "2": "str", 2.5: "float", None: "none"}) == {
        "2": "int",
        "2 (2)": "str",
        "2.5": "float",
        "null": "none",
    }


def test_a_slow_repr_runs_at_most_once_per_value(rec: Recorder) -> None:
    calls: list[int] = []

    class Slow:
        __slots__ = ()

        def __repr__(self) -> str:
            calls.append(1)
            return "<slow>"

    slow = Slow()

    @rec.tracer.trace
    def uses(value: Any) -> None:
        return None

    uses({"slow": slow, "also": {1: 2}})  # something that also sends the value down the converter
    assert calls == [1]
    assert rec.by_name("test_a_slow_repr_runs_at_most_once_per_value.<locals>.uses")["inputs"] == {
        "value": {"slow": "<slow>", "also": {"1": 2}}
    }


def test_objects_with_attributes_are_recorded_without_calling_their_repr(rec: Recorder) -> None:
    class NoisyRepr:
        def __init__(self) -> None:
            self.answer = 42

        def __repr__(self) -> str:
            raise AssertionError("repr must not be needed")

    assert _recorded(rec, NoisyRepr()) == {"answer": 42}


def test_scrubbing_applies_to_values_that_took_the_converter(rec: Recorder) -> None:
    # A surrogate forced the old code to record the whole mapping as one repr string, password included.
    result = _recorded(rec, {"password": "hunter2", "note": "x\udc80"})
    assert result == {"password": "[REDACTED]", "note": "x\ufffd"}


def test_a_value_mutated_by_another_thread_is_recorded(rec: Recorder) -> None:
    history = [decimal.Decimal(i) for i in range(2000)]
    stop = threading.Event()

    def trim() -> None:
        while not stop.is_set():
            if len(history) > 100:
                del history[: len(history) // 2]
            else:
                history.extend(decimal.Decimal(i) for i in range(2000))

    thread = threading.Thread(target=trim)
    thread.start()
    try:
        for _ in range(50):
            result = _recorded(rec, history)
            assert isinstance(result, list)
    finally:
        stop.set()
        thread.join()


# -- property-based: hostile values anywhere -------------------------------------------------


class RaisingRepr:
    __slots__ = ()

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class RaisingIter(Sequence[int]):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError("no items")

    def __iter__(self) -> Iterator[int]:
        raise RuntimeError("no iteration")


class RaisingGetattr:
    def __init__(self) -> None:
        self.visible = 1

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


class Shrinker:
    """Its conversion empties the list it sits in (mutation during capture)."""

    def __init__(self, owner: list[Any]) -> None:
        self.owner = owner

    def to_dict(self) -> dict[str, Any]:
        self.owner.clear()
        return {"shrunk": True}


SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"


def _with_shrinker(children: list[Any]) -> list[Any]:
    children.append(Shrinker(children))
    return children


leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63)
    | st.integers(max_value=-(2**63) - 1)  # past 64 bits
    | st.floats()  # NaN and infinities included
    | st.text()
    | st.builds(lambda head, tail: head + "\ud800" + tail, st.text(max_size=5), st.text(max_size=5))  # lone surrogate
    | st.binary(max_size=20)
    | st.builds(RaisingRepr)
    | st.builds(RaisingIter)
    | st.builds(RaisingGetattr)
    | st.just(SECRET)
    | st.just({"api_key": "plain-value-under-a-secret-key"})
)


def _cyclic(children: list[Any]) -> list[Any]:
    children.append(children)
    return children


hostile = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none()), children, max_size=6)
        | st.lists(children, max_size=4).map(_cyclic)
        | st.lists(children, max_size=4).map(_with_shrinker)
        | st.lists(children, max_size=4).map(tuple)
    ),
    max_leaves=40,
)


@given(hostile)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_value_gives_one_valid_bounded_scrubbed_event(value: Any) -> None:
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False, instrument=False, max_event_bytes=64 * 1024, propagate_to_threads=False)

    @t.trace
    def call(value: Any) -> Any:
        tracer.enrich_span(metadata={"value": value})
        return value

    assert call(value) is value  # no exception reaches the caller, the value is returned untouched
    assert len(memory.events) == 1
    event = memory.events[0]
    _assert_valid_wire_event(event)
    encoded = orjson.dumps(event)
    assert len(encoded) <= 64 * 1024
    assert SECRET.encode() not in encoded
    assert b"plain-value-under-a-secret-key" not in encoded
    t.shutdown(1.0)


@pytest.mark.parametrize("batch", [False, True])
def test_the_module_api_records_converted_values_in_either_pipeline(batch: bool) -> None:
    memory = InMemoryExporter()
    tracer.init(exporter=memory, batch=batch)

    @tracer.trace
    def f(value: Any) -> Any:
        return value

    f({1: math.nan})
    assert tracer.flush(5.0)
    assert memory.events[0]["outputs"] == {"result": {"1": "NaN"}}
