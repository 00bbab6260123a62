"""Time the viewer's API on 200,000-event stores against issue 15's 300 ms target (not a test).

    .venv/bin/python bench/viewer_api.py                       # builds /tmp/viewer-*.db once, reuses them
    .venv/bin/python bench/viewer_api.py --repeats 7 --json viewer_api.json

Two stores from bench/viewer_store.py: 2,000 sessions of 100 events ("many") and one session of
200,000 events ("one"). The app is the real one (``tracer ui``'s Starlette app over a read-only
store), called in-process through httpx's ASGI transport: the time of each request is the app's
(routing, SQL, JSON), without a socket. Each request runs ``--repeats`` times; the table shows the
median and the worst. The FTS5 index lives in a temporary cache directory; the viewer starts building
it in the background when it is created, as ``tracer ui`` does: a search made at once is timed
(answered by scan while the index is built), then the time until the index is ready
is printed, and the timed searches run on the ready index.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx
import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from viewer_store import build

from tracer.server._ui import create_viewer_app
from tracer.server._viewer import Viewer
from tracer.server._viewer_auth import ViewerAuth
from tracer.store import TraceStore

TARGET_MS = 300.0


def _store(path: str, sessions: int, events: int) -> str:
    if not os.path.exists(path):
        began = time.perf_counter()
        build(path, sessions, events)
        print(f"built {path}: {sessions * events:,} events in {time.perf_counter() - began:.1f} s", flush=True)
    return path


async def _time(client: httpx.AsyncClient, path: str, repeats: int) -> tuple[float, float, Any]:
    times = []
    body: Any = None
    for _ in range(repeats):
        began = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
        body = response.json()
    return statistics.median(times), max(times), body


async def _run(store_path: str, label: str, repeats: int, cases: list[tuple[str, str]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = cache
        store = TraceStore(store_path, read_only=True)
        began = time.perf_counter()
        viewer = Viewer(store, ViewerAuth(None))  # starts building the index in the background
        app = create_viewer_app(viewer)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            # A common word (the scan stops at the first 50 results), then one that matches
            # nothing (the scan reads every event): the best and the worst case of the scan.
            for word in ("refund", "zyzzyva"):
                asked = time.perf_counter()
                _, _, answer = await _time(client, f"/api/search?q={word}", 1)
                answered = time.perf_counter()
                print(
                    f"{label}: search {word!r} at start: answered in {(answered - asked) * 1000:.0f} ms "
                    f"({answered - began:.2f} s after start) by {answer['engine']}, "
                    f"indexing={answer['indexing']}, {len(answer['results'])} results",
                    flush=True,
                )
            while viewer.search_index.building:
                await asyncio.sleep(0.05)
            ready = time.perf_counter()
            print(f"{label}: FTS5 index ready {ready - began:.1f} s after start (built in the background)", flush=True)
            _, _, answer = await _time(client, "/api/search?q=refund", 1)
            assert answer["engine"] == "fts5" and not answer["indexing"], answer["engine"]
            _, _, first = await _time(client, "/api/sessions?limit=1", 1)
            session = first["sessions"][0]["session_id"]
            for name, path in cases:
                median, worst, body = await _time(client, path.replace("{session}", session), repeats)
                size = body.get("total") if isinstance(body, dict) else None
                rows.append({"store": label, "request": name, "median_ms": median, "max_ms": worst, "total": size})
        viewer.close()
        store.close()
        if previous is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = previous
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--many", default="/tmp/viewer-many.db", help="2,000 x 100 events (built if missing)")
    parser.add_argument("--one", default="/tmp/viewer-one.db", help="1 x 200,000 events (built if missing)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    many = _store(args.many, 2000, 100)
    one = _store(args.one, 1, 200_000)
    list_cases = [
        ("sessions: first page", "/api/sessions"),
        ("sessions: q=support-19", "/api/sessions?q=support-19"),
        ("sessions: type=model", "/api/sessions?type=model"),
        ("sessions: model=gpt-4o", "/api/sessions?model=gpt-4o"),
        ("sessions: errors=1", "/api/sessions?errors=1"),
        ("sessions: since/until", "/api/sessions?since=1&until=99999999999999"),
        ("sessions: sort=events", "/api/sessions?sort=events"),
        ("sessions: sort=errors asc", "/api/sessions?sort=errors&order=asc"),
        ("sessions: sort=tokens", "/api/sessions?sort=tokens"),
        ("sessions: sort=duration", "/api/sessions?sort=duration"),
        ("sessions: sort=name", "/api/sessions?sort=name"),
        ("sessions: page 20", "/api/sessions?offset=950"),
        ("session: summary", "/api/sessions/{session}"),
        ("session: events, first page", "/api/sessions/{session}/events"),
        ("search: refund", "/api/search?q=refund"),
        ("search: warranty record", "/api/search?q=warranty%20record"),
        ("search: no match", "/api/search?q=zyzzyva"),
    ]
    one_cases = [
        *list_cases[:2],
        list_cases[4],
        list_cases[6],
        ("session: summary", "/api/sessions/{session}"),
        ("session: events, first page", "/api/sessions/{session}/events"),
        ("session: events, page at 100,000", "/api/sessions/{session}/events?offset=100000"),
        ("session: events, last page", "/api/sessions/{session}/events?offset=199000"),
        ("search: refund", "/api/search?q=refund"),
    ]
    rows = asyncio.run(_run(many, "many", args.repeats, list_cases))
    rows += asyncio.run(_run(one, "one", args.repeats, one_cases))
    print()
    print(f"{'store':<5} {'request':<34} {'median ms':>10} {'max ms':>8} {'total':>8}  target {TARGET_MS:.0f} ms")
    for row in rows:
        mark = "" if row["median_ms"] <= TARGET_MS else "  over"
        total = "" if row["total"] is None else f"{row['total']:,}"
        print(
            f"{row['store']:<5} {row['request']:<34} {row['median_ms']:>10.1f} {row['max_ms']:>8.1f} {total:>8}{mark}"
        )
    if args.json:
        with open(args.json, "wb") as file:
            file.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
