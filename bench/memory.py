"""Memory while the server is down: is RSS bounded by the queue's byte bound?

    python bench/memory.py                         # 1,000,000 events per config (about 1.5 minutes)
    python bench/memory.py --configs large-queue --settle 5 --json memory.json   # quicker, burst only

The server (``bench/sink.py --down``) keeps its port bound without listening, so every connection is
refused at once. Each config runs in a fresh child process that creates ``--events`` events with a
simple decorated function as fast as it can (inputs and output captured), then keeps running for
``--settle`` seconds (a ``flush()`` that cannot succeed) so that what the delivery worker does with
the backlog after the burst (take the queue, encode it, fail, drop it) is measured too. The default
settle time, 40 s, outlasts the first export's ``export_timeout`` (30 s by default), during which
the worker holds its first batch and the queue only fills; the backlog is taken after that.

Memory is read from /proc/self/status: VmRSS before the first event (after imports, the tracer and a
throw-away HTTP client are set up), VmRSS after the burst and after the settle time, and VmHWM (the
peak). Growth = VmHWM - VmRSS before. Target: growth <= max_queue_bytes + 20 MiB.

Configs:
- ``default``: ``tracer.Tracer(api_key=..., server_url=...)``: 1,000,000 events / 64 MiB, spool on
  (in a temporary directory): past half the byte bound the worker spills to the spool, so memory
  stays under the bound and nothing is dropped until the spool is full (1 GiB).
- ``no-spool``: the same with ``spool=False``: the byte bound limits, the oldest are dropped.
- ``llm``: ``--llm-calls`` OpenAI chat calls (the real ``openai`` client on the in-process mock
  transport of ``bench/llm_overhead.py``), each with a fresh 8,000-character message history, with
  ``spool=False``: their events wait unshaped in the queue, charged their messages' size, and the
  byte bound must hold for them too.
- ``llm-spool``: the same calls with the spool on.
- ``charge``: not a memory-with-the-backend-down run: an exporter that never returns holds the
  worker, 300,000 events of each of four shapes are queued (a function with a string, with a dict,
  ``bench/overhead.py``'s 3-level chain, a span with metadata), and the bytes the queue charges per
  event are set against the RSS growth per event (is ``_ITEM_OVERHEAD`` honest?).

Dropped counts come from ``tracer.stats()`` after the settle time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sink import SinkProcess

MIB = 2**20
SLACK = 20 * MIB
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-spool": {"spool": False},
    "llm": {"spool": False},
    "llm-spool": {},
    "charge": {},
}
DEFAULT_CONFIGS = ("default", "no-spool", "llm", "llm-spool")


def read_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    values: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def run_charge(events: int) -> dict[str, Any]:
    """Bytes charged per queued event against the RSS it really takes (the worker held back)."""
    import gc
    import threading

    import tracer

    gate = threading.Event()

    class Hold(tracer.Exporter):
        def export(self, batch: Any) -> bool:
            gate.wait()
            return True

    t = tracer.Tracer(
        exporter=Hold(), project="bench", max_queue_size=10**8, max_queue_bytes=2**40, max_batch_size=1,
        first_flush_interval=0.001,
    )  # fmt: skip

    @t.trace
    def work(i: int, text: str) -> str:
        return text

    from overhead import CTX, Q, _chain

    outer, _ = _chain(t.trace)  # bench/overhead.py's 3-level chain: parents, children, 3 events a call

    def noted(i: int) -> None:
        with t.span("step", metadata={"attempt": i, "model": "gpt-x"}, inputs={"i": i}):
            pass

    work(0, "x")
    time.sleep(0.3)  # the worker now waits in Hold.export with the first event
    rows = []
    for shape, call, calls in (
        ("work(i, 'the quick brown fox')", lambda i: work(i, "the quick brown fox"), events),
        (
            "work(i, {'q': ..., 'docs': [2 strings]})",
            lambda i: work(i, {"q": "capital of france?", "docs": ["a", "b"]}),  # type: ignore[arg-type]
            events,
        ),
        ("bench/overhead.py's chain (3 events a call)", lambda i: outer(Q, CTX), events // 3),
        ("span with metadata (a rare bucket)", noted, events),
    ):
        gc.collect()
        rss0, (size0, bytes0) = read_status()["VmRSS"], (t.stats()["queue_size"], t.stats()["queue_bytes"])
        for i in range(calls):
            call(i)
        gc.collect()
        rss1, stats = read_status()["VmRSS"], t.stats()
        count = stats["queue_size"] - size0
        rows.append({"shape": shape, "events": count, "charged": (stats["queue_bytes"] - bytes0) / count,
                     "rss": (rss1 - rss0) / count})  # fmt: skip
    return {"config": "charge", "rows": rows}


def _llm_workload(t: Any) -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import httpx2
    import openai
    from llm_overhead import transport

    import tracer.integrations

    tracer.integrations.instrument("openai")
    client = openai.OpenAI(api_key="x", http_client=httpx2.Client(transport=transport({})))  # type: ignore[arg-type]

    def call(i: int) -> None:
        history = [
            {"role": "system", "content": f"You are terse. {i}"},
            {"role": "user", "content": ("context " * 1000) + str(i)},  # a fresh 8,000-character prompt
        ]
        client.chat.completions.create(model="gpt-x", messages=history)

    return call


def run_child(config_name: str, url: str, events: int, settle: float, llm_calls: int) -> dict[str, Any]:
    import tempfile

    import httpx

    import tracer

    if config_name == "charge":
        return run_charge(300_000)
    options = dict(CONFIGS[config_name])
    options.setdefault("spool", tempfile.mkdtemp(prefix="tracer-bench-memory-") + "/spool.db")
    if config_name.startswith("llm"):
        t = tracer.init(api_key="k", server_url=url, project="bench", session_name="bench-memory", **options)
        work = _llm_workload(t)
        events = llm_calls
    else:
        t = tracer.Tracer(api_key="k", server_url=url, project="bench", session_name="bench-memory", **options)

        @t.trace
        def traced(i: int, text: str = "the quick brown fox") -> str:
            return text

        work = traced
    work(-1)
    t.flush(0.1)
    httpx.Client().close()  # one-time imports and SSL set-up are not what this measures
    before = read_status()
    samples: list[int] = []
    start = time.perf_counter()
    for i in range(events):
        work(i)
        if i % 50_000 == 0:
            samples.append(read_status()["VmRSS"])
    created_s = time.perf_counter() - start
    after_burst = read_status()
    burst_stats = t.stats()
    t.flush(settle)  # cannot succeed: the worker keeps failing and dropping meanwhile
    after_settle = read_status()
    stats = t.stats()
    return {
        "config": config_name,
        "events": events,
        "created_s": created_s,
        "settle_s": settle,
        "max_queue_size": t.config.max_queue_size,
        "max_queue_bytes": t.config.max_queue_bytes,
        "rss_before": before["VmRSS"],
        "rss_after_burst": after_burst["VmRSS"],
        "hwm_after_burst": after_burst["VmHWM"],
        "rss_after_settle": after_settle["VmRSS"],
        "hwm_after_settle": after_settle["VmHWM"],
        "rss_samples": samples,
        "queue_after_burst": [burst_stats["queue_size"], burst_stats["queue_bytes"]],
        "created": stats["created"],
        "sent": stats["sent"],
        "dropped": {reason: count for reason, count in stats["dropped"].items() if count},
        "dropped_total": stats["dropped_total"],
        "spooled": stats["spooled"],
        "spool_backlog": stats["spool_backlog"],
        "spool_bytes": stats["spool_bytes"],
        "failed_requests": stats["failed_requests"],
        "last_error": stats["last_error"],
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--settle", type=float, default=40.0, help="seconds to keep running after the burst")
    parser.add_argument(
        "--configs", default=",".join(DEFAULT_CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}"
    )
    parser.add_argument("--llm-calls", type=int, default=20_000, help="LLM calls of the llm configs")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = run_child(args.child, args.url, args.events, args.settle, args.llm_calls)
        print(json.dumps(result), flush=True)
        os._exit(0)  # skip the exit hook's drain: the server is down, there is nothing to wait for

    results: list[dict[str, Any]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    with SinkProcess(down=True) as sink:
        for name in args.configs.split(","):
            command = [sys.executable, __file__, "--child", name, "--url", sink.url]
            command += ["--events", str(args.events), "--settle", str(args.settle), "--llm-calls", str(args.llm_calls)]
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=1200)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"config {name} failed (exit {done.returncode})")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    charges = [row for row in results if row["config"] == "charge"]
    results = [row for row in results if row["config"] != "charge"]
    for row in charges:
        for line in row["rows"]:
            print(
                f"charge: {line['shape']}: {line['events']:,} events queued, charged {line['charged']:.0f} B/event, "
                f"RSS {line['rss']:.0f} B/event"
            )
    print(f"python {sys.version.split()[0]}, server down (connection refused), {args.events:,} events per config")
    print(
        f"{'config':<12} {'max_queue':>9} {'q MiB':>5} {'create s':>8} {'rss0 MiB':>8} {'+burst':>7} {'+settle':>7} "
        f"{'peak +MiB':>9} {'limit MiB':>9} {'verdict':>7} {'dropped':>8} {'sent':>5}"
    )
    for row in results:
        base = row["rss_before"]
        limit = row["max_queue_bytes"] + SLACK
        peak = max(row["hwm_after_burst"], row["hwm_after_settle"]) - base
        row["peak_growth"] = peak
        row["limit"] = limit
        row["ok"] = peak <= limit
        print(
            f"{row['config']:<12} {row['max_queue_size']:>9} {row['max_queue_bytes'] / MIB:>5.0f} "
            f"{row['created_s']:>8.1f} {base / MIB:>8.1f} {(row['rss_after_burst'] - base) / MIB:>7.1f} "
            f"{(row['rss_after_settle'] - base) / MIB:>7.1f} {peak / MIB:>9.1f} {limit / MIB:>9.0f} "
            f"{'ok' if row['ok'] else 'OVER':>7} {row['dropped_total']:>8} {row['sent']:>5}"
        )
    for row in results:
        queued, queued_bytes = row["queue_after_burst"]
        print(
            f"{row['config']}: {row['events']:,} events; dropped by reason {row['dropped']}; queue after the burst "
            f"{queued} events / {queued_bytes / MIB:.1f} MiB; spooled {row['spooled']:,} (backlog "
            f"{row['spool_backlog']:,}, {row['spool_bytes'] / MIB:.1f} MiB); failed requests {row['failed_requests']}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
