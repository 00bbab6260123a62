"""``HoneyHiveExporter``: sends events to a HoneyHive-compatible events API.

Per export call (one batch), in order:

1. one ``POST /events/batch`` per session, body ``{"events": [...], "is_single_session": true,
   "session_properties": {...}}``, assembled from the already-encoded event bytes (never re-encoded);
2. one ``PUT /events`` per late update (``event_id`` plus the changed buckets; never ``inputs``,
   ``outputs`` always an object).

Outcomes: a ``413`` splits the events in half and sends each half (a single event still too large is
dropped as ``too_large``); a ``500`` carrying ``event_ids`` and ``errors`` is a partial success (only
the events missing from ``event_ids`` are lost, nothing is resent); any other 4xx is not retried, is
logged once per status and its events are counted as ``rejected``; retryable failures that outlast
the retries or the ``export_timeout`` deadline are counted as ``export_failed``.

The exporter's own requests are never traced: they run with ``tracer._pipeline.suppressed`` set.
"""

from __future__ import annotations

import collections
import gzip as gzip_module
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import httpx
import orjson

from .._errors import ConfigError, logger
from .._http import RETRY_STATUSES, HttpClient, HttpResult, RetryPolicy
from .._schema import ENRICHABLE, UPDATE_FIELDS
from .._version import __version__
from ._base import Batch, Exporter, ExportResult

if TYPE_CHECKING:
    from .._pipeline import Stats

__all__ = ["HoneyHiveExporter"]

# Level 1: measured 1.0 µs per event against 2.4 µs at level 6, for a ratio of 19.8 against 22.4
# on event JSON (bench/throughput.py); compression runs on the one worker thread.
_GZIP_LEVEL: Final = 1
_MESSAGE_CHARS: Final = 300
_CIRCUIT_OPEN: Final = "not sent: circuit open after repeated connection failures"
_UPDATE_FIELDS: Final = UPDATE_FIELDS


class _Outcome:
    """Tally of one export call."""

    __slots__ = ("delivered", "lost", "updates_failed")

    def __init__(self) -> None:
        self.delivered = 0
        self.lost: collections.Counter[str] = collections.Counter()
        self.updates_failed = 0

    def result(self) -> ExportResult:
        failed = sum(self.lost.values())
        if not failed:
            return ExportResult(delivered=self.delivered, updates_failed=self.updates_failed)
        # ExportResult carries one reason: the one that cost the most events.
        reason = self.lost.most_common(1)[0][0]
        return ExportResult(delivered=self.delivered, failed=failed, reason=reason, updates_failed=self.updates_failed)


class HoneyHiveExporter(Exporter):
    """Ships batches to ``{server_url}/events/batch`` and ``PUT {server_url}/events``.

    - ``timeout``: seconds one HTTP attempt may take; ``export_timeout``: seconds one batch may take
      in total, retries included.
    - ``base_delay`` / ``max_delay`` / ``max_attempts``: exponential backoff with full jitter;
      ``max_retry_after`` caps a server's ``Retry-After``.
    - ``breaker_threshold`` / ``breaker_cooldown``: after that many consecutive connection failures,
      nothing is sent (and nothing serialized) for the cooldown, doubling per failed probe.
    - ``transport``: an ``httpx`` transport (proxies, custom TLS, tests).
    """

    name = "honeyhive"

    def __init__(
        self,
        api_key: str,
        server_url: str = "https://api.honeyhive.ai",
        *,
        gzip: bool = True,
        timeout: float = 10.0,
        export_timeout: float = 30.0,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        max_retry_after: float = 60.0,
        max_attempts: int = 8,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        project: str = "default",
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigError("HoneyHiveExporter needs an API key (argument api_key, or HH_API_KEY / TRACER_API_KEY)")
        if not isinstance(server_url, str) or not server_url.startswith(("http://", "https://")):
            raise ConfigError(f"HoneyHiveExporter server_url must be an http:// or https:// URL, got {server_url!r}")
        if not export_timeout > 0:
            raise ConfigError(f"HoneyHiveExporter export_timeout must be positive, got {export_timeout!r}")
        try:
            policy = RetryPolicy(
                base_delay=base_delay,
                max_delay=max_delay,
                max_retry_after=max_retry_after,
                max_attempts=max_attempts,
                breaker_threshold=breaker_threshold,
                breaker_cooldown=breaker_cooldown,
            )
        except ValueError as exc:
            raise ConfigError(f"HoneyHiveExporter: {exc}") from None
        self.server_url = server_url.strip().rstrip("/")
        self.gzip = gzip
        self.export_timeout = export_timeout
        self._batch_url = f"{self.server_url}/events/batch"
        self._events_url = f"{self.server_url}/events"
        self._session_start_url = f"{self.server_url}/session/start"
        self.project = project
        # Sessions the server already has (created by a batch or by /session/start). A session
        # update for any other session creates it instead: a PUT would find nothing to update.
        self._known_sessions: set[str] = set()
        headers = {
            "Authorization": f"Bearer {api_key.strip()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"tracer-python/{__version__}",
        }
        try:
            self._http = HttpClient(headers, timeout=timeout, policy=policy, transport=transport)
        except ValueError as exc:
            raise ConfigError(f"HoneyHiveExporter: {exc}") from None
        self._stats: Stats | None = None
        self._log_lock = threading.Lock()
        self._logged: set[str] = set()
        self._unreachable_logged = False

    def __repr__(self) -> str:  # never shows the key
        return f"HoneyHiveExporter(server_url={self.server_url!r}, gzip={self.gzip})"

    # -- pipeline hooks ---------------------------------------------------------------------------

    def bind_stats(self, stats: Stats) -> None:
        """Report retries, failed requests, the last error and lost updates into the tracer's ``Stats``."""
        self._stats = stats

    def export(self, batch: Batch) -> ExportResult:
        from .._pipeline import suppressed  # imported here: the pipeline module imports the exporters

        token = suppressed.set(True)
        try:
            return self._export(batch)
        finally:
            suppressed.reset(token)

    def interrupt(self) -> None:
        """Stop waiting between retries (the current export gives up at its next wait)."""
        self._http.interrupt()

    def shutdown(self) -> None:
        self._http.close()

    # -- sending ----------------------------------------------------------------------------------

    def _export(self, batch: Batch) -> ExportResult:
        deadline = time.monotonic() + self.export_timeout
        outcome = _Outcome()
        session_ids = batch.session_ids
        by_session: dict[str, list[bytes]] = {}
        if session_ids and session_ids.count(session_ids[0]) == len(session_ids):  # one session: no regrouping
            by_session[session_ids[0]] = batch.encoded
        else:
            for raw, session_id in zip(batch.encoded, session_ids, strict=True):
                by_session.setdefault(session_id, []).append(raw)
        for session_id, events in by_session.items():
            properties = batch.sessions.get(session_id) or {"session_id": session_id}
            delivered_before = outcome.delivered
            self._send_events(events, orjson.dumps(properties), deadline, outcome)
            if outcome.delivered > delivered_before:
                self._remember_session(session_id)
        for update in batch.updates:
            session_id = update["event_id"]
            if session_id in batch.sessions and session_id not in self._known_sessions:
                # An update of a session the server has not seen: create it with all its properties
                # (they already include this update) instead of a PUT that would find nothing.
                sent = self._start_session(batch.sessions[session_id], deadline)
            else:
                sent = self._send_update(update, deadline)
            if not sent:
                outcome.updates_failed += 1
        return outcome.result()

    def _remember_session(self, session_id: str) -> None:
        if len(self._known_sessions) >= 100_000:  # bounded: forgetting only costs a redundant /session/start
            self._known_sessions.clear()
        self._known_sessions.add(session_id)

    def _start_session(self, properties: dict[str, Any], deadline: float) -> bool:
        session = {"project": self.project, **properties}
        if not self._http.can_try_before(deadline):
            result = self._skipped()
            self._count_request(result)
        else:
            result = self._send("POST", self._session_start_url, orjson.dumps({"session": session}), deadline)
            if result.ok:
                self._recovered()
                self._remember_session(str(properties.get("session_id")))
                return True
        self._note_failure("POST /session/start", result, 0)
        stats = self._stats
        if stats is not None:
            stats.drop("rejected" if _is_rejection(result.status) else "export_failed")
        return False

    def _send_events(self, events: list[bytes], properties: bytes, deadline: float, outcome: _Outcome) -> None:
        count = len(events)
        if not self._http.can_try_before(deadline):  # backend known down: don't even build the body
            skipped = self._skipped()
            self._count_request(skipped)
            self._note_failure("POST /events/batch", skipped, count)
            outcome.lost["export_failed"] += count
            return
        body = b"".join(
            (b'{"events":[', b",".join(events), b'],"is_single_session":true,"session_properties":', properties, b"}")
        )
        result = self._send("POST", self._batch_url, body, deadline, final=_is_partial_success)
        status = result.status
        if result.ok or status == 500:
            created = _partial_ids(result)
            if created is None and result.ok:
                outcome.delivered += count
                self._recovered()
                return
            if created is not None:
                delivered = _count_created(events, created)
                outcome.delivered += delivered
                if delivered < count:
                    outcome.lost["rejected"] += count - delivered
                    message = _server_message(result)
                    self._log_once(
                        "partial",
                        "tracer: HoneyHive created %d of %d events; the others are dropped. Server errors: %s "
                        "(logged once)",
                        delivered,
                        count,
                        message,
                    )
                    self._set_last_error(
                        f"honeyhive: POST /events/batch created {delivered} of {count} events: {message}"
                    )
                return
        if status == 413:
            if count == 1:
                outcome.lost["too_large"] += 1
                self._log_once(
                    "413",
                    "tracer: HoneyHive refused an event as too large (HTTP 413) even when sent alone; it is "
                    "dropped. Lower max_event_bytes to trim events further (logged once).",
                )
                self._set_last_error("honeyhive: an event was too large for the server (HTTP 413)")
                return
            half = count // 2
            self._send_events(events[:half], properties, deadline, outcome)
            self._send_events(events[half:], properties, deadline, outcome)
            return
        reason = "rejected" if _is_rejection(status) else "export_failed"
        self._note_failure("POST /events/batch", result, count)
        outcome.lost[reason] += count

    def _send_update(self, update: dict[str, Any], deadline: float) -> bool:
        body = _update_body(update)
        if not self._http.can_try_before(deadline):
            result = self._skipped()
            self._count_request(result)
        else:
            result = self._send("PUT", self._events_url, orjson.dumps(body), deadline)
            if result.ok:
                self._recovered()
                return True
        self._note_failure("PUT /events", result, 0)
        stats = self._stats
        if stats is not None:
            stats.drop("rejected" if _is_rejection(result.status) else "export_failed")
        return False

    def _send(
        self,
        method: str,
        url: str,
        body: bytes,
        deadline: float,
        final: Callable[[int, bytes], bool] | None = None,
    ) -> HttpResult:
        compressed = self.gzip
        if compressed:
            content = gzip_module.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
            headers: dict[str, str] | None = {"Content-Encoding": "gzip"}
        else:
            content, headers = body, None
        result = self._http.request(method, url, content, deadline=deadline, headers=headers, final=final)
        self._count_request(result)
        if compressed and result.status == 415:
            # The server does not take compressed bodies: send uncompressed from now on.
            self.gzip = False
            self._log_once(
                "gzip",
                "tracer: %s answered 415 to a gzip-compressed body; sending uncompressed from now on "
                "(set gzip=False / TRACER_GZIP=0 to skip this)",
                self.server_url,
            )
            return self._send(method, url, body, deadline, final)
        return result

    # -- bookkeeping ------------------------------------------------------------------------------

    def _skipped(self) -> HttpResult:
        """The result of a request not even tried."""
        if self._http.breaker.is_open():
            return HttpResult(None, error=_CIRCUIT_OPEN)
        return HttpResult(None, error="not sent: export deadline used up (or the exporter was shut down)")

    def _count_request(self, result: HttpResult) -> None:
        stats = self._stats
        if stats is None:
            return
        with stats.lock:
            stats.retried_requests += result.retries
            if not result.ok:
                stats.failed_requests += 1

    def _set_last_error(self, text: str) -> None:
        stats = self._stats
        if stats is not None:
            stats.last_error = text

    def _recovered(self) -> None:
        self._unreachable_logged = False

    def _note_failure(self, what: str, result: HttpResult, events: int) -> None:
        """Log (once per status, or once per outage) and record the last error of a failed request."""
        status = result.status
        lost = f"{events} event(s)" if events else "an update"
        if status is None:
            tries = f" after {result.attempts} attempt(s)" if result.attempts else ""
            text = f"honeyhive: {what} to {self.server_url} failed{tries}: {result.error}"
            self._set_last_error(text)
            if not result.attempts and result.error != _CIRCUIT_OPEN:
                return  # not tried: the batch's deadline was used up by an earlier, already reported failure
            if not self._unreachable_logged:
                self._unreachable_logged = True
                logger.warning(
                    "tracer: cannot reach HoneyHive at %s (%s); %s dropped, more will be while it stays "
                    "unreachable (see tracer.stats(); logged once per outage)",
                    self.server_url,
                    result.error,
                    lost,
                )
            return
        message = _server_message(result)
        phrase = httpx.codes.get_reason_phrase(status)
        text = f"honeyhive: HTTP {status} {phrase} from {what}: {message}"
        self._set_last_error(text)
        if _is_rejection(status):
            hint = " Check the API key (api_key / HH_API_KEY)." if status in (401, 403) else ""
            self._log_once(
                f"status:{status}",
                "tracer: HoneyHive rejected %s with HTTP %d %s: %s.%s Rejected events are dropped "
                "(see tracer.stats(); logged once per status).",
                what,
                status,
                phrase,
                message,
                hint,
                error=status in (401, 403),
            )
        else:
            self._log_once(
                f"status:{status}",
                "tracer: HoneyHive kept failing %s with HTTP %d %s after %d attempt(s): %s; %s dropped "
                "(see tracer.stats(); logged once per status).",
                what,
                status,
                phrase,
                result.attempts,
                message,
                lost,
            )

    def _log_once(self, key: str, message: str, *args: object, error: bool = False) -> None:
        with self._log_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        if error:
            logger.error(message, *args)
        else:
            logger.warning(message, *args)


def _is_rejection(status: int | None) -> bool:
    """A 4xx the server will keep giving: the events are refused, not delayed."""
    return status is not None and 400 <= status < 500 and status not in RETRY_STATUSES


def _is_partial_success(status: int, body: bytes) -> bool:
    """A 500 whose JSON says which events were created (``event_ids``) and what failed (``errors``)."""
    return status == 500 and body.lstrip().startswith(b"{") and _partial_ids(HttpResult(status, body)) is not None


def _partial_ids(result: HttpResult) -> list[str] | None:
    """The created ids of a partial success: ``event_ids`` next to ``errors`` (non-empty on a 2xx)."""
    if b'"errors"' not in result.body:  # the usual success: skip decoding the echoed event ids
        return None
    data = result.json()
    if not isinstance(data, dict):
        return None
    ids, errors = data.get("event_ids"), data.get("errors")
    if not isinstance(ids, list) or not isinstance(errors, list) or (result.ok and not errors):
        return None
    return [item for item in ids if isinstance(item, str)]


def _count_created(events: list[bytes], created: list[str]) -> int:
    """How many of *events* the server reports as created (by id; by count if it used other ids)."""
    wanted = set(created)
    matched = 0
    for raw in events:
        try:
            event_id = orjson.loads(raw).get("event_id")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if event_id in wanted:
            matched += 1
    if matched == 0 and created:
        return min(len(created), len(events))
    return matched


def _server_message(result: HttpResult) -> str:
    """The server's explanation: ``message`` / ``error`` / ``errors`` from a JSON body, else its text."""
    data = result.json()
    text = ""
    if isinstance(data, dict):
        for key in ("message", "error", "detail", "errors"):
            value = data.get(key)
            if isinstance(value, str) and value:
                text = value
                break
            if isinstance(value, list) and value:
                text = "; ".join(str(item) for item in value[:3])
                if len(value) > 3:
                    text += f" (and {len(value) - 3} more)"
                break
    if not text:
        text = " ".join(result.body.decode("utf-8", "replace").split())
    if not text:
        text = result.error or "no details"
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def _update_body(update: dict[str, Any]) -> dict[str, Any]:
    """A valid ``PUT /events`` body: no ``inputs`` (moved into metadata), ``outputs`` an object."""
    body = {key: value for key, value in update.items() if key in _UPDATE_FIELDS}
    extra = {key: value for key, value in update.items() if key not in _UPDATE_FIELDS}
    if extra:
        metadata = body.get("metadata")
        metadata = dict(metadata) if isinstance(metadata, dict) else {}
        metadata.update(extra)
        body["metadata"] = metadata
    outputs = body.get("outputs")
    if outputs is not None and not isinstance(outputs, dict):
        body["outputs"] = {"value": outputs}
    for name in ENRICHABLE:
        if name == "outputs":
            continue  # wrapped above
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            body[name] = {"value": value}
    return body
