"""``send_store``: re-send stored events to a HoneyHive-compatible API, each at most once per server.

Everything goes through the normal ``HoneyHiveExporter`` (batches per session, gzip, retries with
backoff, 413 splitting, partial successes). What the server acknowledged is recorded in the
store's ``deliveries`` table, per server URL, so running ``send`` again sends only what is new:

1. per session, the events not yet on the server (updates already merged into them), in chunks;
   the server's ``event_ids`` answer says exactly which were created, even on a partial failure;
2. sessions that have no events (created by ``/session/start``), with ``POST /session/start``;
3. ``PUT /events`` updates that arrived after their event was sent.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx
import orjson

from .._export import Batch, ExportResult
from ..exporters.honeyhive import HoneyHiveExporter
from ._deliveries import Delivery
from ._store import TraceStore

__all__ = ["SendReport", "send_store"]

_CHUNK_EVENTS: Final = 200
_CHUNK_BYTES: Final = 2 * 1024 * 1024
# session_properties of HoneyHive's legacy batch route; /session/start takes these plus project.
_SESSION_FIELDS: Final = frozenset(
    {"session_name", "source", "session_id", "config", "inputs", "outputs", "error", "user_properties"}
    | {"metrics", "feedback", "metadata"}
)
# Stored with a session, but not session properties (project is sent per event and by /session/start).
_DROPPED: Final = frozenset({"project", "event_id", "event_type", "event_name", "parent_id", "children_ids"})

Progress = Callable[[int, int], None]


@dataclasses.dataclass
class SendReport:
    """What a ``send_store`` run did. ``ok`` is False when anything could not be delivered."""

    server_url: str
    sessions: int = 0
    events_sent: int = 0
    events_failed: int = 0
    already_sent: int = 0
    sessions_started: int = 0
    sessions_failed: int = 0
    updates_sent: int = 0
    updates_failed: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.events_failed or self.sessions_failed or self.updates_failed)

    def error(self) -> str:
        """The first failure, as one line."""
        return self.errors[0] if self.errors else "nothing failed"


class _AckTransport(httpx.BaseTransport):
    """Passes requests through, and notes what the server acknowledged (event ids, 2xx routes)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self.acked: set[str] = set()
        self.succeeded: list[tuple[str, str]] = []

    def reset(self) -> None:
        self.acked = set()
        self.succeeded = []

    def succeeded_on(self, method: str, suffix: str) -> bool:
        return any(m == method and path.rstrip("/").endswith(suffix) for m, path in self.succeeded)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        status = response.status_code
        path = request.url.path
        if 200 <= status < 300:
            self.succeeded.append((request.method, path))
        if (
            request.method == "POST"
            and path.rstrip("/").endswith("/events/batch")
            and (200 <= status < 300 or status == 500)
        ):
            try:
                data = orjson.loads(response.read())
            except (orjson.JSONDecodeError, httpx.HTTPError):
                data = None
            ids = data.get("event_ids") if isinstance(data, dict) else None
            if isinstance(ids, list):
                self.acked.update(item for item in ids if isinstance(item, str))
        return response

    def close(self) -> None:
        self._inner.close()


def _default_transport(server_url: str) -> httpx.BaseTransport:
    """What ``httpx.Client`` would use, proxies from the environment included."""
    parts = urllib.parse.urlsplit(server_url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return httpx.HTTPTransport(proxy=proxy)
    return httpx.HTTPTransport()


def _with_project(text: str, project: str) -> bytes:
    """The event's JSON; one stored without ``project`` (from another client) gets the send's."""
    if '"project"' in text:
        return text.encode("utf-8")
    event = orjson.loads(text)
    if isinstance(event, dict) and not event.get("project"):
        return orjson.dumps({"project": project, **event})
    return text.encode("utf-8")


def _session_properties(props: dict[str, Any]) -> dict[str, Any]:
    """Properties in the legacy ``session_properties`` shape: unknown keys folded into metadata."""
    result: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in props.items():
        if name in _SESSION_FIELDS:
            result[name] = value
        elif name not in _DROPPED and value is not None:
            extra[name] = value
    if extra:
        metadata = result.get("metadata")
        result["metadata"] = {**extra, **(metadata if isinstance(metadata, dict) else {})}
    return result


def _chunks(events: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    chunks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    size = 0
    for item in events:
        if current and (len(current) >= _CHUNK_EVENTS or size + len(item[1]) > _CHUNK_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item[1])
    if current:
        chunks.append(current)
    return chunks


def send_store(
    store: TraceStore,
    api_key: str,
    server_url: str,
    *,
    session_ids: Sequence[str] | None = None,
    project: str = "default",
    timeout: float = 30.0,
    gzip: bool = True,
    progress: Progress | None = None,
    transport: httpx.BaseTransport | None = None,
) -> SendReport:
    """Send what *server_url* does not have yet of *session_ids* (default: every session).

    ``timeout`` bounds each request batch, retries included. Stops at the first batch of which
    nothing could be delivered (the server is down or refuses the key): the rest stays unsent and
    is counted in ``events_failed``. Raises ``ConfigError`` for a bad key or URL.
    """
    server = server_url.strip().rstrip("/")
    ack = _AckTransport(transport if transport is not None else _default_transport(server))
    exporter = HoneyHiveExporter(api_key, server, gzip=gzip, export_timeout=timeout, project=project, transport=ack)
    ids = list(session_ids) if session_ids is not None else store.session_ids()
    report = SendReport(server_url=server, sessions=len(ids))
    deliveries = [store.pending_delivery(server, sid) for sid in ids]
    for delivery in deliveries:
        delivery.properties = _session_properties(delivery.properties)
    pending = sum(len(delivery.events) for delivery in deliveries)
    report.already_sent = store.count_events(ids) - pending
    total = pending + sum(1 for d in deliveries if not d.events and not d.session_sent)
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    def failed(what: str, result: ExportResult) -> None:
        report.errors.append(result.last_error or what)

    def mark_session(delivery: Delivery) -> None:
        store.mark_delivered(server, "session", [delivery.session_id])
        store.mark_delivered(server, "update", delivery.folded.get(delivery.session_id, []))
        delivery.session_sent = True

    if progress is not None:
        progress(0, total)
    stopped = False
    try:
        for delivery in deliveries:
            sid = delivery.session_id
            if stopped:
                report.events_failed += len(delivery.events)
                continue
            for chunk in _chunks(delivery.events):
                if stopped:
                    report.events_failed += len(chunk)
                    continue
                ack.reset()
                batch = Batch(
                    [_with_project(text, project) for _, text in chunk],
                    [sid] * len(chunk),
                    {sid: delivery.properties},
                    [],
                )
                result = exporter.export(batch)
                chunk_ids = [event_id for event_id, _ in chunk]
                delivered = chunk_ids if result.ok else [event_id for event_id in chunk_ids if event_id in ack.acked]
                if delivered:
                    store.mark_delivered(server, "event", delivered)
                    store.mark_delivered(server, "update", [s for e in delivered for s in delivery.folded.get(e, [])])
                    if not delivery.session_sent:
                        mark_session(delivery)
                report.events_sent += len(delivered)
                if len(delivered) < len(chunk):
                    report.events_failed += len(chunk) - len(delivered)
                    failed(f"{len(chunk) - len(delivered)} event(s) of session {sid} were not accepted", result)
                    stopped = not delivered
                step(len(chunk))
            if not delivery.events and not delivery.session_sent and not stopped:
                ack.reset()
                result = exporter.export(Batch([], [], {sid: delivery.properties}, [{"event_id": sid}]))
                if ack.succeeded_on("POST", "/session/start"):
                    mark_session(delivery)
                    report.sessions_started += 1
                else:
                    report.sessions_failed += 1
                    failed(f"session {sid} could not be started", result)
                    stopped = True
                step(1)
            elif not delivery.events and not delivery.session_sent:
                report.sessions_failed += 1
        updates = [] if stopped else store.pending_updates(server, ids)
        if updates:
            total += len(updates)
        for seq, body in updates:
            if stopped:
                report.updates_failed += 1
                continue
            ack.reset()
            result = exporter.export(Batch([], [], {}, [body]))
            if ack.succeeded_on("PUT", "/events"):
                store.mark_delivered(server, "update", [seq])
                report.updates_sent += 1
            else:
                report.updates_failed += 1
                failed(f"the update of event {body.get('event_id')} was not accepted", result)
                stopped = True
            step(1)
    finally:
        exporter.shutdown()
    return report
