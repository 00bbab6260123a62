"""Patching mechanics: import order, idempotency, uninstrument, changed shapes, double events, concurrency."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import wrapt

import tracer
from tracer import integrations
from tracer._context import suppressed
from tracer._registry import integration
from tracer.integrations import _patch
from tracer.integrations._patch import Library, Target
from tracer.testing import CapturedEvents

from ..fake_llm_server import FakeLLMServer
from .conftest import USER, model_events, only_model_event

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

from openai.resources.chat.completions import completions as chat_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Every supported library installed here (the test extra pins them all), as instrument() lists them.
INSTALLED = sorted(
    name for name in integrations.SUPPORTED if integrations._supported_install(integrations._library(name))
)


def is_our_wrapper(value: Any) -> bool:
    return wrapt.find_wrapper(value, predicate=_patch.is_ours) is not None


# -- import order (fresh interpreters) ---------------------------------------------------------------------

_PRELUDE = """
import json, sys
sys.path.insert(0, {root!r})
from tests.fake_llm_server import FakeLLMServer
server = FakeLLMServer().start()
import tracer
import tracer.integrations
from tracer import InMemoryExporter
exporter = InMemoryExporter()
USER = [{{"role": "user", "content": "hi"}}]

def call_openai(client=None):
    import openai  # imported here: the scenarios choose when openai is first imported
    client = client or openai.OpenAI(base_url=server.openai_url, api_key="x", max_retries=0)
    client.chat.completions.create(model="m", messages=USER)


def call_anthropic():
    import anthropic
    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    client.messages.create(model="m", max_tokens=5, messages=USER)


def report(**extra):
    names = [e["event_name"] for e in exporter.events if e["event_type"] == "model"]
    print(json.dumps({{"model_events": names, **extra}}))
"""

_SCENARIOS = {
    "init_then_import": """
        tracer.init(exporter=exporter, batch=False)
        import openai, anthropic
        call_openai()
        call_anthropic()
        report()
    """,
    "import_then_init_after_client_creation": """
        import openai
        client = openai.OpenAI(base_url=server.openai_url, api_key="x", max_retries=0)
        call_openai(client)  # before init: not traced
        tracer.init(exporter=exporter, batch=False)
        call_openai(client)
        report()
    """,
    "instrument_false": """
        tracer.init(exporter=exporter, batch=False, instrument=False)
        import openai
        from openai.resources.chat.completions.completions import Completions
        call_openai()
        report(wrapped=type(Completions.__dict__["create"]).__name__ == "FunctionWrapper")
    """,
    "instrument_list": """
        tracer.init(exporter=exporter, batch=False, instrument=["anthropic"])
        import openai, anthropic
        call_openai()
        call_anthropic()
        report(instrumented=tracer.integrations.instrumented())
    """,
    "env_setting_and_explicit_instrument": """
        tracer.init(exporter=exporter, batch=False)  # TRACER_INSTRUMENT=false in the environment
        import openai
        client = openai.OpenAI(base_url=server.openai_url, api_key="x", max_retries=0)
        call_openai(client)
        tracer.integrations.instrument("openai")
        call_openai(client)
        report()
    """,
}


def _run(name: str, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    script = _PRELUDE.format(root=str(ROOT)) + textwrap.dedent(_SCENARIOS[name])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    env["TRACER_RAISE_INTERNAL_ERRORS"] = "1"
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_import_order_in_fresh_interpreters() -> None:
    scenarios = {
        "init_then_import": None,
        "import_then_init_after_client_creation": None,
        "instrument_false": None,
        "instrument_list": None,
        "env_setting_and_explicit_instrument": {"TRACER_INSTRUMENT": "false"},
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(scenarios, pool.map(lambda item: _run(*item), scenarios.items()), strict=True))
    assert results["init_then_import"]["model_events"] == [
        "openai.chat.completions.create",
        "anthropic.messages.create",
    ]
    assert results["import_then_init_after_client_creation"]["model_events"] == ["openai.chat.completions.create"]
    assert results["instrument_false"] == {"model_events": [], "wrapped": False}
    assert results["instrument_list"] == {"model_events": ["anthropic.messages.create"], "instrumented": ["anthropic"]}
    assert results["env_setting_and_explicit_instrument"]["model_events"] == ["openai.chat.completions.create"]


# -- idempotency and removal ---------------------------------------------------------------------------------


def test_instrumenting_twice_gives_one_event_per_call(events: CapturedEvents, oai: Any) -> None:
    library = integrations._library("openai")
    before = len(library.handles)
    assert integrations.instrument("openai") == ["openai"]
    assert integrations.instrument() == INSTALLED
    integrations.auto_instrument(None)
    assert len(library.handles) == before
    oai.chat.completions.create(model="gpt-x", messages=USER)
    assert len(model_events(events)) == 1


def test_uninstrument_restores_the_original_methods(events: CapturedEvents, oai: Any) -> None:
    current = chat_module.Completions.__dict__["create"]
    assert is_our_wrapper(current)
    original = current.__wrapped__  # one level: the SDK decorates create itself
    try:
        assert integrations.uninstrument() == INSTALLED
        assert chat_module.Completions.__dict__["create"] is original
        assert not is_our_wrapper(chat_module.AsyncCompletions.__dict__["create"])
        from anthropic.resources.messages import messages as anthropic_messages

        assert not is_our_wrapper(anthropic_messages.Messages.__dict__["stream"])
        assert integrations.instrumented() == []
        assert integrations.uninstrument() == []  # nothing left to restore
        oai.chat.completions.create(model="gpt-x", messages=USER)
        assert model_events(events) == []
    finally:
        integrations.instrument()
    assert is_our_wrapper(chat_module.Completions.__dict__["create"])
    oai.chat.completions.create(model="gpt-x", messages=USER)
    assert len(model_events(events)) == 1


def test_auto_instrument_list_drops_what_it_added_before(events: CapturedEvents) -> None:
    try:
        integrations.uninstrument()
        assert integrations.auto_instrument(None) == INSTALLED
        assert integrations.auto_instrument(["anthropic"]) == ["anthropic"]
        assert integrations.instrumented() == ["anthropic"]
        integrations.instrument("openai")  # explicit: survives the next auto_instrument
        assert integrations.auto_instrument(()) == []
        assert integrations.instrumented() == ["openai"]
    finally:
        integrations.instrument()


def test_unknown_integration_name() -> None:
    with pytest.raises(ValueError, match="unknown integration"):
        integrations.instrument("no-such-client")


def test_a_wrapper_left_in_place_calls_straight_through(events: CapturedEvents, oai: Any) -> None:
    """A wrapper that cannot be removed (someone wrapped on top of it) stops recording."""
    library = integrations._library("openai")
    wrapper = chat_module.Completions.__dict__["create"]
    try:
        library.active = False
        oai.chat.completions.create(model="gpt-x", messages=USER)
        assert model_events(events) == []
    finally:
        library.active = True
    assert chat_module.Completions.__dict__["create"] is wrapper


# -- version and shape checks ----------------------------------------------------------------------------------


def test_too_old_version_is_skipped_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    library = Library("openai", (999, 0), lambda: ())
    with caplog.at_level(logging.WARNING, logger="tracer"):
        assert integrations._supported_install(library) is False
        assert integrations._supported_install(library) is False
    lines = [r.getMessage() for r in caplog.records if "outside the supported range" in r.getMessage()]
    assert len(lines) == 1
    tested = integration("openai").tested
    assert "openai" in lines[0] and f">= 999.0, tested 999.0 to {tested[1]}" in lines[0]


def test_a_release_outside_the_range_is_not_instrumented_nor_listed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = integrations._library("groq")
    integrations.uninstrument("groq")
    monkeypatch.setattr(library, "min_version", (999,))
    try:
        with caplog.at_level(logging.WARNING, logger="tracer"):
            assert integrations.instrument("groq") == []
        assert "groq" not in integrations.instrumented()
        assert any("groq" in r.getMessage() and "outside the supported range" in r.getMessage() for r in caplog.records)
    finally:
        monkeypatch.undo()
        integrations.instrument("groq")
    assert "groq" in integrations.instrumented()


def test_a_release_newer_than_tested_is_instrumented_with_one_info_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = Library("openai", (1, 0), lambda: ())
    monkeypatch.setitem(integrations._NEWEST_TESTED, "openai", "1.0.0")
    with caplog.at_level(logging.INFO, logger="tracer"):
        assert integrations._supported_install(library) is True
    lines = [r.getMessage() for r in caplog.records if "newer than the newest release tested" in r.getMessage()]
    assert len(lines) == 1 and "(1.0.0)" in lines[0]


def test_changed_shape_is_skipped_and_never_breaks_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    package = tmp_path / "fakellm_shape"
    package.mkdir()
    (package / "__init__.py").write_text("class Client:\n    def create(self):\n        return 'real'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[str] = []

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        calls.append("wrapped")
        return wrapped(*args, **kwargs)

    library = Library(
        "fakellm_shape",
        (1, 0),
        lambda: (
            Target("fakellm_shape", "Client.create", _patch.mark(wrapper)),
            Target("fakellm_shape", "Client.renamed", _patch.mark(wrapper)),  # gone in "this version"
            Target("fakellm_shape", "Missing.create", _patch.mark(wrapper), optional=True),
        ),
    )
    with caplog.at_level(logging.WARNING, logger="tracer"):
        _patch.enable(library)  # before the import: patched by the post-import hook
        import fakellm_shape  # type: ignore[import-not-found]

        try:
            assert fakellm_shape.Client().create() == "real"
            assert calls == ["wrapped"]
            warnings = [r.getMessage() for r in caplog.records if "changed shape" in r.getMessage()]
            assert len(warnings) == 1 and "Client.renamed" in warnings[0]
            _patch.enable(library)  # again: nothing doubles
            fakellm_shape.Client().create()
            assert calls == ["wrapped", "wrapped"]
        finally:
            _patch.disable(library)
            sys.modules.pop("fakellm_shape", None)
    assert not is_our_wrapper(fakellm_shape.Client.__dict__["create"])


def test_hook_errors_never_fail_the_users_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACER_RAISE_INTERNAL_ERRORS", "0")

    def broken_targets() -> tuple[Target, ...]:
        raise RuntimeError("bug in the integration")

    library = Library("fakellm_broken", (1, 0), broken_targets)
    module = types.ModuleType("fakellm_broken_mod")
    monkeypatch.setitem(sys.modules, "fakellm_broken_mod", module)
    library._targets = (Target("fakellm_broken_mod", "X.y", _patch.mark(lambda *a: None)),)
    monkeypatch.setattr(_patch, "_patch_module", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    _patch.enable(library)  # the hook fires at once (module imported) and swallows the error
    _patch.disable(library)


# -- double events and suppression -----------------------------------------------------------------------------


def test_a_user_model_span_is_enriched_not_nested(events: CapturedEvents, oai: Any) -> None:
    @tracer.trace(event_type="model")
    def ask(question: str) -> str:
        reply = oai.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": question}])
        return str(reply.choices[0].message.content)

    with tracer.span("agent", event_type="chain"):
        assert ask("hi") == "Hello!"
    event = only_model_event(events)
    assert event["event_name"].endswith("ask")
    assert event["inputs"]["question"] == "hi"
    assert event["inputs"]["chat_history"] == USER
    assert event["config"]["provider"] == "local"  # the fake server is on 127.0.0.1
    assert event["outputs"]["content"] == "Hello!"
    assert event["metadata"]["total_tokens"] == 13


def test_a_user_model_span_enriched_by_a_stream(events: CapturedEvents, claude: Any) -> None:
    with (
        tracer.span("llm", event_type="model"),
        claude.messages.stream(model="claude-x", max_tokens=5, messages=USER) as stream,
    ):
        stream.get_final_message()
    event = only_model_event(events)
    assert event["event_name"] == "llm"
    assert event["outputs"]["content"] == "Hello!"
    assert event["metrics"]["time_to_first_token_ms"] > 0


def test_exporter_traffic_is_never_traced(events: CapturedEvents, oai: Any) -> None:
    token = suppressed.set(True)
    try:
        oai.chat.completions.create(model="gpt-x", messages=USER)
    finally:
        suppressed.reset(token)
    assert model_events(events) == []


def test_disabled_tracer_calls_straight_through(oai: Any) -> None:
    exporter = tracer.InMemoryExporter()
    tracer.init(exporter=exporter, batch=False, disabled=True)
    try:
        assert oai.chat.completions.create(model="gpt-x", messages=USER).choices[0].message.content == "Hello!"
        stream = oai.chat.completions.create(model="gpt-x", messages=USER, stream=True)
        assert type(stream) is openai.Stream  # not even a proxy
        list(stream)
    finally:
        tracer.init(disabled=False)
    assert exporter.events == []


def test_sampled_out_session_calls_straight_through(oai: Any) -> None:
    exporter = tracer.InMemoryExporter()
    tracer.init(exporter=exporter, batch=False, sample_rate=0.0)
    try:
        oai.chat.completions.create(model="gpt-x", messages=USER)
    finally:
        tracer.init(sample_rate=1.0)
    assert exporter.events == []


def test_capture_content_false_keeps_config_and_tokens_only(oai: Any) -> None:
    with tracer.testing.capture(capture_content=False) as captured:
        oai.chat.completions.create(model="gpt-x", messages=USER)
    event = only_model_event(captured)
    assert event["inputs"] in ({}, None)
    assert event["outputs"] == {"finish_reason": "stop"}
    assert event["config"]["model"] == "gpt-x"
    assert event["metadata"]["total_tokens"] == 13


# -- concurrency -------------------------------------------------------------------------------------------


def test_concurrent_calls_from_threads(events: CapturedEvents, oai: Any) -> None:
    def job(index: int) -> str:
        with tracer.span(f"job{index}", event_type="chain"):
            if index % 2:
                return "".join(
                    c.choices[0].delta.content or ""
                    for c in oai.chat.completions.create(model="gpt-x", messages=USER, stream=True)
                )
            return str(oai.chat.completions.create(model="gpt-x", messages=USER).choices[0].message.content)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(job, range(16))) == ["Hello!"] * 16
    llm = model_events(events)
    assert len(llm) == 16
    parents = {events.by_name(f"job{i}")["event_id"] for i in range(16)}
    assert {event["parent_id"] for event in llm} == parents  # each call under its own job
    assert threading.active_count() < 50


def test_concurrent_calls_from_tasks(events: CapturedEvents, server: FakeLLMServer) -> None:
    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=server.openai_url, api_key="x", max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0)

        async def job(index: int) -> None:
            with tracer.span(f"task{index}", event_type="chain"):
                if index % 2:
                    async with claude.messages.stream(model="claude-x", max_tokens=5, messages=USER) as stream:
                        await stream.get_final_message()
                else:
                    stream = await client.chat.completions.create(model="gpt-x", messages=USER, stream=True)
                    async for _chunk in stream:
                        await asyncio.sleep(0)

        await asyncio.gather(*(job(i) for i in range(10)))
        await client.close()
        await claude.close()

    asyncio.run(main())
    llm = model_events(events)
    assert len(llm) == 10
    for index in range(10):
        task = events.by_name(f"task{index}")
        (child,) = [event for event in llm if event["parent_id"] == task["event_id"]]
        assert child["outputs"]["content"] == "Hello!"


# -- process-wide state belongs to init() (issue 12) ------------------------------------------------------


def test_a_second_tracer_leaves_the_process_wide_setup_alone() -> None:
    import concurrent.futures

    integrations.uninstrument()  # forget patches other tests asked for explicitly (init() leaves those alone)
    tracer.init(exporter=tracer.InMemoryExporter(), batch=False, instrument=True, propagate_to_threads=True)
    patched = integrations.instrumented()
    submit = concurrent.futures.ThreadPoolExecutor.submit
    assert patched == [name for name in integrations.SUPPORTED if name in INSTALLED]
    for options in ({"instrument": False}, {"disabled": True}, {"propagate_to_threads": False}):
        other = tracer.Tracer(exporter=tracer.InMemoryExporter(), batch=False, **options)
        assert integrations.instrumented() == patched, options
        assert concurrent.futures.ThreadPoolExecutor.submit is submit, options
        other.shutdown(1.0)
    # The default tracer itself still manages them.
    tracer.init(instrument=False, propagate_to_threads=False)
    assert integrations.instrumented() == []
    assert concurrent.futures.ThreadPoolExecutor.submit is not submit
    tracer.init(instrument=True, propagate_to_threads=True)
    assert integrations.instrumented() == patched


def test_an_llm_call_inside_another_tracers_span_belongs_to_that_tracer(oai: Any, events: CapturedEvents) -> None:
    mine_events = tracer.InMemoryExporter()
    mine = tracer.Tracer(project="mine", exporter=mine_events, batch=False)

    @mine.trace
    def ask() -> None:
        oai.chat.completions.create(model="m", messages=USER)

    ask()
    with mine.session(session_name="own"):
        oai.chat.completions.create(model="m", messages=USER)  # no span, but mine's session is current
    assert model_events(events) == []  # nothing went to the default tracer
    recorded = mine_events.events
    parent = next(event for event in recorded if event["event_type"] != "model")
    calls = [event for event in recorded if event["event_type"] == "model"]
    assert [call["project"] for call in calls] == ["mine", "mine"]
    assert calls[0]["parent_id"] == parent["event_id"] and calls[0]["session_id"] == parent["session_id"]
    assert calls[1]["parent_id"] == calls[1]["session_id"] != parent["session_id"]
    mine.shutdown(1.0)
