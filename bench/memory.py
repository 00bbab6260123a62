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
- ``default``: ``tracer.Tracer(api_key=..., server_url=...)``: 2,048 events / 64 MiB; the event
  count bound is what limits, so the byte bound is hardly approached.
- ``large-queue``: ``max_queue_size=1_000_000, max_queue_bytes=64 MiB``: the byte bound limits.

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
    "large-queue": {"max_queue_size": 1_000_000, "max_queue_bytes": 64 * MIB},
}


def read_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    values: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def run_child(config_name: str, url: str, events: int, settle: float) -> dict[str, Any]:
    import httpx

    import tracer

    options = CONFIGS[config_name]
    t = tracer.Tracer(api_key="k", server_url=url, project="bench", session_name="bench-memory", **options)

    @t.trace
    def work(i: int, text: str) -> str:
        return text

    httpx.Client().close()  # one-time imports and SSL set-up are not what this measures
    before = read_status()
    samples: list[int] = []
    start = time.perf_counter()
    for i in range(events):
        work(i, "the quick brown fox")
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
        "failed_requests": stats["failed_requests"],
        "last_error": stats["last_error"],
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--settle", type=float, default=40.0, help="seconds to keep running after the burst")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = run_child(args.child, args.url, args.events, args.settle)
        print(json.dumps(result), flush=True)
        os._exit(0)  # skip the exit hook's drain: the server is down, there is nothing to wait for

    results: list[dict[str, Any]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    with SinkProcess(down=True) as sink:
        for name in args.configs.split(","):
            command = [sys.executable, __file__, "--child", name, "--url", sink.url]
            command += ["--events", str(args.events), "--settle", str(args.settle)]
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=1200)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"config {name} failed (exit {done.returncode})")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))

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
            f"{row['config']}: dropped by reason {row['dropped']}; queue after the burst {queued} events / "
            f"{queued_bytes / MIB:.1f} MiB; failed requests {row['failed_requests']}; last error: {row['last_error']}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
