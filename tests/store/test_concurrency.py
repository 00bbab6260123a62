"""Several processes writing one store at once: nothing lost, nothing duplicated, no corruption."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tracer.store import TraceStore

from ..processes import clean_env

PROCESSES = 4
EVENTS = 500

# Each process traces EVENTS events through the real pipeline (small batches: many transactions
# contending for the write lock) and enriches one shared session from every process.
WRITER = """
import sys
import tracer
from tracer.store import SQLiteExporter

path, worker, count, shared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
t = tracer.Tracer(project="mp", session_name=f"worker-{worker}", exporter=SQLiteExporter(path, timeout=60),
                  max_batch_size=25, flush_interval=0.005, instrument=False)
for i in range(count):
    with t.span(f"w{worker}-{i}", "tool", inputs={"i": i}):
        pass
with t.session("shared", session_id=shared):
    with t.span(f"shared-{worker}", "chain"):
        pass
    t.enrich_session(metadata={f"worker{worker}": worker})
assert t.flush(60), t.stats()
stats = t.stats()
assert stats["dropped_total"] == 0, stats
t.shutdown()
"""

# Direct writes of overlapping event ids, one transaction each: idempotency under contention.
OVERLAP = """
import sys, orjson
from tracer.store import TraceStore

path, worker = sys.argv[1], int(sys.argv[2])
store = TraceStore(path, timeout=60)
sid = "00000000-0000-4000-8000-00000000000%d" % worker
for i in range(worker * 40, worker * 40 + 60):
    event = {"event_id": "e-%04d" % i, "session_id": sid, "parent_id": sid, "event_type": "tool",
             "event_name": "n%d" % i, "start_time": i, "end_time": i + 1, "duration": 1.0}
    store.write([(event, orjson.dumps(event).decode())])
store.close()
"""


def _run_all(script: str, args: list[list[str]]) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *a], env=clean_env(), stderr=subprocess.PIPE, text=True)
        for a in args
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err


def test_four_processes_times_500_events_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "traces.db"  # created by the racing processes themselves
    shared = "12345678-1234-4234-8234-123456789abc"
    _run_all(WRITER, [[str(path), str(w), str(EVENTS), shared] for w in range(PROCESSES)])
    with TraceStore(path) as store:
        assert store.integrity_check() == "ok"
        assert store.count_events() == PROCESSES * EVENTS + PROCESSES
        summaries = {s.session_name: s for s in store.sessions(limit=100)}
        for worker in range(PROCESSES):
            assert summaries[f"worker-{worker}"].event_count == EVENTS
        shared_session = summaries["shared"]
        assert shared_session.event_count == PROCESSES
        # Enrichments from every process were merged, none overwritten.
        assert shared_session.properties["metadata"] == {f"worker{w}": w for w in range(PROCESSES)}
        names = [e["event_name"] for s in summaries.values() for e in store.session_events(s.session_id)]
        assert len(names) == len(set(names)) == PROCESSES * EVENTS + PROCESSES


def test_overlapping_ids_from_racing_processes_are_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "overlap.db"
    _run_all(OVERLAP, [[str(path), str(w)] for w in range(PROCESSES)])
    with TraceStore(path) as store:
        assert store.integrity_check() == "ok"
        # ids 0..(3*40+60): every id once, whichever process won it
        assert store.count_events() == (PROCESSES - 1) * 40 + 60
