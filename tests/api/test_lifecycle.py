"""Process exit and fork: nothing lost, nothing sent twice, nothing hangs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    env["TRACER_RAISE_INTERNAL_ERRORS"] = "1"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_script_that_never_flushes_delivers_everything(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = _run(
        f"""
        import tracer
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}), flush_interval=60, first_flush_interval=60)

        @tracer.trace
        def work(i):
            return i

        for i in range(2000):  # within the default queue bound (2,048): this test is about exit, not overflow
            work(i)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    events = _events(out)
    assert sorted(e["inputs"]["i"] for e in events) == list(range(2000))


def test_open_generator_span_is_ended_at_exit(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = _run(
        f"""
        import tracer
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}))

        @tracer.trace
        def stream():
            while True:
                yield "tick"

        suspended = stream()
        next(suspended)
        next(suspended)
        KEEP = suspended  # still suspended when the interpreter exits
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (event,) = _events(out)
    assert event["metadata"] == {"ended_early": True, "end_reason": "process_exit"}
    assert event["outputs"] == {"result": "ticktick"}


def test_spans_open_in_a_daemon_thread_are_ended_at_exit_innermost_first(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = _run(
        f"""
        import threading, time
        import tracer
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}))
        inside = threading.Event()

        def background():
            with tracer.span("poller", inputs={{"every": 1}}):
                with tracer.span("wait"):
                    inside.set()
                    time.sleep(60)  # still here when the main thread returns

        threading.Thread(target=background, daemon=True).start()
        inside.wait(10)
        with tracer.span("main-work"):
            pass
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    events = {event["event_name"]: event for event in _events(out)}
    assert sorted(events) == ["main-work", "poller", "wait"]
    assert "metadata" not in events["main-work"] or not events["main-work"]["metadata"]
    for name in ("poller", "wait"):
        assert events[name]["metadata"] == {"ended_early": True, "end_reason": "process_exit"}
    assert events["poller"]["inputs"] == {"every": 1}
    assert events["wait"]["parent_id"] == events["poller"]["event_id"]
    assert events["poller"]["children_ids"] == [events["wait"]["event_id"]]


def test_traced_functions_running_in_a_daemon_thread_are_ended_at_exit(tmp_path: Path) -> None:
    """A traced function's span is not listed among the open spans (it is on its thread's stack,
    where the exit handler finds it): nested calls still running at exit are ended, innermost first."""
    out = tmp_path / "events.jsonl"
    done = _run(
        f"""
        import threading, time
        import tracer
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}))
        inside = threading.Event()

        @tracer.trace
        def wait(seconds):
            inside.set()
            time.sleep(seconds)  # still here when the main thread returns

        @tracer.trace
        def poll(every):
            wait(60)

        threading.Thread(target=poll, args=(1,), daemon=True).start()
        inside.wait(10)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    events = {event["event_name"]: event for event in _events(out)}
    assert sorted(events) == ["poll", "wait"]
    for name in ("poll", "wait"):
        assert events[name]["metadata"] == {"ended_early": True, "end_reason": "process_exit"}
    assert events["poll"]["inputs"] == {"every": 1} and events["wait"]["inputs"] == {"seconds": 60}
    assert events["wait"]["parent_id"] == events["poll"]["event_id"]
    assert events["poll"]["children_ids"] == [events["wait"]["event_id"]]
    assert events["poll"]["event_type"] == "chain" and events["wait"]["event_type"] == "tool"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_forked_child_sends_its_own_events_once(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = _run(
        f"""
        import os, sys, tracer
        tracer.init(exporter=tracer.JSONLExporter({str(out)!r}), flush_interval=60, first_flush_interval=60)

        @tracer.trace
        def work(who, i):
            return i

        for i in range(50):
            work("parent-before-fork", i)   # queued, not yet sent when we fork
        pid = os.fork()
        if pid == 0:
            for i in range(20):
                work("child", i)
            ok = tracer.flush(5)            # must not hang on the parent's (absent) worker thread
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        for i in range(10):
            work("parent-after-fork", i)
        assert tracer.flush(5)
        sys.exit(os.waitstatus_to_exitcode(status))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    events = _events(out)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was sent twice"
    by_who: dict[str, int] = {}
    for event in events:
        by_who[event["inputs"]["who"]] = by_who.get(event["inputs"]["who"], 0) + 1
    assert by_who == {"parent-before-fork": 50, "child": 20, "parent-after-fork": 10}


def test_one_exit_handler_ends_every_tracers_open_work_in_phases(tmp_path: Path) -> None:
    """Two tracers, each with a suspended generator inside an open span: the generators' spans end
    first (phase 2), so the open spans (phase 3) still list them as children; both queues drain."""
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    done = _run(
        f"""
        import tracer
        tracers = [tracer.Tracer(exporter=tracer.JSONLExporter(path), flush_interval=60, first_flush_interval=60)
                   for path in ({str(first)!r}, {str(second)!r})]
        KEEP = []
        for t in tracers:
            @t.trace
            def ticks():
                while True:
                    yield "tick"

            scope = t.span("request")
            scope.__enter__()  # never exited: open at exit
            stream = ticks()
            next(stream)
            KEEP.append((scope, stream))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for path in (first, second):
        events = {event["event_name"]: event for event in _events(path)}
        request = events["request"]
        (ticks,) = [event for name, event in events.items() if name.endswith("ticks")]
        assert ticks["metadata"]["end_reason"] == request["metadata"]["end_reason"] == "process_exit"
        assert ticks["parent_id"] == request["event_id"]
        assert request["children_ids"] == [ticks["event_id"]]
