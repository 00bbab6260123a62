"""Deferred JSON (``Batch.deferred``): when every exporter writes from the events' pieces (the OTLP
exporter's protobuf), the encoder does not join the events' JSON; a batch joins it from the pieces
if asked. Here every batch of a real pipeline is encoded both ways by the same encoder, and the
joined-later JSON must be byte for byte what the encoder joins at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest

from tracer import Batch, Tracer
from tracer._encode import Encoder
from tracer._record import Item
from tracer._sessions import SessionRegistry

from ..kept_batches import KeepBatches

Pair = tuple[Batch, Batch]  # (as the pipeline made it, the same items encoded with the JSON joined at once)


@pytest.fixture
def pairs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Pair]]:
    """Every batch the encoder makes, next to the same items encoded with the JSON joined at once."""
    made: list[Pair] = []
    encode = Encoder.encode

    def both(
        self: Encoder,
        items: Sequence[Item],
        registry: SessionRegistry,
        pause: Any = None,
        parts: bool = False,
        defer: bool = False,
    ) -> Batch:
        batch = encode(self, items, registry, pause, parts, defer)
        made.append((batch, encode(self, items, registry, None, parts=True)))
        return batch

    monkeypatch.setattr(Encoder, "encode", both)
    yield made


def _workload(t: Tracer) -> None:
    """Events of every shape the encoder writes: children (none, one, several), errors, the rare
    buckets, a late update, an event over max_event_bytes, several sessions, a remote parent."""

    @t.trace
    def leaf(q: str) -> dict[str, Any]:
        return {"answer": q.upper()}

    with t.session("first", metadata={"team": "x"}):
        with t.span("agent", event_type="chain", inputs={"q": "why?"}) as root:
            for index in range(3):
                leaf(f"q{index}")
            with t.span("one child"):
                leaf("only")
            with pytest.raises(ValueError), t.span("search", event_type="tool"):
                raise ValueError('no results for «ünïcödé» "quoted"\n')
            with t.span("model call", event_type="model", config={"model": "m", "temperature": 0.2}) as model:
                model.update(metadata={"prompt_tokens": 3}, metrics={"ttft_ms": 1.5}, feedback={"ok": True})
                model.update(user_properties={"user": "u1"}, outputs={"content": "hi"})
            with t.span("too large", inputs={"text": "A" * 6000 + "Z" * 6000}):
                pass
            with t.span("empty"):
                pass
        root.update(metadata={"late": True})  # a late update: a PUT body
    with t.session("second"):
        leaf("again")
    carrier = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
    with t.continue_trace(carrier):
        leaf("remote")
    assert t.flush(10)
    t.shutdown()


def test_json_joined_later_is_the_json_the_encoder_joins_at_once(pairs: list[Pair]) -> None:
    pieces = KeepBatches()
    _workload(Tracer(project="p", source="s", exporter=pieces, instrument=False, spool=False, max_event_bytes=8192))
    assert pairs and [batch for batch, _ in pairs] == pieces.batches
    events = 0
    for deferred, eager in pairs:
        exact = sum(map(len, eager.encoded))
        assert deferred.json_bytes() > exact  # not joined yet: the encoder's bound (which is above the size)
        # One event at a time, then all, without keeping what one event's join made.
        assert [deferred.event_json(index) for index in range(len(deferred))] == eager.encoded
        assert deferred.encoded == eager.encoded
        assert deferred.json_bytes() == exact
        assert deferred.parts == eager.parts and deferred.session_ids == eager.session_ids
        assert deferred.updates == eager.updates and deferred.sessions == eager.sessions
        events += len(deferred)
    assert events == 12
    everything = [orjson.loads(raw) for batch, _ in pairs for raw in batch.encoded]
    by_name = {event["event_name"]: event for event in everything}
    assert len(by_name["agent"]["children_ids"]) == 8 and len(by_name["one child"]["children_ids"]) == 1
    assert by_name["too large"]["metadata"]["truncated"] is True  # trimmed at once, as without deferring
    trimmed = [part for batch, _ in pairs for raw, part in zip(batch.encoded, batch.parts or [], strict=True)]
    assert sum(part is None for part in trimmed) == 1  # the trimmed event has no pieces: its JSON is all


def test_the_json_is_joined_at_once_when_an_exporter_sends_it_or_a_mask_rewrites_it(pairs: list[Pair]) -> None:
    _workload(Tracer(project="p", exporter=[KeepBatches(), KeepBatches(pieces=False)], instrument=False, spool=False))
    _workload(Tracer(project="p", exporter=KeepBatches(), mask=lambda event: event, instrument=False, spool=False))
    assert pairs
    for batch, eager in pairs:
        assert batch.json_bytes() == sum(map(len, eager.encoded))  # exact from the start: joined
        assert batch.encoded == eager.encoded


def test_the_span_ids_in_the_pieces_are_the_last_8_bytes_of_the_ids(pairs: list[Pair]) -> None:
    _workload(Tracer(project="p", exporter=KeepBatches(), instrument=False, spool=False))
    checked = 0
    for batch, _ in pairs:
        for raw, part in zip(batch.encoded, batch.parts or [], strict=True):
            if part is None:
                continue
            event = orjson.loads(raw)
            own, parent = event["event_id"], event["parent_id"]
            assert part[0] == own.encode() and part[10] == bytes.fromhex(own[19:23] + own[24:])
            if part[11] is not None:  # a parent made by this process
                assert part[1] == parent.encode() and part[11] == bytes.fromhex(parent[19:23] + parent[24:])
            checked += 1
    assert checked == 12  # every event (none is over the default max_event_bytes)
