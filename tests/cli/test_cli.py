"""The ``tracer`` command, run as a subprocess against real stores (and a real second collector)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import tracer
from tracer.store import SQLiteExporter, TraceStore

from ..processes import REPO, Server, clean_env, run_cli, wait_until

pytest.importorskip("click")
pytest.importorskip("rich")


def record(path: Path, session_name: str, *, fail: bool = True) -> str:
    """Trace a small RAG-like run into *path*; returns its session id."""
    t = tracer.Tracer(project="cli", session_name=session_name, exporter=SQLiteExporter(path), instrument=False)

    @t.trace(event_name="retrieve")
    def retrieve(q: str) -> list[str]:
        return ["doc"]

    @t.trace(event_type="model", event_name="generate", config={"model": "fake-1"})
    def generate(q: str, docs: list[str]) -> str:
        time.sleep(0.003)
        t.enrich_span(metadata={"prompt_tokens": 40, "completion_tokens": 2})
        return "answer"

    @t.trace(event_type="tool", event_name="lookup")
    def lookup() -> None:
        raise KeyError("no such order")

    @t.trace(event_type="chain", event_name="answer")
    def answer(q: str) -> str:
        if fail:
            with contextlib.suppress(KeyError):
                lookup()
        return generate(q, retrieve(q))

    answer("question")
    sid = t.current_session().session_id
    assert t.flush(5)
    t.shutdown()
    return sid


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    path = tmp_path_factory.mktemp("cli") / "traces.db"
    first = record(path, "first-run", fail=False)
    time.sleep(0.01)
    second = record(path, "rag-run")
    yield path, first, second


def test_sessions_lists_recent_sessions(store: tuple[Path, str, str]) -> None:
    path, first, second = store
    done = run_cli("sessions", "--store", str(path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "NAME", "SOURCE", "STARTED", "DURATION", "EVENTS", "ERRORS", "TOKENS"]
    assert lines[1].startswith(second[-12:]) and "rag-run" in lines[1]  # newest first
    assert lines[1].split()[-3:] == ["4", "1", "42"]  # events, errors, tokens
    assert lines[2].startswith(first[-12:]) and lines[2].split()[-3:] == ["3", "0", "42"]
    as_json = orjson.loads(run_cli("sessions", "--json", "-n", "1", "--store", str(path)).stdout)
    assert [s["session_id"] for s in as_json] == [second]
    assert as_json[0]["total_tokens"] == 42 and as_json[0]["duration"] > 0


def test_show_draws_the_tree_and_json(store: tuple[Path, str, str]) -> None:
    path, first, second = store
    done = run_cli("show", "last", "--store", str(path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"session rag-run  {second}" in out
    assert "4 events · 1 error · 42 tokens (40 in, 2 out)" in out
    tree = [line for line in out.splitlines() if "█" in line]
    assert tree[0].startswith("chain answer")
    assert any(line.startswith("├─ tool  lookup") and "✗ KeyError: 'no such order'" in line for line in tree)
    assert any(line.startswith("├─ tool  retrieve") for line in tree)
    assert any(line.startswith("└─ model generate") and "fake-1 · 42 tokens (40 in, 2 out)" in line for line in tree)
    assert len({line.index("  ", len("├─ model generate")) for line in tree}) == 1  # durations aligned
    assert "█" * 24 in tree[0]  # the root spans the whole timeline
    by_prefix = run_cli("show", first[-12:], "--io", "--store", str(path))
    assert "first-run" in by_prefix.stdout and '  in  {"q":"question"}' in by_prefix.stdout
    data = orjson.loads(run_cli("show", second, "--json", "--store", str(path)).stdout)
    assert data["session"]["session_id"] == second and data["session"]["error_count"] == 1
    assert {e["event_name"] for e in data["events"]} == {"answer", "lookup", "generate", "retrieve"}
    assert all(e["session_id"] == second and isinstance(e["start_time"], int) for e in data["events"])


def test_errors_are_one_line_and_exit_non_zero(tmp_path: Path, store: tuple[Path, str, str]) -> None:
    path = store[0]
    missing = run_cli("show", "nope", "--store", str(path))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"tracer: error: no session 'nope' in {path} (see `tracer sessions`)"
    ]
    no_store = run_cli("sessions", cwd=tmp_path)
    assert no_store.returncode == 1 and no_store.stderr.startswith(
        "tracer: error: no trace store at ./.tracer/traces.db"
    )
    (tmp_path / "junk.db").write_bytes(b"junk" * 500)
    junk = run_cli("sessions", "--store", str(tmp_path / "junk.db"))
    assert junk.returncode == 1 and len(junk.stderr.strip().splitlines()) == 1 and "not a tracer store" in junk.stderr
    assert run_cli("export", "--store", str(path)).returncode == 1


def test_every_command_has_help_with_examples() -> None:
    from click.testing import CliRunner

    from tracer.cli._app import cli

    runner = CliRunner()
    for command in ["", "sessions", "show", "tail", "export", "send", "serve"]:
        result = runner.invoke(cli, [*command.split(), "--help"])
        assert result.exit_code == 0, result.output
        assert "Examples:" in result.output, command
    version = run_cli("--version")
    assert version.returncode == 0 and tracer.__version__ in version.stdout


def test_tail_once_and_follow(tmp_path: Path) -> None:
    path = tmp_path / "tail.db"
    record(path, "tail-one", fail=False)
    once = run_cli("tail", "--once", "-n", "2", "--store", str(path))
    assert once.returncode == 0, once.stderr
    assert [line.split()[2:4] for line in once.stdout.splitlines()] == [["model", "generate"], ["chain", "answer"]]

    options = ["-n", "0", "--json", "--interval", "0.05", "--timeout", "8", "--store", str(path)]
    follow = subprocess.Popen(
        [sys.executable, "-m", "tracer", "tail", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    seen: list[dict[str, object]] = []

    def read() -> None:
        assert follow.stdout is not None
        seen.extend(orjson.loads(line) for line in follow.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # Keep writing until the follower has shown something (it may start polling after our first write).
    written = []
    t = tracer.Tracer(session_name="live", exporter=SQLiteExporter(path), batch=False, instrument=False)
    for index in range(100):
        with t.span(f"live-{index}"):
            pass
        written.append(f"live-{index}")
        if wait_until(lambda: bool(seen), timeout=0.1):
            break
    t.shutdown()
    assert wait_until(lambda: bool(seen), timeout=5)
    follow.terminate()
    follow.communicate(timeout=10)
    reader.join(5)
    names = [str(event["event_name"]) for event in seen]
    assert names and set(names) <= set(written)
    assert names == written[written.index(names[0]) : written.index(names[0]) + len(names)]  # in order, no gaps

    bounded = run_cli("tail", "--timeout", "0.3", "--interval", "0.05", "-n", "1", "--store", str(path))
    assert bounded.returncode == 0 and len(bounded.stdout.splitlines()) == 1


def test_export_jsonl(tmp_path: Path, store: tuple[Path, str, str]) -> None:
    path, first, second = store
    everything = run_cli("export", "--all", "--format", "jsonl", "--store", str(path))
    assert everything.returncode == 0, everything.stderr
    events = [orjson.loads(line) for line in everything.stdout.splitlines()]
    assert len(events) == 7 and {e["session_id"] for e in events} == {first, second}
    required = {"project", "source", "event_name", "event_type", "event_id", "session_id", "parent_id", "inputs"}
    assert all(required <= set(e) for e in events)
    target = tmp_path / "last.jsonl"
    one = run_cli("export", "last", "-o", str(target), "--store", str(path))
    assert one.returncode == 0 and one.stderr.strip() == f"tracer: exported 4 event(s) to {target}"
    assert {orjson.loads(line)["session_id"] for line in target.read_text().splitlines()} == {second}


def test_send_to_a_second_collector_and_resend_idempotently(tmp_path: Path) -> None:
    path = tmp_path / "source.db"
    sid = record(path, "to-send")
    receiver = Server(tmp_path / "receiver.db", "--api-key", "k2")
    try:
        sent = run_cli("send", "--api-key", "k2", "--server-url", receiver.url, "--store", str(path))
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() == f"tracer: sent 4 event(s) to {receiver.url}"
        with TraceStore(path) as source, TraceStore(receiver.store) as target:
            assert {e["event_id"] for e in target.session_events(sid)} == {
                e["event_id"] for e in source.session_events(sid)
            }
            summary = target.session(sid)
            assert summary is not None and summary.session_name == "to-send" and summary.total_tokens == 42
        again = run_cli("send", "--api-key", "k2", "--server-url", receiver.url, "--store", str(path))
        assert again.returncode == 0
        assert again.stdout.strip() == f"tracer: nothing to send: all 4 event(s) are already on {receiver.url}"
        # Something new, and a late update of an event already sent: only those go.
        t = tracer.Tracer(session_name="to-send", exporter=SQLiteExporter(path), batch=False, instrument=False)
        with t.session("to-send", session_id=sid), t.span("extra") as extra:
            pass
        extra.update(feedback={"ok": True})
        t.shutdown()
        with TraceStore(path) as source:
            retrieve = next(e for e in source.session_events(sid) if e["event_name"] == "retrieve")
            source.write([], {}, [{"event_id": retrieve["event_id"], "metrics": {"recall": 1.0}}])
        third = run_cli("send", "last", "--api-key", "k2", "--server-url", receiver.url, "--store", str(path))
        assert third.returncode == 0, third.stderr
        assert third.stdout.strip() == (
            f"tracer: sent 1 event(s), 1 update(s) to {receiver.url}; 4 event(s) were already there"
        )
        with TraceStore(receiver.store) as target:
            events = {e["event_name"]: e for e in target.session_events(sid)}
        assert events["extra"]["feedback"] == {"ok": True}
        assert events["retrieve"]["metrics"] == {"recall": 1.0}
        refused = run_cli("send", "--api-key", "wrong", "--server-url", receiver.url, "--store", str(path), "--all")
        assert refused.returncode == 0  # nothing left to send: the key is never even needed
        new_sid = record(path, "refused")
        refused = run_cli("send", new_sid, "--api-key", "wrong", "--server-url", receiver.url, "--store", str(path))
        assert refused.returncode == 1
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith("tracer: error: 4 item(s) not sent") and "401" in line
    finally:
        assert receiver.stop() == 0


def test_missing_extras_name_the_pip_install() -> None:
    for blocked, args, extra in [("rich", "['sessions']", "cli"), ("uvicorn", "['serve']", "server")]:
        code = f"import sys; sys.modules[{blocked!r}] = None; from tracer.cli import main; sys.exit(main({args}))"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), check=False
        )
        assert done.returncode == 1
        [line] = done.stderr.strip().splitlines()
        assert line.endswith(f"pip install 'tracer-ai[{extra}]'"), line


def test_local_demo_then_show_last(tmp_path: Path) -> None:
    """The README's first command: the demo stores its trace by default; `tracer show last` draws it."""
    demo = REPO / "examples" / "local_demo.py"
    # Until tracer.init() defaults to the store (the `store` setting), apply the proposed wiring here.
    runner = f"""
import runpy
from tracer._config import Config
if "store" not in Config.__dataclass_fields__:
    from tracer._tracer import Tracer
    from tracer.store import SQLiteExporter, announce

    def _default_exporters(self, config):
        exporter = SQLiteExporter(None)
        announce(exporter.path)
        return [exporter]

    Tracer._default_exporters = _default_exporters
runpy.run_path({str(demo)!r}, run_name="__main__")
"""
    done = subprocess.run(
        [sys.executable, "-c", runner], capture_output=True, text=True, cwd=tmp_path, env=clean_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "tracer: no API key, so traces go to ./.tracer/traces.db; view them with `tracer show last`" in done.stderr
    assert "Now run:  tracer show last" in done.stdout
    shown = run_cli("show", "last", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "session support-bot" in shown.stdout
    assert "✗ KeyError" in shown.stdout and "fake-gpt-mini" in shown.stdout
    assert run_cli("sessions", cwd=tmp_path).stdout.count("support-bot") == 1
