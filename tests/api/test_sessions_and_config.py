"""Sessions, sampling, disabling and configuration (precedence and validation)."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

import tracer
from tracer import ConfigError, InMemoryExporter, Tracer
from tracer._config import resolve_config

from ..conftest import Recorder


def test_default_session_is_named_after_the_script(rec: Recorder) -> None:
    with rec.tracer.span("x"):
        pass
    event = rec.events()[0]
    session = rec.exporter.sessions[event["session_id"]]
    assert session["session_name"] == os.path.basename(__import__("sys").argv[0])
    assert session["source"] == "test"
    assert event["parent_id"] == event["session_id"]


def test_session_scope_groups_events_and_restores(rec: Recorder) -> None:
    t = rec.tracer
    request = t.session("request", inputs={"path": "/"}, metadata={"m": 1}, user_properties={"user": "u"})
    with t.span("before") as before:
        with request as s, t.span("inside") as inside:
            assert inside.session_id == s.session_id
            assert inside.parent_id == s.session_id  # a new session starts new roots
        with t.span("after") as after:
            assert after.parent_id == before.event_id
    sessions = rec.exporter.sessions
    props = sessions[s.session_id]
    assert props == {
        "session_id": s.session_id,
        "session_name": "request",
        "source": "test",
        "inputs": {"path": "/"},
        "metadata": {"m": 1},
        "user_properties": {"user": "u"},
    }
    assert rec.by_name("before")["session_id"] != s.session_id


def test_explicit_session_id_is_validated(rec: Recorder) -> None:
    sid = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    with rec.tracer.session(session_id=sid.upper()) as s:
        assert s.session_id == sid
    with pytest.raises(ValueError, match="session_id must be a UUID"):
        rec.tracer.session(session_id="not-a-uuid")

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("str")

        def __repr__(self) -> str:
            raise RuntimeError("repr")

    # The same clear error, not the value's own RuntimeError.
    with pytest.raises(ValueError, match="session_id must be a UUID string, got a Unprintable that cannot be printed"):
        rec.tracer.session(session_id=Unprintable())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"got 'x{20}"):
        rec.tracer.session(session_id="x" * 10_000)


def test_concurrent_sessions_never_bleed(rec: Recorder) -> None:
    t = rec.tracer

    @t.trace(event_name="handle")
    async def handle(request_id: int) -> int:
        await asyncio.sleep(0.001 * (request_id % 4))
        with t.span("step", inputs={"request_id": request_id}):
            await asyncio.sleep(0)
        return request_id

    async def request(request_id: int) -> str:
        async with t.session(f"req-{request_id}") as s:
            await handle(request_id)
            return s.session_id

    async def main() -> list[str]:
        return await asyncio.gather(*(request(i) for i in range(20)))

    session_ids = asyncio.run(main())

    def thread_request(i: int) -> None:
        with t.session(f"thread-{i}"), t.span("step", inputs={"request_id": 100 + i}):
            pass

    threads = [threading.Thread(target=thread_request, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events = rec.events()
    names = {sid: rec.exporter.sessions[sid]["session_name"] for sid in rec.exporter.sessions}
    for event in events:
        if event["event_name"] == "step":
            rid = event["inputs"]["request_id"]
            expected = f"req-{rid}" if rid < 100 else f"thread-{rid - 100}"
            assert names[event["session_id"]] == expected
    assert len(set(session_ids)) == 20


def test_enrich_session_updates_properties_and_queues_an_update(rec: Recorder) -> None:
    t = rec.tracer
    with t.session("s") as s:
        t.enrich_session(metadata={"a": 1}, inputs={"q": "x"}, outputs=["list"], feedback={"rating": 5})
        t.enrich_session(metadata={"b": 2})
        with t.span("e"):
            pass
    props = rec.exporter.sessions[s.session_id]
    assert props["metadata"] == {"a": 1, "b": 2} and props["inputs"] == {"q": "x"}
    first, second = rec.exporter.updates
    assert first["event_id"] == s.session_id
    assert "inputs" not in first and first["metadata"] == {"a": 1, "inputs": {"q": "x"}}
    assert first["outputs"] == {"value": ["list"]} and first["feedback"] == {"rating": 5}
    assert second == {"event_id": s.session_id, "metadata": {"b": 2}}


def test_late_update_of_an_ended_span_is_sent_as_update(rec: Recorder) -> None:
    with rec.tracer.span("done") as s:
        pass
    s.update(feedback={"thumbs": "up"}, outputs="late")
    assert rec.exporter.updates == [
        {"event_id": s.event_id, "feedback": {"thumbs": "up"}, "outputs": {"value": "late"}}
    ]


def test_sampling_is_per_session_and_deterministic() -> None:
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False, sample_rate=0.5)
    kept = 0
    for _ in range(400):
        with t.session() as s:
            with t.span("x"):
                pass
            with t.span("y"):
                pass
            # the same session id always gets the same decision
            assert t._new_session(s.session_id, "again", None, None, None).sampled == s.sampled
            kept += s.sampled
    assert 120 < kept < 280
    per_session: dict[str, int] = {}
    for event in memory.events:
        per_session[event["session_id"]] = per_session.get(event["session_id"], 0) + 1
    assert set(per_session.values()) == {2}  # whole sessions, never half of one
    assert len(per_session) == kept
    none = Tracer(exporter=InMemoryExporter(), batch=False, sample_rate=0.0)
    with none.session(), none.span("never") as span:
        span.update(metadata={"fine": True})
    assert none.exporters[0].events == []  # type: ignore[attr-defined]


def test_settings_precedence_argument_env_default() -> None:
    env = {"TRACER_PROJECT": "from-env", "HH_PROJECT": "hh", "HH_SOURCE": "hh-source", "HH_API_URL": "http://x:1/"}
    config = resolve_config({"project": None}, env)
    assert (config.project, config.source, config.server_url) == ("from-env", "hh-source", "http://x:1")
    assert resolve_config({"project": "arg"}, env).project == "arg"
    assert resolve_config({}, {}).project == "default"
    assert resolve_config({}, {"TRACER_SAMPLE_RATE": "0.25", "TRACER_DISABLED": "yes"}).sample_rate == 0.25
    assert resolve_config({}, {"TRACER_DISABLED": "on"}).disabled is True
    assert resolve_config({}, {"TRACER_API_KEY": "", "HH_API_KEY": "hh-key"}).api_key == "hh-key"


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        ({"sample_rate": 2}, {}, "setting 'sample_rate' must be between 0.0 and 1.0"),
        ({}, {"TRACER_SAMPLE_RATE": "half"}, "environment variable TRACER_SAMPLE_RATE"),
        ({"server_url": "ftp://x"}, {}, "setting 'server_url' must be an http:// or https:// URL"),
        ({}, {"TRACER_DISABLED": "maybe"}, "TRACER_DISABLED (for setting 'disabled') must be a boolean"),
        ({"max_queue_size": 0}, {}, "setting 'max_queue_size' must be at least 1"),
        ({"flush_interval": "soon"}, {}, "setting 'flush_interval' must be a number"),
        ({"mask": "not callable"}, {}, "setting 'mask' must be a callable"),
        ({"colour": "blue"}, {}, "unknown setting(s) 'colour'"),
        ({"project": ""}, {}, "setting 'project' must be a non-empty string"),
        ({"max_items": 1.5}, {}, "setting 'max_items' must be a whole number"),
    ],
)
def test_invalid_settings_fail_at_init_naming_the_setting(options: dict, env: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(options, env)
    assert message in str(caught.value)


def test_init_validates_and_rejects_bad_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACER_MAX_DEPTH", "deep")
    with pytest.raises(ConfigError, match="TRACER_MAX_DEPTH"):
        tracer.init()
    monkeypatch.delenv("TRACER_MAX_DEPTH")
    with pytest.raises(ConfigError, match="setting 'exporter'"):
        tracer.init(exporter=[object()])  # type: ignore[list-item]


def test_init_twice_keeps_one_worker_and_no_duplicates() -> None:
    memory = InMemoryExporter()
    first = tracer.init(exporter=memory, batch=True)
    with tracer.span("one"):
        pass
    second = tracer.init(exporter=memory, batch=True)
    assert first is second
    with tracer.span("two"):
        pass
    assert tracer.flush()
    workers = [th for th in threading.enumerate() if th.name == "tracer-worker"]
    assert len(workers) <= 1
    assert sorted(e["event_name"] for e in memory.events) == ["one", "two"]
    tracer.shutdown()


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACER_DISABLED", "true")
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False)

    @t.trace
    def f() -> int:
        return 1

    assert f() == 1 and memory.events == []
