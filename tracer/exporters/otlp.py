"""``OTLPExporter``: sends events as OpenTelemetry spans to any OTLP/HTTP traces endpoint.

It rides the same pipeline as the HoneyHive exporter (the bounded queue, the one worker, the spool):
the worker hands it batches of finished events, and per batch it sends one ``POST`` to the traces
endpoint (``…/v1/traces``): an ``ExportTraceServiceRequest`` in OTLP/protobuf (the ``otlp`` extra)
or OTLP/JSON, optionally gzipped. Each event becomes one span by ``tracer._otlp_mapping``
(one session = one trace, ``honeyhive_*`` attributes, GenAI semantic conventions for model events).

Outcomes of a request (``tracer._http.HttpClient`` makes the attempts):

- 2xx: delivered. A ``partialSuccess`` with ``rejectedSpans`` > 0 counts that many events
  ``rejected`` (logged once with the server's message) and is not sent again.
- 408/429/5xx after the retries (``Retry-After`` honoured), connection failures, the deadline, an
  open circuit: counted ``export_failed`` and listed in ``ExportResult.retry_events``, so the pipeline
  can keep them in its spool and offer them again.
- Any other status: refused as a whole, not retried, counted ``rejected``, logged once per status
  with the body.

The encoding runs here, on the worker thread, never on the app's. The exporter's own requests are
never traced (``tracer._context.suppressed``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gzip as gzip_module
import os
import random
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import httpx
import orjson

from .._clock import SYSTEM_CLOCK, Clock
from .._context import suppressed
from .._errors import ConfigError, logger
from .._export import Batch, Exporter, ExportResult
from .._http import HttpClient, HttpResult, RetryPolicy, checked_headers
from .._otlp_mapping import Span, event_to_span, gen_ai_attributes
from .._version import __version__
from ._otlp_codec import (
    ResourceSpans,
    decode_partial_success,
    encode_json,
    encode_protobuf,
    protobuf_available,
    resource_message,
    scope_field,
    span_message,
)
from ._otlp_fast import FastSpanWriter
from ._senders import Senders

__all__ = ["PROTOCOLS", "OTLPExporter", "otlp_exporter_from_env", "parse_headers", "parse_resource_attributes"]

PROTOCOLS: Final = ("http/protobuf", "http/json")
_MEDIA_TYPES: Final = {"http/protobuf": "application/x-protobuf", "http/json": "application/json"}
# Same level as the HoneyHive exporter (measured there: 1.0 µs per event against 2.4 µs at level 6).
_GZIP_LEVEL: Final = 1
_MESSAGE_CHARS: Final = 300
_SCOPE_NAME: Final = "tracer"
# OpenTelemetry's SDK default attribute count limit (OTEL_ATTRIBUTE_COUNT_LIMIT) is 128; a span of
# this library has at most ~40 (ids, buckets, GenAI), plus the metadata keys that carry dots.
_DEFAULT_MAX_ATTRIBUTES: Final = 128
# The events' own default string limit (max_string_length): a value the events kept whole stays whole;
# a bucket's JSON longer than that keeps head and tail (backends cap values at 32-64 KiB).
_DEFAULT_MAX_ATTRIBUTE_LENGTH: Final = 32 * 1024
# Requests at once: the HoneyHive exporter's default and reasons (see honeyhive._DEFAULT_MAX_IN_FLIGHT
# and _senders.SenderPool).
_DEFAULT_MAX_IN_FLIGHT: Final = 16
# Several batches of one export call go out as one request, up to this many spans and bytes of
# their events' JSON (the pipeline's default bound for one batch; an OTLP/protobuf body is smaller
# than that JSON). A request costs this process about 1 ms of CPU, mostly per request rather than
# per byte: the thread CPU time of HttpClient.request in bench/throughput.py's tracer-otlp run was
# 1.8 µs per span in requests of 512 spans, 0.6 in requests of 2,048 (scratch timing, 2026-12-06);
# then tracer-otlp delivered 87,518-89,286 events/s with 4,096 against 82,645-84,794 with 2,048
# (three alternating pairs). A 413 sends a pack's batches again one per request.
_PACK_SPANS: Final = 4096
_PACK_BYTES: Final = 4 * 1024 * 1024


def _packs(batches: list[Batch]) -> list[list[Batch]]:
    """*batches* in order, several to a request while they stay within _PACK_SPANS and _PACK_BYTES."""
    packs: list[list[Batch]] = []
    spans = size = 0
    for batch in batches:
        count, data = len(batch), batch.json_bytes()
        if packs and spans + count <= _PACK_SPANS and size + data <= _PACK_BYTES:
            packs[-1].append(batch)
            spans += count
            size += data
        else:
            packs.append([batch])
            spans, size = count, data
    return packs


def _shares(sizes: list[int], result: ExportResult) -> list[ExportResult]:
    """*result*, of one request that carried batches of *sizes*, as each batch's: the spans it
    failed are counted from the first batch on (partial success names no spans), the request's
    retries and failure go to the first batch (``stats()`` counts requests)."""
    if len(sizes) == 1:
        return [result]
    shares = []
    failed = result.failed
    for index, size in enumerate(sizes):
        mine = min(failed, size)
        failed -= mine
        shares.append(
            dataclasses.replace(
                result,
                delivered=size - mine,
                failed=mine,
                reason=result.reason if mine else None,
                retry_events=tuple(range(size)) if result.retry_events else (),
                retried_requests=result.retried_requests if index == 0 else 0,
                failed_requests=result.failed_requests if index == 0 else 0,
                last_error=result.last_error if mine else None,
            )
        )
    return shares


def parse_headers(text: str, where: str) -> dict[str, str]:
    """``k=v,k2=v2`` (W3C baggage style, URL-encoded) as a dict; a malformed pair is a ``ConfigError``."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = urllib.parse.unquote(key.strip())
        if not sep or not key:
            raise ConfigError(f"{where}: expected comma-separated key=value pairs, got {item.strip()!r}")
        headers[key] = urllib.parse.unquote(value.strip())
    try:
        return checked_headers(headers)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_resource_attributes(text: str) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,…``, URL-encoded); malformed pairs are skipped, as the SDK does."""
    attributes: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = urllib.parse.unquote(key.strip())
        if sep and key:
            attributes[key] = urllib.parse.unquote(value.strip())
    return attributes


class OTLPExporter(Exporter):
    """Ships events as spans to an OTLP/HTTP traces endpoint (``endpoint`` is the full URL, e.g.
    ``http://localhost:4318/v1/traces``).

    - ``headers``: sent with every request (API keys of the backend); ``protocol``:
      ``"http/protobuf"`` (needs ``pip install 'tracer-ai[otlp]'``) or ``"http/json"``;
      ``compression``: ``"gzip"`` or None; ``timeout``: seconds one attempt may take.
    - ``service_name`` / ``resource_attributes``: the resource (default: ``OTEL_SERVICE_NAME`` and
      ``OTEL_RESOURCE_ATTRIBUTES``, else the project as ``service.name``).
    - ``capture_messages``: also send model events' prompts and completions as
      ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (they are in ``honeyhive_inputs`` /
      ``honeyhive_outputs`` anyway when content capture is on).
    - ``max_attribute_length`` / ``max_attributes``: limits of one span's attributes.
    - retries, circuit breaker, ``transport``, ``clock``, ``jitter``: as ``HoneyHiveExporter``.
    """

    name = "otlp"

    def __init__(
        self,
        endpoint: str = "http://localhost:4318/v1/traces",
        *,
        headers: Mapping[str, str] | None = None,
        protocol: str = "http/protobuf",
        timeout: float = 10.0,
        compression: str | None = "gzip",
        export_timeout: float = 30.0,
        service_name: str | None = None,
        resource_attributes: Mapping[str, Any] | None = None,
        project: str = "default",
        capture_messages: bool = True,
        max_attribute_length: int = _DEFAULT_MAX_ATTRIBUTE_LENGTH,
        max_attributes: int = _DEFAULT_MAX_ATTRIBUTES,
        max_in_flight: int = _DEFAULT_MAX_IN_FLIGHT,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        max_retry_after: float = 60.0,
        max_attempts: int = 8,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        jitter: random.Random | None = None,
    ) -> None:
        if not isinstance(endpoint, str) or not endpoint.strip().startswith(("http://", "https://")):
            raise ConfigError(f"OTLPExporter endpoint must be an http:// or https:// URL, got {endpoint!r}")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"OTLPExporter protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if protocol == "http/protobuf" and not protobuf_available():
            raise ConfigError(
                "OTLPExporter protocol 'http/protobuf' needs the 'otlp' extra: pip install 'tracer-ai[otlp]' "
                "(or use protocol='http/json')"
            )
        if compression not in ("gzip", None):
            raise ConfigError(f"OTLPExporter compression must be 'gzip' or None, got {compression!r}")
        if not export_timeout > 0:
            raise ConfigError(f"OTLPExporter export_timeout must be positive, got {export_timeout!r}")
        for setting, value, minimum in (
            ("max_attribute_length", max_attribute_length, 64),
            ("max_attributes", max_attributes, 16),
            ("max_in_flight", max_in_flight, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"OTLPExporter {setting} must be a whole number >= {minimum}, got {value!r}")
        policy = RetryPolicy.of_exporter(
            "OTLPExporter",
            base_delay=base_delay,
            max_delay=max_delay,
            max_retry_after=max_retry_after,
            max_attempts=max_attempts,
            breaker_threshold=breaker_threshold,
            breaker_cooldown=breaker_cooldown,
        )
        self.endpoint = endpoint.strip()
        self.protocol = protocol
        self.compression = compression
        self.export_timeout = export_timeout
        self.capture_messages = capture_messages
        self.max_attribute_length = max_attribute_length
        self.max_attributes = max_attributes
        self.max_in_flight = max_in_flight
        environ = os.environ
        resource: dict[str, Any] = parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        resource.update(resource_attributes or {})
        service = service_name or environ.get("OTEL_SERVICE_NAME") or resource.get("service.name")
        # Unnamed: each event's project names its service (the project given here for events without one).
        self._project_is_service = not service
        resource["service.name"] = service or project
        resource["telemetry.sdk.name"] = "tracer"
        resource["telemetry.sdk.language"] = "python"
        resource["telemetry.sdk.version"] = __version__
        self.resource = resource
        if headers is not None and not isinstance(headers, Mapping):
            kind = type(headers).__name__
            raise ConfigError(f"OTLPExporter headers must be a mapping of names to values, got {kind}")
        request_headers = {
            "Content-Type": _MEDIA_TYPES[protocol],
            "User-Agent": f"tracer-python/{__version__}",
            **dict(headers or {}),
        }
        if compression == "gzip":
            request_headers["Content-Encoding"] = "gzip"
        try:
            self._http = HttpClient(
                request_headers, timeout=timeout, policy=policy, transport=transport, clock=clock, jitter=jitter
            )
        except ValueError as exc:
            raise ConfigError(f"OTLPExporter: {exc}") from None
        self._log_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._logged: set[str] = set()
        self._senders = Senders("tracer-otlp-sender")
        # OTLP/protobuf from the events' JSON pieces (Batch.parts): see _otlp_fast.
        self._fast: FastSpanWriter | None = None
        if protocol == "http/protobuf":
            self.uses_event_parts = True
            self._fast = FastSpanWriter(
                lambda key: resource_message(self._resource(key), max_attribute_length),
                scope_field(_SCOPE_NAME, __version__),
                self._project_is_service,
                capture_messages,
                max_attribute_length,
                max_attributes,
            )

    def __repr__(self) -> str:  # never shows the headers (they carry API keys)
        return f"OTLPExporter(endpoint={self.endpoint!r}, protocol={self.protocol!r}, compression={self.compression!r})"

    # -- the Exporter interface -------------------------------------------------------------------

    def export(self, batch: Batch, timeout: float | None = None) -> ExportResult:
        return self.export_batches([batch], timeout)[0]  # type: ignore[return-value]

    def export_batches(self, batches: list[Batch], timeout: float | None = None) -> list[ExportResult | bool | None]:
        token = suppressed.set(True)
        try:
            seconds = self.export_timeout if timeout is None else min(timeout, self.export_timeout)
            deadline = self._http.clock.monotonic() + seconds
            packs = _packs(batches)
            sent = self._senders.run(
                [functools.partial(self._send, pack, deadline) for pack in packs], self.max_in_flight
            )
        finally:
            suppressed.reset(token)
        results: list[ExportResult | bool | None] = []
        for pack, pack_results in zip(packs, sent, strict=True):
            if pack_results is None:  # interrupted before it was sent (shutdown ran out of time): kept for a later try
                results += [self._transient(len(batch), HttpResult(None, error="interrupted")) for batch in pack]
            else:
                results += pack_results
        return results

    def interrupt(self) -> None:
        self._http.interrupt()
        self._senders.interrupt()

    def shutdown(self) -> None:
        self._http.close()
        self._senders.close()

    # -- building and sending ---------------------------------------------------------------------

    def spans(self, batch: Batch) -> list[ResourceSpans]:
        """The batch's events as spans, grouped by resource (one per source, ``deployment.environment.name``,
        and, when no service name is set, per project, ``service.name``)."""
        by_resource: dict[tuple[str, str], list[Span]] = collections.defaultdict(list)
        sessions = batch.sessions
        for event, session_id in zip(batch.events(), batch.session_ids, strict=True):
            key, span = self._span(event, sessions.get(session_id) or {"session_id": session_id})
            by_resource[key].append(span)
        return [
            ResourceSpans(self._resource(key), spans, _SCOPE_NAME, __version__) for key, spans in by_resource.items()
        ]

    def _span(self, event: Mapping[str, Any], session: Mapping[str, Any]) -> tuple[tuple[str, str], Span]:
        """One event's span and the key of its resource (source, project)."""
        span = event_to_span(event, session=session, json_buckets=True)
        if event.get("event_type") == "model":
            span.attributes.update(gen_ai_attributes(event, content=self.capture_messages))
        source = event.get("source") or session.get("source") or ""
        project = (event.get("project") or session.get("project") or "") if self._project_is_service else ""
        return (str(source), str(project)), span

    def _resource(self, key: tuple[str, str]) -> dict[str, Any]:
        source, project = key
        resource = dict(self.resource)
        if source:
            resource.setdefault("deployment.environment.name", source)
        if project:
            resource["service.name"] = project
        return resource

    def encode(self, batch: Batch) -> bytes:
        """The request body for *batch* (not compressed)."""
        if self._fast is not None and batch.parts is not None:
            sessions, session_ids = batch.sessions, batch.session_ids

            def reference(index: int) -> tuple[tuple[str, str], bytes]:
                session_id = session_ids[index]
                key, span = self._span(
                    orjson.loads(batch.event_json(index)), sessions.get(session_id) or {"session_id": session_id}
                )
                return key, span_message(span, self.max_attribute_length, self.max_attributes)

            return self._fast.encode(batch, reference)
        groups = self.spans(batch)
        encode = encode_protobuf if self.protocol == "http/protobuf" else encode_json
        return encode(groups, self.max_attribute_length, self.max_attributes)

    def _body(self, batches: list[Batch]) -> bytes:
        """One request body for *batches* (not compressed)."""
        if len(batches) == 1:
            return self.encode(batches[0])
        if self.protocol == "http/protobuf":
            # An ExportTraceServiceRequest is one repeated field: requests written one after the
            # other are one request with all their ResourceSpans.
            return b"".join([self.encode(batch) for batch in batches])
        groups = [group for batch in batches for group in self.spans(batch)]
        return encode_json(groups, self.max_attribute_length, self.max_attributes)

    def _send(self, batches: list[Batch], deadline: float) -> list[ExportResult]:
        """Send *batches* as one request: the result of each. A pack the endpoint finds too large
        (413) goes again one batch per request."""
        sizes = [len(batch) for batch in batches]
        size = sum(sizes)
        if size == 0:
            return [ExportResult(delivered=0) for _ in batches]
        if not self._http.can_try_before(deadline):
            return _shares(
                sizes, self._transient(size, HttpResult(None, error="not sent: circuit open or interrupted"))
            )
        # One body written at a time: writing is Python that holds the GIL, so the senders gain
        # nothing by interleaving it, and the first request then goes out (and the endpoint starts
        # on it) while the next is written, instead of all of them at the end.
        with self._encode_lock:
            body = self._body(batches)
        if self.compression == "gzip":
            body = gzip_module.compress(body, compresslevel=_GZIP_LEVEL)
        result = self._http.request("POST", self.endpoint, body, deadline=deadline)
        if result.status == 413 and len(batches) > 1:
            return [self._send([batch], deadline)[0] for batch in batches]
        return _shares(sizes, self._outcome(size, result))

    def _outcome(self, size: int, result: HttpResult) -> ExportResult:
        """What became of a request of *size* spans that got *result*."""
        retried = result.retries
        if result.ok:
            rejected, message = decode_partial_success(result.body, self.protocol == "http/protobuf")
            rejected = min(rejected, size)
            if rejected:
                self._log_once(
                    "partial",
                    f"OTLP endpoint rejected {rejected} of {size} spans (not sent again): {message[:_MESSAGE_CHARS]}",
                )
                return ExportResult(
                    delivered=size - rejected,
                    failed=rejected,
                    reason="rejected",
                    retried_requests=retried,
                    last_error=f"partial success: {rejected} spans rejected: {message[:_MESSAGE_CHARS]}",
                )
            return ExportResult(delivered=size, retried_requests=retried)
        if result.status is not None and result.status not in (408, 429) and result.status < 500:
            text = result.body[:_MESSAGE_CHARS].decode("utf-8", "replace")
            self._log_once(
                f"status:{result.status}",
                f"OTLP endpoint refused a batch with HTTP {result.status} (not retried): {text}",
            )
            return ExportResult(
                delivered=0,
                failed=size,
                reason="rejected",
                retried_requests=retried,
                failed_requests=1,
                last_error=f"HTTP {result.status}: {text}",
            )
        return self._transient(size, result)

    def _transient(self, size: int, result: HttpResult) -> ExportResult:
        error = result.error or (f"HTTP {result.status}" if result.status is not None else "not sent")
        self._log_once("transient", f"OTLP export to {self.endpoint} failed, events kept for a later try: {error}")
        return ExportResult(
            delivered=0,
            failed=size,
            reason="export_failed",
            retry_events=tuple(range(size)),
            retry_after=result.retry_after,  # the spool waits that long before offering them again
            retried_requests=result.retries,
            failed_requests=1,
            last_error=error,
        )

    def _log_once(self, key: str, message: str) -> None:
        with self._log_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        logger.warning(message)


def otlp_exporter_from_env(
    environ: Mapping[str, str], project: str, export_timeout: float, max_in_flight: int = _DEFAULT_MAX_IN_FLIGHT
) -> OTLPExporter | None:
    """The exporter the standard ``OTEL_EXPORTER_OTLP_*`` variables describe, or None if they name no endpoint."""
    traces_endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if traces_endpoint:
        endpoint, where = traces_endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    elif base:
        endpoint, where = base.rstrip("/") + "/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT"
    else:
        return None
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{where} must be an http:// or https:// URL, got {endpoint!r}")
    headers: dict[str, str] = {}
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):  # the specific one wins
        headers.update(parse_headers(environ.get(name, ""), name))
    protocol, protocol_from = "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL"
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        if environ.get(name, "").strip():
            protocol, protocol_from = environ[name].strip(), name
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"{protocol_from} must be one of {', '.join(PROTOCOLS)} (grpc is not supported), got {protocol!r}"
        )
    if protocol == "http/protobuf" and not protobuf_available():
        raise ConfigError(
            f"{protocol_from}=http/protobuf (the default) needs the 'otlp' extra: pip install 'tracer-ai[otlp]' "
            "(or set it to http/json)"
        )
    compression: str | None = None
    for name in ("OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"):
        value = environ.get(name, "").strip().lower()
        if value:
            if value not in ("gzip", "none"):
                raise ConfigError(f"{name} must be gzip or none, got {environ[name]!r}")
            compression = "gzip" if value == "gzip" else None
    timeout = 10.0
    for name in ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"):  # milliseconds
        value = environ.get(name, "").strip()
        if value:
            try:
                timeout = float(value) / 1000
            except ValueError:
                raise ConfigError(f"{name} must be a number of milliseconds, got {value!r}") from None
            if not timeout > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
    return OTLPExporter(
        endpoint,
        headers=headers,
        protocol=protocol,
        timeout=timeout,
        compression=compression,
        export_timeout=export_timeout,
        project=project,
        max_in_flight=max_in_flight,
    )
