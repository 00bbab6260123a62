"""The library's only HTTP code: one reused ``httpx.Client``, retries with backoff, a circuit breaker.

It runs on the delivery worker thread and the exporter's sender threads (or inline with
``batch=False``), never on a traced call; one client is shared by several threads at once.
A request body is built and compressed once by the caller; every retry resends the same bytes.

- Retried: HTTP 408, 429, 500, 502, 503, 504, connection errors and timeouts, with exponential
  backoff and full jitter (``base_delay × 2^n``, capped at ``max_delay``). ``Retry-After`` (seconds
  or an HTTP date, capped at ``max_retry_after``) replaces the computed delay.
- Not retried: every other status (the caller decides what a 4xx means), or a response the caller's
  ``final`` predicate marks as final (e.g. a partial success, which must not be sent twice).
- Everything happens before an absolute ``deadline``: a wait that would end after it is not started.
- Waits end at once when ``interrupt()`` is called (shutdown).
- Time is read and waited on through a ``Clock`` (the system's unless one is passed), and the
  jitter drawn from ``random`` (or the ``jitter`` source passed): tests run these rules exactly.
- httpx's own per-request INFO log lines are filtered out for these requests (not for the app's).
- After ``breaker_threshold`` consecutive connection failures the circuit opens: no request is tried
  for ``breaker_cooldown`` seconds (doubling per failed probe; both capped by ``breaker_max_cooldown``, 1 s,
  so that delivery resumes within about a second of the backend's return); the
  first request after that is the probe, and any HTTP response closes the circuit again.
"""

from __future__ import annotations

import contextvars
import dataclasses
import email.utils
import logging
import math
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import timezone
from typing import Any, Final

import httpx
import orjson

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigError

__all__ = [
    "RETRY_STATUSES",
    "CircuitBreaker",
    "HttpClient",
    "HttpResult",
    "RetryPolicy",
    "checked_headers",
    "parse_retry_after",
]

RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})

# Transport failures worth another try (and counted by the circuit breaker). Others, such as an
# unsupported URL scheme, fail at once.
_RETRYABLE_ERRORS: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)

# True while this module sends: httpx's "HTTP Request: POST …" INFO lines for our own background
# requests would otherwise appear in every app that logs at INFO.
_sending: contextvars.ContextVar[bool] = contextvars.ContextVar("tracer.http.sending", default=False)
_filter_lock = threading.Lock()
_filter_installed = False


class _OwnRequestsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _sending.get()


def _install_log_filter() -> None:
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            logging.getLogger("httpx").addFilter(_OwnRequestsFilter())
            _filter_installed = True


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Delays in seconds."""

    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    max_attempts: int = 8
    breaker_threshold: int = 5
    breaker_cooldown: float = 5.0
    # Probing an unreachable backend once a second costs one refused connection per second; a longer
    # cap (it was 60 s) would keep a spooled backlog waiting that long after the backend is back.
    breaker_max_cooldown: float = 1.0

    def __post_init__(self) -> None:
        for name in ("base_delay", "max_delay", "max_retry_after", "breaker_cooldown", "breaker_max_cooldown"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_attempts < 1 or self.breaker_threshold < 1:
            raise ValueError("max_attempts and breaker_threshold must be at least 1")

    @classmethod
    def of_exporter(cls, exporter: str, **settings: Any) -> RetryPolicy:
        """The policy an exporter's arguments ask for; a ``ConfigError`` naming *exporter* if invalid."""
        try:
            return cls(**settings)
        except ValueError as exc:
            raise ConfigError(f"{exporter}: {exc}") from None

    def backoff(self, attempt: int, jitter: random.Random | None = None) -> float:
        """Full-jitter delay before retry number *attempt* (1 = the first retry), drawn from *jitter*
        (default: the ``random`` module, which is re-seeded in a forked child)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 62))
        uniform = random.uniform if jitter is None else jitter.uniform
        return uniform(0.0, ceiling)


@dataclasses.dataclass(frozen=True, slots=True)
class HttpResult:
    """The outcome of one logical request (all its attempts).

    ``status`` is None when no HTTP response came back (connection error, timeout, open circuit,
    deadline or interrupt); ``error`` then says why. ``body`` is the last response's body.
    """

    status: int | None
    body: bytes = b""
    attempts: int = 0
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retries(self) -> int:
        return max(self.attempts - 1, 0)

    def json(self) -> Any:
        """The body decoded as JSON, or None when it is not JSON."""
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def parse_retry_after(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), within ``[0, cap]``."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


class CircuitBreaker:
    """Counts consecutive connection failures; when open, says how long to stay away."""

    def __init__(self, threshold: int, cooldown: float, max_cooldown: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._threshold = threshold
        self._max = max_cooldown
        self._initial = self._cooldown = min(cooldown, max_cooldown)
        self.failures = 0
        self.open_until = 0.0
        self.opened = 0  # times the circuit opened (for tests and diagnostics)

    def ready_at(self) -> float:
        """Monotonic time from which a request may be tried (the past when the circuit is closed)."""
        return self.open_until

    def is_open(self) -> bool:
        return self._clock.monotonic() < self.open_until

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self.open_until = 0.0
            self._cooldown = self._initial

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self._threshold:
                # Opening, or a failed probe: stay away, twice as long each time.
                self.open_until = self._clock.monotonic() + self._cooldown
                self._cooldown = min(self._cooldown * 2.0, self._max)
                self.opened += 1


# RFC 9110 §5.6.2 token characters: what a header name may hold.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A header value may not break the request apart (RFC 9110 §5.5: no CR, LF or NUL).
_HEADER_VALUE_BREAKS = re.compile(r"[\r\n\x00]")


def checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """*headers* as a dict, or ValueError naming the first header that no request could carry
    (found here, at construction, rather than by every request on the worker)."""
    if not isinstance(headers, Mapping):
        raise ValueError(f"headers must be a mapping of names to values, got {type(headers).__name__}")
    checked = dict(headers)
    for name, value in checked.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str) or _HEADER_VALUE_BREAKS.search(value):
            raise ValueError(f"header {name!r} needs a string value without CR, LF or NUL")
    return checked


class HttpClient:
    """Sends request bodies with retries. Thread-safe; one connection pool per process."""

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        jitter: random.Random | None = None,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.policy = policy if policy is not None else RetryPolicy()
        self.clock = clock
        self._jitter = jitter
        self.breaker = self._new_breaker()
        self._headers = checked_headers(headers)
        self._timeout = timeout
        self._transport = transport
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pid = 0
        _install_log_filter()
        if hasattr(os, "register_at_fork"):
            # A lock held by the parent's worker at fork time would stay held forever in the child.
            reinit = weakref.WeakMethod(self._after_fork_in_child)
            os.register_at_fork(after_in_child=lambda: _call_weak(reinit))

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._client = None  # the parent's pooled connections are not ours to use or close
        self.breaker = self._new_breaker()

    def _new_breaker(self) -> CircuitBreaker:
        policy = self.policy
        return CircuitBreaker(
            policy.breaker_threshold, policy.breaker_cooldown, policy.breaker_max_cooldown, self.clock
        )

    def _get_client(self) -> httpx.Client:
        pid = os.getpid()
        with self._lock:
            if self._client is None or self._pid != pid:
                # In a forked child the parent's pooled connections are not ours to use (or close).
                self._client = httpx.Client(headers=self._headers, transport=self._transport, follow_redirects=False)
                self._pid = pid
            return self._client

    def can_try_before(self, deadline: float) -> bool:
        """False when nothing can be tried before *deadline* (circuit open, interrupted): don't build a body."""
        return not self._stop.is_set() and max(self.breaker.ready_at(), self.clock.monotonic()) < deadline

    def back_off(self, attempt: int, deadline: float) -> bool:
        """Sleep the backoff before retry number *attempt* of a request the caller repeats itself (the
        part of a batch a partial success did not take). False, at once, if that retry could not start
        before *deadline*; False when interrupted."""
        delay = self.policy.backoff(attempt, self._jitter)
        if self._stop.is_set() or self.clock.monotonic() + delay >= deadline:
            return False
        return not self.clock.sleep(delay, self._stop)

    def interrupt(self) -> None:
        """End current and future waits at once; no further attempts are made."""
        self._stop.set()

    def close(self) -> None:
        """Interrupt and close the connection pool."""
        self._stop.set()
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()

    def request(
        self,
        method: str,
        url: str,
        content: bytes,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        final: Callable[[int, bytes], bool] | None = None,
    ) -> HttpResult:
        """Send *content* until a final answer, the attempt limit or *deadline* (monotonic seconds)."""
        policy = self.policy
        breaker = self.breaker
        clock = self.clock
        stop = self._stop
        attempts = 0
        answered: int | None = None  # the status of the latest attempt the server answered
        last = HttpResult(None, error="not attempted")
        while True:
            if stop.is_set():
                return dataclasses.replace(last, attempts=attempts, error=last.error or "interrupted")
            now = clock.monotonic()
            ready = breaker.ready_at()
            if ready > now:
                if ready >= deadline:
                    why = f"circuit open after repeated connection failures (next try in {ready - now:.1f}s)"
                    if last.status is None and attempts:
                        why = f"{last.error}; {why}"
                    return dataclasses.replace(last, attempts=attempts, error=why)
                if clock.sleep(ready - now, stop):
                    continue
                now = clock.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                why = "export deadline exceeded" if last.error is None or last.status is not None else last.error
                return dataclasses.replace(last, attempts=attempts, error=why)
            attempts += 1
            per_try = min(self._timeout, remaining)
            token = _sending.set(True)
            try:
                response = self._get_client().request(
                    method,
                    url,
                    content=content,
                    headers=headers,
                    timeout=httpx.Timeout(per_try, connect=min(per_try, 5.0)),
                )
            except _RETRYABLE_ERRORS as exc:
                breaker.failure()
                error = _describe(exc)
                if answered is not None:
                    # A retry of an HTTP error failed (often timed out on what the deadline left it):
                    # the server's own answer is the cause worth reporting, so keep it.
                    error = f"{error} (after HTTP {answered})"
                last = HttpResult(None, b"", attempts, error)
                delay = policy.backoff(attempts, self._jitter)
            except httpx.TransportError as exc:
                return HttpResult(None, b"", attempts, _describe(exc))
            else:
                breaker.success()
                status = answered = response.status_code
                body = response.content
                retry_after = parse_retry_after(response.headers.get("retry-after"), policy.max_retry_after)
                last = HttpResult(
                    status, body, attempts, None if 200 <= status < 300 else f"HTTP {status}", retry_after
                )
                if status not in RETRY_STATUSES or (final is not None and final(status, body)):
                    return last
                delay = retry_after if retry_after is not None else policy.backoff(attempts, self._jitter)
            finally:
                _sending.reset(token)
            if attempts >= policy.max_attempts:
                return last
            if clock.monotonic() + delay >= deadline:
                return last  # the wait would outlast the deadline: give up now rather than later
            if delay > 0 and clock.sleep(delay, stop):
                return dataclasses.replace(last, error=last.error or "interrupted")


def _call_weak(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
