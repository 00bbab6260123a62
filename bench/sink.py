"""A fast local HoneyHive-compatible sink for the benchmarks, run in its own process.

    python bench/sink.py                 # prints {"url": ..., "control": ...} on one line, then serves
    python bench/sink.py --down          # the ingest port refuses connections until POST /up
    python bench/sink.py --latency-ms 50 # every ingest answer waits 50 ms (a remote server's round trip)

Run in a separate process, so that checking what it receives never competes with the traced app for
the GIL. It does compete for CPU: this box's two vCPUs give about one core's worth of throughput
when both are busy (measured: two CPU-bound processes each run at half speed), so the sink is kept
lean and reports its own CPU time. Only 127.0.0.1. One asyncio loop with a minimal HTTP/1.1
keep-alive parser, two ports:

- ingest (``url``): ``POST /events/batch`` (gzip or not) is validated against the batch schema
  (every event: the legacy schema's required fields with their types, buckets as JSON objects; see
  ``_Event``), counted, and answered like HoneyHive, ``{"event_ids": [...], "success": true}``; a
  malformed body gets a 400 and is counted in ``bad_requests``; ``PUT /events`` answers
  ``{"success": true}``; ``POST /v1/traces`` takes OTLP/JSON (for the OpenTelemetry comparison) and counts its spans.
- control (``control``), always up: ``GET /count`` (JSON counters, and ``cpu_s``: the sink's CPU
  time since the last reset), ``POST /reset``, ``POST /down`` (close the ingest port and keep it
  bound without listening: connection refused), ``POST /up``.

It exits on its own when its standard input closes (the parent died) or after ``--max-seconds``.
``SinkProcess`` starts one and talks to it from a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any, Literal

import msgspec
import orjson

__all__ = ["SinkProcess"]

_MAX_HEADER = 64 * 1024


class _Event(msgspec.Struct):
    """The fields HoneyHive's legacy batch schema requires, plus the ids and times tracer sends.

    Buckets are checked to be JSON objects whose values are well-formed JSON (``msgspec.Raw``
    validates without building Python objects for them): the sink checks every event it counts,
    at a fraction of the CPU of a full ``orjson.loads``. On this 2-vCPU box the sink's CPU is taken
    from the same cores the traced process runs on, so a heavier sink would measure itself.
    """

    event_id: str
    project: str
    source: str
    event_name: str
    event_type: Literal["model", "tool", "chain", "session"]
    session_id: str
    config: dict[str, msgspec.Raw]
    inputs: dict[str, msgspec.Raw]
    duration: float
    start_time: int
    end_time: int


class _Batch(msgspec.Struct):
    events: list[_Event]
    is_single_session: bool = False
    session_properties: dict[str, msgspec.Raw] = {}


_decode_batch = msgspec.json.Decoder(_Batch).decode


class Sink:
    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency  # seconds added before each ingest answer (a remote server's round trip)
        self.counts: dict[str, int] = {}
        self.reset()
        self.ingest: asyncio.base_events.Server | None = None
        self.placeholder: socket.socket | None = None  # bound, not listening: connection refused
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    def reset(self) -> None:
        self.counts = {
            "events": 0,  # events received in POST /events/batch
            "updates": 0,  # PUT /events
            "otlp_spans": 0,  # spans received in POST /v1/traces
            "requests": 0,
            "wire_bytes": 0,  # request bodies as sent (compressed when gzip)
            "json_bytes": 0,  # request bodies after decompression
            "bad_requests": 0,
        }
        self.cpu_at_reset = time.process_time()

    # -- ingest -----------------------------------------------------------------------------

    def ingest_route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        counts = self.counts
        counts["requests"] += 1
        counts["wire_bytes"] += len(body)
        if headers.get("content-encoding", "").lower() == "gzip":
            body = zlib.decompress(body, wbits=31)
        counts["json_bytes"] += len(body)
        if method == "POST" and path == "/events/batch":
            try:
                batch = _decode_batch(body)
            except msgspec.DecodeError as exc:  # malformed JSON or an event off the schema
                counts["bad_requests"] += 1
                return 400, orjson.dumps({"message": str(exc)})
            counts["events"] += len(batch.events)
            return 200, orjson.dumps({"event_ids": [event.event_id for event in batch.events], "success": True})
        if (
            method == "POST"
            and path == "/v1/traces"
            and headers.get("content-type", "").startswith("application/x-protobuf")
        ):
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

            request = ExportTraceServiceRequest()
            request.ParseFromString(body)  # the official classes decode it, as a collector would
            counts["otlp_spans"] += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            return 200, b""
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            counts["bad_requests"] += 1
            return 400, b'{"message":"invalid JSON"}'
        if method == "PUT" and path == "/events":
            counts["updates"] += 1
            return 200, b'{"success":true}'
        if method == "POST" and path == "/v1/traces" and isinstance(data, dict):
            spans = 0
            for resource in data.get("resourceSpans", ()):
                for scope in resource.get("scopeSpans", ()):
                    spans += len(scope.get("spans", ()))
            counts["otlp_spans"] += spans
            return 200, b"{}"
        counts["bad_requests"] += 1
        return 404, b'{"message":"no such route"}'

    # -- control ----------------------------------------------------------------------------

    async def control_route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "GET" and path == "/count":
            cpu = time.process_time() - self.cpu_at_reset  # the sink's own CPU since the last reset
            return 200, orjson.dumps({**self.counts, "cpu_s": cpu, "down": self.ingest is None})
        if method == "POST" and path == "/reset":
            self.reset()
            return 200, b"{}"
        if method == "POST" and path == "/down":
            await self.go_down()
            return 200, b"{}"
        if method == "POST" and path == "/up":
            await self.go_up()
            return 200, b"{}"
        return 404, b'{"message":"no such route"}'

    async def go_up(self) -> None:
        if self.ingest is not None:
            return
        if self.placeholder is not None:
            self.placeholder.close()
            self.placeholder = None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self.ingest = await asyncio.start_server(self.serve_ingest, sock=sock, backlog=1024)

    async def go_down(self) -> None:
        if self.ingest is None and self.placeholder is not None:
            return
        if self.ingest is not None:
            self.ingest.close()
            self.ingest = None
        for writer in list(self.writers):  # drop the keep-alive connections too
            writer.transport.abort()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))  # keep the port, never listen(): connections are refused
        self.port = sock.getsockname()[1]
        self.placeholder = sock

    async def serve_ingest(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            await _serve(reader, writer, self._ingest_async)
        finally:
            self.writers.discard(writer)

    async def _ingest_async(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return self.ingest_route(method, path, headers, body)

    async def close(self) -> None:
        if self.ingest is not None:
            self.ingest.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.sleep(0.05)  # let the connection handlers see the abort and return

    async def serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(reader, writer, self.control_route)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Any) -> None:
    """HTTP/1.1 with keep-alive and Content-Length bodies: all that httpx and urllib send here."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
            status, payload = await route(method, target.split("?", 1)[0], headers, body)
            close = headers.get("connection", "").lower() == "close"
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                % (
                    status,
                    b"OK" if status < 400 else b"Error",
                    len(payload),
                    b"Connection: close\r\n" if close else b"",
                )
                + payload
            )
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _main(down: bool, max_seconds: float, latency: float) -> None:
    sink = Sink(latency)
    loop = asyncio.get_running_loop()
    control = await asyncio.start_server(sink.serve_control, "127.0.0.1", 0, limit=_MAX_HEADER)
    if down:
        await sink.go_down()
    else:
        await sink.go_up()
    control_port = control.sockets[0].getsockname()[1]
    print(
        json.dumps({"url": f"http://127.0.0.1:{sink.port}", "control": f"http://127.0.0.1:{control_port}"}),
        flush=True,
    )
    stdin_closed = asyncio.Event()

    def watch_stdin() -> None:  # the parent died or closed our stdin: stop
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stdin_closed.wait(), max_seconds)
    control.close()
    await sink.close()


class SinkProcess:
    """``with SinkProcess() as sink:`` runs ``bench/sink.py`` in a child process; ``sink.url`` is its base URL."""

    def __init__(self, down: bool = False, max_seconds: float = 1800.0, latency_ms: float = 0.0) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--max-seconds", str(max_seconds)]
        command += ["--latency-ms", str(latency_ms)]
        if down:
            command.append("--down")
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.kill()
            raise RuntimeError("the sink process did not start")
        info = json.loads(line)
        self.url: str = info["url"]
        self.control: str = info["control"]

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.control + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read() or b"{}")
            return result

    def count(self) -> dict[str, Any]:
        return self._call("GET", "/count")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def down(self) -> None:
        self._call("POST", "/down")

    def up(self) -> None:
        self._call("POST", "/up")

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--down", action="store_true", help="start with the ingest port refusing connections")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long in any case")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay each ingest answer (a remote round trip)")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.down, args.max_seconds, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
