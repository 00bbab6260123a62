"""Nothing lost by default: bursts, outages, a killed process, shared spools, ``tracer send --spool``.

Real processes (the traced apps run as subprocesses), the real fake HoneyHive server of
``tests.collector`` on 127.0.0.1 (in this process, so that the tests can start, stop and break it),
real SQLite spool files.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import tracer
from tracer import Batch
from tracer._spool import PROBE_INTERVAL, SpoolTarget
from tracer.store import TraceStore
from tracer.store import spool as spool_module
from tracer.store.spool import SQLiteSpool

from ..collector import Collector

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    env.update(TRACER_RAISE_INTERNAL_ERRORS="1", PYTHONPATH=str(REPO))
    env.update(extra)
    return env


def _script(tmp_path: Path, code: str, name: str = "app.py") -> Path:
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return script


def _start(script: Path, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=cwd,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, Any]:
    """Wait for *process*; its last stdout line is a JSON report."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _file_bytes(path: Path) -> int:
    """The database file and its write-ahead log, if any."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _spooled_ids(path: Path) -> set[str]:
    with TraceStore(path, create=False) as store:
        return {json.loads(text)["event_id"] for text in store.iter_events()}


def _assert_once(collector: Collector, expected: set[str]) -> None:
    ids = collector.event_ids()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} event(s) received twice"
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} of {len(expected)} event(s) never arrived"


# An app tracing at about RATE events/s for SECONDS, printing its stats as JSON at the end (after a
# flush of up to FLUSH seconds). Each event's input carries its number, so that the test can tell
# which arrived.
_STEADY_APP = """
    import json, os, sys, time, tracer

    rate, seconds, flush = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    t = tracer.init(api_key="k", server_url=os.environ["URL"], project="spool", instrument=False)

    @t.trace
    def step(i):
        return i

    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while i < due:
            step(i)
            i += 1
        time.sleep(0.005)
    ok = t.flush(flush)
    print(json.dumps({"created": i, "flushed": ok, "stats": t.stats()}), flush=True)
"""


def _run_steady(tmp_path: Path, url: str, rate: float, seconds: float, flush: float) -> subprocess.Popen[str]:
    script = _script(tmp_path, _STEADY_APP)
    process = subprocess.Popen(
        [sys.executable, str(script), str(rate), str(seconds), str(flush)],
        cwd=tmp_path,
        env=_env(URL=url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process


def _first_delivery_after(collector: Collector, moment: float) -> float:
    """Seconds from *moment* (monotonic) to the first request the collector accepted after it."""
    times = [r.time for r in collector.requests_to("POST", "/events/batch") if r.time >= moment and r.status == 200]
    assert times, "nothing was delivered after the backend came back"
    return min(times) - moment


# -- outages ------------------------------------------------------------------------------------


def test_a_30_second_503_outage_at_3000_events_per_second_loses_nothing(
    collector: Collector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The one long test: 2 s up, 30 s of 503 for every request, then up again; the app keeps
    # tracing at 3,000 events/s throughout and flushes at the end.
    app = _run_steady(tmp_path, collector.url, rate=3000, seconds=33, flush=30)
    time.sleep(2)
    collector.outage(503)
    time.sleep(30)
    collector.recover()
    back = time.monotonic()
    report = _finish(app, timeout=90)
    stats = report["stats"]
    ids = collector.event_ids()
    assert len(ids) == len(set(ids)) == report["created"], (len(ids), len(set(ids)), report["created"])
    assert report["flushed"] is True
    assert stats["dropped_total"] == 0, stats["dropped"]
    assert stats["spooled"] > 60_000  # most of the outage went through the spool...
    assert stats["replayed"] == stats["spooled"]  # ...and all of it came back
    assert stats["sent"] + stats["replayed"] == report["created"]
    assert stats["spool_backlog"] == 0
    resumed = _first_delivery_after(collector, back)
    with capsys.disabled():
        print(f"\n503 outage: {report['created']} events, {stats['spooled']} spooled, delivery resumed {resumed:.2f}s")
    assert resumed < 5.0  # target 2 s; generous for a loaded CI machine


def test_connection_refused_then_the_server_on_the_same_port_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    collector = Collector(port=port)
    try:
        app = _run_steady(tmp_path, url, rate=3000, seconds=8.5, flush=20)
        time.sleep(1.5)
        # Nothing listens: connections are refused. Longer than a batch's 5 s of retries, so that
        # the spool is used (a shorter outage is ridden out by the retries alone).
        collector.close()
        time.sleep(5.5)
        collector = Collector(port=port)
        back = time.monotonic()
        report = _finish(app, timeout=60)
        stats = report["stats"]
        assert report["flushed"] is True and stats["dropped_total"] == 0, stats
        assert stats["spooled"] > 0 and stats["replayed"] == stats["spooled"]
        # The first collector's events are gone with it: check the second one got the rest once.
        ids = collector.event_ids()
        assert len(ids) == len(set(ids))
        assert len(ids) >= stats["replayed"]
        resumed = _first_delivery_after(collector, back)
        with capsys.disabled():
            print(f"\nrefused: {stats['spooled']} spooled, delivery resumed {resumed:.2f}s after the server came back")
        assert resumed < 5.0
    finally:
        collector.close()


_KILLED_APP = """
    import os, time, tracer

    t = tracer.init(api_key="k", server_url=os.environ["URL"], project="spool", instrument=False)

    @t.trace
    def step(i):
        return i

    i = 0
    while True:  # until SIGKILL
        for _ in range(100):
            step(i)
            i += 1
        time.sleep(0.01)
"""

_SECOND_APP = """
    import json, os, tracer

    t = tracer.init(api_key="k", server_url=os.environ["URL"], project="spool", instrument=False)
    ok = t.flush(30)  # traces nothing itself: only what the killed process left
    print(json.dumps({"flushed": ok, "stats": t.stats()}), flush=True)
"""


def test_a_process_killed_during_an_outage_leaves_a_spool_the_next_process_delivers(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"  # nothing listening yet: the backend is down
    spool = tmp_path / ".tracer" / "spool.db"
    first = _start(_script(tmp_path, _KILLED_APP, "first.py"), tmp_path, URL=url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if spool.exists() and len(_spooled_ids(spool)) >= 2000:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the first process spooled nothing")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL
    spooled = _spooled_ids(spool)
    collector = Collector(port=port)
    try:
        report = _finish(_start(_script(tmp_path, _SECOND_APP, "second.py"), tmp_path, URL=url))
        assert report["flushed"] is True
        assert report["stats"]["replayed"] == len(spooled)
        _assert_once(collector, spooled)
        assert len(collector.event_ids()) == len(spooled)
    finally:
        collector.close()
    assert _spooled_ids(spool) == set()


def _fill_spool(path: Path, count: int, session: str = "filled") -> set[str]:
    """Spool *count* real events of one session (recorded by a tracer, written with SQLiteSpool)."""
    recorded = tracer.InMemoryExporter()
    t = tracer.Tracer(exporter=recorded, project="spool", session_name=session, batch=False, instrument=False)
    for i in range(count):
        with t.span("filled", inputs={"i": i}):
            pass
    t.shutdown(0.5)
    events = list(recorded.events)
    sid = events[0]["session_id"]
    spool = SQLiteSpool(path, max_bytes=2**30)
    try:
        for start in range(0, count, 1000):
            part = events[start : start + 1000]
            spool.write(
                Batch(
                    [orjson.dumps(event) for event in part],
                    [sid] * len(part),
                    {sid: {"session_id": sid, "session_name": session, "source": "test"}},
                )
            )
    finally:
        spool.close()
    ids = _spooled_ids(path)
    assert len(ids) == count
    return ids


_DRAIN_APP = """
    import json, os, tracer

    t = tracer.init(api_key="k", server_url=os.environ["URL"], project="spool", spool=os.environ["SPOOL"],
                    instrument=False)
    ok = t.flush(30)
    print(json.dumps({"flushed": ok, "stats": t.stats()}), flush=True)
"""


def test_two_processes_replaying_one_spool_never_send_an_event_twice(collector: Collector, tmp_path: Path) -> None:
    spool = tmp_path / "shared.db"
    expected = _fill_spool(spool, 10_000)
    script = _script(tmp_path, _DRAIN_APP)
    apps = [_start(script, tmp_path, URL=collector.url, SPOOL=str(spool)) for _ in range(2)]
    reports = [_finish(app) for app in apps]
    assert all(report["flushed"] for report in reports)
    assert sum(report["stats"]["replayed"] for report in reports) == len(expected)
    _assert_once(collector, expected)
    assert len(collector.event_ids()) == len(expected)


def test_a_full_spool_drops_its_oldest_events_and_counts_them(tmp_path: Path) -> None:
    spool = tmp_path / "small.db"
    port = _free_port()
    t = tracer.Tracer(
        api_key="k",
        server_url=f"http://127.0.0.1:{port}",
        project="spool",
        spool=str(spool),
        max_spool_bytes=256 * 1024,
        instrument=False,
        export_timeout=0.5,
    )
    try:
        for i in range(2000):
            with t.span("big", inputs={"i": i, "text": "x" * 1000}):
                pass
        assert t.flush(20.0) is False
        stats = t.stats()
    finally:
        t.shutdown(0.5)
    dropped = stats["dropped"]["spool_full"]
    assert dropped > 0
    assert stats["spooled"] == 2000
    with TraceStore(spool, create=False) as store:
        kept = sorted(json.loads(text)["inputs"]["i"] for text in store.iter_events())
    assert len(kept) == 2000 - dropped
    assert kept == list(range(2000 - len(kept), 2000))  # the newest are the ones kept
    assert stats["spool_backlog"] == len(kept)
    assert 0 < stats["spool_bytes"] <= 256 * 1024


def test_tracer_send_drains_a_spool_by_hand(collector: Collector, tmp_path: Path) -> None:
    spool = tmp_path / "by-hand.db"
    expected = _fill_spool(spool, 1500)
    url = collector.url
    filled = _file_bytes(spool)
    done = subprocess.run(
        [sys.executable, "-m", "tracer", "send", "--spool", str(spool), "--api-key", "k", "--server-url", url],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sent 1500 spooled event(s)" in done.stdout
    _assert_once(collector, expected)
    assert _spooled_ids(spool) == set()
    drained = _file_bytes(spool)
    assert drained < filled / 4, (filled, drained)  # the pages are given back to the file system
    again = subprocess.run(
        [sys.executable, "-m", "tracer", "send", "--spool", str(spool), "--api-key", "k", "--server-url", url],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and "nothing to send" in again.stdout
    assert len(collector.event_ids()) == 1500


def test_spooled_events_are_readable_by_the_tracer_commands(tmp_path: Path) -> None:
    spool = tmp_path / "readable.db"
    _fill_spool(spool, 10, session="look-at-me")
    done = subprocess.run(
        [sys.executable, "-m", "tracer", "sessions", "--store", str(spool)],
        capture_output=True,
        text=True,
        env=_env(NO_COLOR="1", COLUMNS="200"),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "look-at-me" in done.stdout


def test_flush_waits_for_the_backlog_and_stats_show_it(collector: Collector, tmp_path: Path) -> None:
    collector.outage(503)
    t = tracer.Tracer(api_key="k", server_url=collector.url, project="spool", instrument=False, export_timeout=0.5)
    try:
        for i in range(50):
            with t.span("waiting", inputs={"i": i}):
                pass
        assert t.flush(10.0) is False  # spooled is not delivered
        stats = t.stats()
        assert stats["spooled"] == 50 and stats["spool_backlog"] == 50 and stats["spool_bytes"] > 0
        assert stats["dropped_total"] == 0
        collector.recover()
        assert t.flush(10.0) is True
        stats = t.stats()
        assert stats["replayed"] == 50 and stats["spool_backlog"] == 0
        assert len(set(collector.event_ids())) == len(collector.event_ids()) == 50
    finally:
        t.shutdown(1.0)


# -- bursts with the default settings -------------------------------------------------------------

_BURST_APP = """
    import json, os, sys, tracer

    count = int(sys.argv[1])
    if os.environ.get("URL"):
        t = tracer.init(api_key="k", server_url=os.environ["URL"], project="burst", instrument=False)
    else:
        t = tracer.init(project="burst", session_name=os.environ["NAME"], instrument=False)  # the local store

    @t.trace
    def step(i):
        return i

    for i in range(count):  # as fast as one thread can
        step(i)
    ok = t.flush(120)
    print(json.dumps({"flushed": ok, "stats": t.stats()}), flush=True)
"""


def test_a_burst_of_100000_events_from_one_thread_reaches_the_server_whole(
    collector: Collector, tmp_path: Path
) -> None:
    script = _script(tmp_path, _BURST_APP)
    report = _finish(_start_args(script, tmp_path, ["100000"], URL=collector.url), timeout=180)
    stats = report["stats"]
    assert report["flushed"] is True, stats
    assert stats["dropped_total"] == 0, stats["dropped"]
    assert stats["sent"] + stats["replayed"] == 100_000
    with collector.lock:
        numbers = [event["inputs"]["i"] for event in collector.events]
    assert len(numbers) == 100_000 and set(numbers) == set(range(100_000))


def test_bursts_from_four_processes_into_the_default_local_store_are_all_stored(tmp_path: Path) -> None:
    script = _script(tmp_path, _BURST_APP)
    apps = [_start_args(script, tmp_path, ["10000"], NAME=f"proc-{n}") for n in range(4)]
    reports = [_finish(app, timeout=180) for app in apps]
    for report in reports:
        assert report["flushed"] is True and report["stats"]["dropped_total"] == 0, report["stats"]
        assert report["stats"]["sent"] == 10_000
    with TraceStore(tmp_path / ".tracer" / "traces.db", create=False) as store:
        assert store.count_events() == 40_000
        names = {summary.session_name for summary in store.sessions(10)}
    assert names == {f"proc-{n}" for n in range(4)}


def test_a_burst_of_100000_events_into_the_local_store_is_stored_whole(tmp_path: Path) -> None:
    script = _script(tmp_path, _BURST_APP)
    report = _finish(_start_args(script, tmp_path, ["100000"], NAME="one"), timeout=180)
    assert report["flushed"] is True and report["stats"]["dropped_total"] == 0, report["stats"]
    with TraceStore(tmp_path / ".tracer" / "traces.db", create=False) as store:
        numbers = {json.loads(text)["inputs"]["i"] for text in store.iter_events()}
    assert numbers == set(range(100_000))


def _start_args(script: Path, cwd: Path, args: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_shutdown_out_of_time_spools_what_is_queued_instead_of_dropping_it(
    collector: Collector, tmp_path: Path
) -> None:
    collector.outage(503)
    spool = tmp_path / "at-exit.db"
    t = tracer.Tracer(
        api_key="k", server_url=collector.url, project="spool", spool=str(spool), instrument=False,
        flush_interval=30, first_flush_interval=0.01,
    )  # fmt: skip
    with t.span("first"):
        pass
    time.sleep(0.3)  # the worker is now in the first batch's retries (up to 5 s)
    for i in range(25):
        with t.span("queued-behind", inputs={"i": i}):
            pass
    started = time.monotonic()
    t.shutdown(timeout=0.5)
    assert time.monotonic() - started < 3.0
    stats = t.stats()
    assert stats["dropped_total"] == 0, json.dumps(stats)
    assert stats["spooled"] == 26
    assert len(_spooled_ids(spool)) == 26


def test_late_updates_during_an_outage_are_spooled_and_sent_after_their_events(
    collector: Collector, tmp_path: Path
) -> None:
    collector.outage(503)
    t = tracer.Tracer(
        api_key="k", server_url=collector.url, project="spool", instrument=False, export_timeout=0.5,
        spool=str(tmp_path / "updates.db"),
    )  # fmt: skip
    try:
        with t.span("enriched-later") as span:
            pass
        assert t.flush(10.0) is False  # the event is spooled
        span.update(metadata={"late": True})  # a PUT /events for an event the server does not have yet
        t.enrich_session(metadata={"customer": "acme"})
        assert t.flush(10.0) is False  # the updates are spooled too
        stats = t.stats()
        assert stats["dropped_total"] == 0, stats["dropped"]
        assert stats["spooled"] == 1 and stats["updates_sent"] == 0
        collector.recover()
        assert t.flush(10.0) is True
        stats = t.stats()
        assert stats["dropped_total"] == 0, stats["dropped"]
        assert stats["replayed"] == 1 and stats["updates_sent"] == 2
    finally:
        t.shutdown(1.0)
    (event,) = collector.events
    assert event["event_name"] == "enriched-later"
    puts = [r for r in collector.requests_to("PUT", "/events") if r.status == 200]
    # Updates of different events go side by side: in either order.
    assert sorted((r.body["event_id"], r.body["metadata"]) for r in puts) == sorted(
        [
            (event["event_id"], {"late": True}),
            (event["session_id"], {"customer": "acme"}),  # the session is known to the server by then
        ]
    )
    batch = next(r for r in collector.requests_to("POST", "/events/batch") if r.status == 200)
    assert batch.time < min(put.time for put in puts)  # the event first, then its updates


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_child_forked_while_the_spool_is_busy_can_still_use_it(tmp_path: Path) -> None:
    # The parent's worker may hold the spool's lock at the moment of fork(); the child must not
    # inherit it held (it would wait forever on its first spill).
    code = f"""
        import os, signal, sys, threading
        sys.path.insert(0, {str(REPO)!r})
        from tracer import Batch
        from tracer.store.spool import SQLiteSpool

        spool = SQLiteSpool({str(tmp_path / "forked.db")!r}, max_bytes=2**30)
        held = threading.Event()
        threading.Thread(target=lambda: (spool._lock.acquire(), held.set()), daemon=True).start()
        held.wait(5)
        pid = os.fork()
        if pid == 0:
            signal.alarm(10)  # a deadlock fails the child instead of hanging the test
            event = b'{{"event_id": "e1", "session_id": "s1", "event_type": "tool", "event_name": "x"}}'
            written = spool.write(Batch([event], ["s1"], {{}}))
            os._exit(0 if written.written == 1 else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """
    done = subprocess.run(
        [sys.executable, str(_script(tmp_path, code))], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", done.stderr


def test_the_spool_keeps_each_events_exact_text_and_the_columns_the_commands_read(tmp_path: Path) -> None:
    recorded = tracer.InMemoryExporter()
    t = tracer.Tracer(exporter=recorded, project="spool", session_name="exact", batch=False, instrument=False)
    with (
        t.span("outer", inputs={"pi": 3.141592653589793, "text": 'quote " and \\u00e9 é'}),
        t.span("inner", event_type="model", config={"model": "m-1"}) as inner,
    ):
        inner.update(metadata={"prompt_tokens": 7, "completion_tokens": 5})
    t.shutdown(0.5)
    texts = [orjson.dumps(event) for event in recorded.events]
    sid = recorded.events[0]["session_id"]
    spool = SQLiteSpool(tmp_path / "exact.db", max_bytes=2**30)
    try:
        written = spool.write(Batch(texts, [sid, sid], {sid: {"session_id": sid, "session_name": "exact"}}))
        assert written.written == 2 and spool.backlog()[0] == 2
    finally:
        spool.close()
    with TraceStore(tmp_path / "exact.db", create=False) as store:
        for text, event in zip(texts, recorded.events, strict=True):
            assert store.raw_event(event["event_id"]) == text.decode()
        (summary,) = store.sessions()
        assert summary.session_name == "exact" and summary.event_count == 2
        assert summary.total_tokens == 12 and summary.start_time == min(e["start_time"] for e in recorded.events)


def test_a_backend_that_is_down_is_probed_once_per_probe_interval(tmp_path: Path) -> None:
    """The spool's pacing, on explicit times: the worker passes its clock's reading to every decision."""
    target = SpoolTarget(tracer.InMemoryExporter(), SQLiteSpool(tmp_path / "spool.db", 1 << 20), spill_cost=0.0)
    assert target.may_try(500.0) and target.due_at() is None  # up, and nothing spooled yet
    target.failed(500.0)  # a transient failure: down until the next probe
    assert not target.may_try(500.0 + PROBE_INTERVAL - 0.001)
    assert target.may_try(500.0 + PROBE_INTERVAL)
    target.pending = True
    assert target.due_at() == 500.0 + PROBE_INTERVAL  # the worker comes back for the backlog then
    assert not target.may_replay(500.0 + PROBE_INTERVAL - 0.001)
    target.failed(501.0)  # the probe failed too: the next one a full interval later
    assert not target.may_try(501.5) and target.may_try(501.0 + PROBE_INTERVAL)
    target.answered()  # the backend answered: new batches go at once, the backlog is replayed
    assert target.may_try(501.1) and target.may_replay(501.1) and target.due_at() == 0.0
    target.lease_busy(502.0)  # another process holds the replay lease: look again an interval later
    assert target.may_try(502.5) and not target.may_replay(502.5)
    assert target.may_replay(502.0 + PROBE_INTERVAL) and target.due_at() == 502.0 + PROBE_INTERVAL
    assert target.attempts == 3
    target.failed(600.0, retry_after=5.0)  # a 429/503 that asked for 5 s: no probe before then
    assert not target.may_try(604.999) and target.may_try(605.0)
    target.failed(700.0, retry_after=0.2)  # asking for less than the interval changes nothing
    assert not target.may_try(700.0 + PROBE_INTERVAL - 0.001) and target.may_try(700.0 + PROBE_INTERVAL)


def test_a_backend_that_asks_to_wait_is_not_probed_before_then(collector: Collector, tmp_path: Path) -> None:
    """A 503 with ``Retry-After: 3`` (longer than the export deadline, so the exporter gives up at
    once): the events are spooled, and the spool leaves the backend alone for the 3 s it asked for
    (it probes every second otherwise), then delivers everything."""
    collector.fail(503, times=1000, retry_after="3", path="/events/batch")
    t = tracer.Tracer(
        api_key="k",
        server_url=collector.url,
        project="spool",
        instrument=False,
        export_timeout=0.5,
        spool=str(tmp_path / "spool.db"),
        flush_interval=0.05,
        first_flush_interval=0.05,
    )
    try:
        started = time.monotonic()
        for i in range(20):  # two seconds of new events, each offered to the worker
            with t.span("waiting", inputs={"i": i}):
                pass
            time.sleep(0.1)
        assert time.monotonic() - started < 2.9  # (still within the 3 s asked for)
        assert len(collector.requests_to("POST", "/events/batch")) == 1  # the first, and no probe since
        assert t.stats()["spooled"] == 20
        collector.release()  # the backend is fine again
        assert t.flush(10.0) is True
        assert sorted(collector.event_ids()) == sorted(set(collector.event_ids())) and len(collector.event_ids()) == 20
    finally:
        t.shutdown(1.0)


def test_without_sqlites_json_functions_the_spool_writes_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite reads the columns out of the events' JSON (json_each, json_extract); an SQLite built
    # without its JSON functions (before 3.38 they were optional) gets the same rows made in
    # Python. That SQLite cannot be had here: the check for it is made to answer no.
    recorded = tracer.InMemoryExporter()
    t = tracer.Tracer(exporter=recorded, project="spool", session_name="no-json", batch=False, instrument=False)
    with t.span("chat", "chain", inputs={"q": "why?"}):
        with t.span("llm", "model", config={"model": "gpt-x"}, metadata={"prompt_tokens": 7}) as llm:
            llm.update(metadata={"completion_tokens": 3}, outputs={"text": "because"})
        with pytest.raises(ValueError), t.span("tool"):
            raise ValueError("no tool")
    t.shutdown(0.5)
    events = list(recorded.events)
    sid = events[0]["session_id"]
    batch = Batch(
        [orjson.dumps(event) for event in events],
        [sid] * len(events),
        {sid: {"session_id": sid, "session_name": "no-json", "source": "test"}},
    )
    rows = {}
    for name, has_json in (("json", True), ("python", False)):
        monkeypatch.setattr(spool_module, "has_json_functions", lambda store, answer=has_json: answer)
        spool = SQLiteSpool(tmp_path / f"{name}.db", max_bytes=2**30)
        try:
            assert spool.write(batch).written == len(events)
        finally:
            spool.close()
        with TraceStore(tmp_path / f"{name}.db", read_only=True) as store:
            rows[name] = store.snapshot(
                lambda db: (
                    db.execute(
                        "SELECT event_id, session_id, parent_id, event_type, event_name, start_time, end_time,"
                        " duration, error, model, prompt_tokens, completion_tokens, total_tokens, raw"
                        " FROM events ORDER BY event_id"
                    ).fetchall(),
                    db.execute("SELECT session_id, start_time, end_time FROM sessions").fetchall(),
                )
            )
    assert rows["python"] == rows["json"]
    events_rows, _ = rows["python"]
    llm_row = next(row for row in events_rows if row[4] == "llm")
    assert llm_row[9:13] == ("gpt-x", 7, 3, 10)
    assert next(row for row in events_rows if row[4] == "tool")[8] == "ValueError: no tool"
