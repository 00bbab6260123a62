"""HoneyHive's own Python packages, each in its own venv (tests/client_venvs.py), pointed at a real
``tracer serve``: their tracers' spans (OTLP, protobuf from 0.2.x, JSON from 1.x), sessions and
enrichment, and the client calls of their READMEs, land in the store as the right tree."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tracer.store import TraceStore

from ..client_venvs import client_python
from ..processes import REPO, Server, clean_env, run_cli

pytest.importorskip("starlette")
pytest.importorskip("opentelemetry.proto")


@pytest.fixture(scope="module")
def hh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("honeyhive") / "c.db", "--api-key", "hh-key")
    try:
        yield running
    finally:
        assert running.stop() == 0


def run_app(client: str, script: str, server: Server) -> dict[str, Any]:
    python = client_python(client)  # made on first use (~20 s for 1.x, ~80 s for 0.2.x), then cached
    env = clean_env(HONEYHIVE_TELEMETRY="false")
    env.pop("PYTHONPATH")  # the client's venv only: not this checkout's tracer
    run = subprocess.run(
        [str(python), str(REPO / "tests" / "clients" / script), server.url, "hh-key"],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return orjson.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("client", "script", "retrieve", "inputs"),
    [
        ("honeyhive-1", "honeyhive1_app.py", "__main__.retrieve", {"question": "hello"}),
        ("honeyhive-0.2", "honeyhive02_app.py", "retrieve", {"_params_": {"question": "hello"}}),
    ],
)
def test_honeyhive_tracer_and_client(
    hh_server: Server, client: str, script: str, retrieve: str, inputs: dict[str, Any]
) -> None:
    out = run_app(client, script, hh_server)
    assert out["result"] == "HELLO!"
    sid = out["session_id"]
    with TraceStore(hh_server.store) as store:
        summary = store.session(sid)
        events = {event["event_name"]: event for event in store.session_events(sid)}
        client_session = store.session(out["client_session"])
    # The tracer's session: started by /session/start (the collector's id, not a client-side one).
    assert summary is not None and summary.session_name in ("hh1-app", "hh02-app") and summary.source == "tests"
    assert summary.properties["metadata"]["k"] == "v" and summary.properties["user_properties"]
    answer, child = events["answer"], events[retrieve]
    assert (answer["event_type"], child["event_type"]) == ("chain", "tool")
    assert answer["parent_id"] == sid and child["parent_id"] == answer["event_id"]
    assert answer["inputs"] == inputs and answer["outputs"] == {"result": "HELLO!"}
    assert child["outputs"] == {"result": "HELLO"}
    assert answer["metadata"]["step"] == "answer" and answer["metrics"] == {"score": 1}
    assert out["exported"] == len(events) and sorted(out["exported_names"]) == sorted(events)
    assert client_session is not None
    shown = run_cli("show", sid, "--store", str(hh_server.store))
    assert shown.returncode == 0, shown.stderr
    assert "chain answer" in shown.stdout and f"└─ tool  {retrieve}" in shown.stdout
    if client == "honeyhive-1":
        assert set(events) == {"answer", retrieve, "async_step", "custom-operation"}
        assert out["flushed"] is True and out["client_session_project"] == "local"
        assert client_session.session_name == "client-session" and out["listed"] == out["exported"]
        with TraceStore(hh_server.store) as store:
            [text] = [e for e in store.iter_events() if orjson.loads(e)["event_id"] == out["created_id"]]
        created = orjson.loads(text)  # events.update_event(duration=42): end_time moved too
        assert created["metadata"] == {"late": True} and created["end_time"] - created["start_time"] == 42
    else:
        assert set(events) == {"answer", retrieve} and summary.project == "p02"
        assert out["got_session_type"] == "session" and client_session.session_name == "Playground Session"
        with TraceStore(hh_server.store) as store:
            [model] = [e for e in store.iter_events() if orjson.loads(e)["event_id"] == out["model_event_id"]]
        model_event = orjson.loads(model)
        assert model_event["config"] == {"model": "gpt-4o", "provider": "openai"}
        assert model_event["inputs"] == {"chat_history": [{"role": "user", "content": "hi"}]}
        with TraceStore(hh_server.store) as store:
            stored = {
                event["event_id"]: event
                for event in map(orjson.loads, store.iter_events())
                if event["event_id"] in {out["created_id"], *out["batch_ids"], *out["model_batch_ids"]}
            }
        created = stored[out["created_id"]]  # updated with duration=42: end_time moved too
        assert created["metadata"] == {"late": True} and created["duration"] == 42
        assert created["end_time"] - created["start_time"] == 42
        assert len(stored) == 3
