"""``HoneyHiveExporter``: sends events to a HoneyHive-compatible events API.

Per ``export_batches`` call (the few batches one worker pass took), in order:

1. one ``POST /events/batch`` per session and batch, body ``{"events": [...], "is_single_session":
   true, "session_properties": {...}}``, assembled from the already-encoded event bytes (never
   re-encoded); up to ``max_in_flight`` of them at once, on sender threads (``_senders``);
2. then, once those are answered, the late updates: ``PUT /events`` (``event_id`` plus the changed
   buckets; never ``inputs``, ``outputs`` always an object), or ``POST /session/start`` for a session
   the server does not have yet. Updates of one event go one after the other, in order.

Outcomes of an events request:

- 2xx: delivered. A ``500`` (or 2xx) carrying ``event_ids`` and ``errors`` is a partial success:
  the acknowledged events are delivered, the others are sent again (alone, after the usual backoff,
  within the deadline); those still refused after ``max_attempts`` sends are counted ``rejected``.
- ``413``: the events are split in half and each half sent (an event still too large alone is
  dropped as ``too_large``).
- A ``400``/``422`` or a ``500`` that outlasted the retries: the offending events are isolated.
  A ``400`` naming ``events[N]`` drops that event at once; otherwise the group is bisected (halves
  sent, failing halves split again, down to single events). Only events refused on their own are
  counted ``rejected``. Bounded: at most ``4 × bit_length(n) + 4`` extra requests for a group of n,
  and none more once ``_BLIND_PROBES`` of them all failed (a server failing every request, not
  some events: the rest keeps the group's outcome).
- Other 4xx: refused as a whole, not retried, counted ``rejected``, logged once per status.
- 408/429/5xx after the retries, connection failures, the deadline, an open circuit: counted
  ``export_failed`` and listed in ``ExportResult.retry_events`` (the pipeline may offer them again).

The exporter counts nothing itself: each batch's ``ExportResult`` also reports the requests it took
(retried, failed), the last error and the late updates lost by reason, and the pipeline counts them.

The exporter's own requests are never traced: they run with ``tracer._context.suppressed`` set,
on the calling thread and in the sender threads.
"""

from __future__ import annotations

import collections
import functools
import gzip as gzip_module
import random
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx
import orjson

from .._clock import SYSTEM_CLOCK, Clock
from .._context import suppressed
from .._errors import ConfigError, logger
from .._export import Batch, Exporter, ExportResult
from .._http import RETRY_STATUSES, HttpClient, HttpResult, RetryPolicy
from .._schema import ENRICHABLE, UPDATE_FIELDS
from .._version import __version__
from ._senders import Senders

__all__ = ["HoneyHiveExporter"]

# Level 1: measured 1.0 µs per event against 2.4 µs at level 6, for a ratio of 19.8 against 22.4
# on event JSON (bench/throughput.py); compression runs on the thread that sends.
_GZIP_LEVEL: Final = 1
_MESSAGE_CHARS: Final = 300
_CIRCUIT_OPEN: Final = "not sent: circuit open after repeated connection failures"
_INTERRUPTED: Final = "not sent: the exporter was interrupted (shutdown ran out of time)"
# What a part of a group being isolated gets when no request can be tried any more.
_NOT_TRIED: Final = HttpResult(None, error="not tried")
_UPDATE_FIELDS: Final = UPDATE_FIELDS
# Statuses that may be about some events of a batch rather than the batch: worth isolating them.
_ISOLATED_REFUSALS: Final = frozenset({400, 422})
# Isolation requests that may all fail before concluding that the server fails every request (not
# some events): with at most 2 bad events among the halves and quarters tried first, one succeeds.
_BLIND_PROBES: Final = 4
# "events[49].inputs must be an object": the event a 400 is about.
_NAMED_EVENT: Final = re.compile(r"\bevents\[(\d+)\]")
# Default of the setting of the same name (kept here for the exporter used on its own). A server 20 ms
# away took 3.0-3.7x more events/s with 8 in flight than with one (bench/throughput.py --latency-ms
# 20). 16 once added only 5-16% more while making the app's spans 3-60% dearer during the burst;
# since the worker yields the GIL to the app (see _pipeline), 16 gives 78,500-89,800 events/s
# against 68,500-70,800 with 8 at 20 ms and 44,500-45,800 against 28,600 at 100 ms, the app's
# spans costing the same (3 runs each, 2026-12-05). The price: twice the connections to the backend.
_DEFAULT_MAX_IN_FLIGHT: Final = 16


class _Tally:
    """What became of one batch (or of one part of it, merged into the batch's tally), and the
    requests it took: what ``ExportResult`` reports for the pipeline to count."""

    __slots__ = (
        "delivered",
        "failed_requests",
        "last_error",
        "lost",
        "retried_requests",
        "retry_after",
        "retry_events",
        "retry_updates",
        "updates_failed",
        "updates_rejected",
    )

    def __init__(self) -> None:
        self.delivered = 0
        self.lost: collections.Counter[str] = collections.Counter()
        self.retry_events: list[int] = []
        self.updates_failed = 0
        self.updates_rejected = 0
        self.retry_updates: list[int] = []
        self.retried_requests = 0
        self.failed_requests = 0
        self.last_error: str | None = None
        self.retry_after: float | None = None

    def count_request(self, result: HttpResult) -> None:
        """One request made (or skipped: backend down, deadline used up): its retries, and whether it
        failed (and how long the backend asked to be left alone, if it did)."""
        self.retried_requests += result.retries
        if not result.ok:
            self.failed_requests += 1
            if result.retry_after is not None:
                self.retry_after = max(self.retry_after or 0.0, result.retry_after)

    def fail(self, reason: str, indexes: Sequence[int], retry: bool) -> None:
        self.lost[reason] += len(indexes)
        if retry:
            self.retry_events.extend(indexes)

    def merge(self, other: _Tally) -> None:
        self.delivered += other.delivered
        self.lost.update(other.lost)
        self.retry_events.extend(other.retry_events)
        self.merge_requests(other)

    def merge_requests(self, other: _Tally) -> None:
        self.retried_requests += other.retried_requests
        self.failed_requests += other.failed_requests
        if other.last_error is not None:
            self.last_error = other.last_error
        if other.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, other.retry_after)

    def result(self) -> ExportResult:
        failed = sum(self.lost.values())
        # ExportResult carries one reason: the one that cost the most events.
        reason = self.lost.most_common(1)[0][0] if failed else None
        return ExportResult(
            delivered=self.delivered,
            failed=failed,
            reason=reason,
            updates_failed=self.updates_failed,
            retry_events=tuple(sorted(self.retry_events)),
            retry_updates=tuple(sorted(self.retry_updates)),
            updates_rejected=self.updates_rejected,
            retried_requests=self.retried_requests,
            failed_requests=self.failed_requests,
            last_error=self.last_error,
            retry_after=self.retry_after,
        )


class _Isolation:
    """Requests spent isolating bad events in one session's events, against the bound."""

    __slots__ = ("budget", "partial_rounds", "requests", "successes")

    def __init__(self, count: int) -> None:
        self.budget = 4 * count.bit_length() + 4
        self.requests = 0
        self.successes = 0
        self.partial_rounds = 0

    def blind(self) -> bool:
        """True once enough isolation requests all failed: the server fails everything."""
        return self.successes == 0 and self.requests >= _BLIND_PROBES

    def can_split(self) -> bool:
        return self.requests + 2 <= self.budget and not self.blind()


class _Job:
    """The events of one session in one batch: one ``POST /events/batch`` (more if split)."""

    __slots__ = ("batch", "indexes", "properties", "raws", "session_id")

    def __init__(self, batch: int, session_id: str, indexes: Sequence[int], raws: list[bytes], properties: bytes):
        self.batch = batch
        self.session_id = session_id
        self.indexes = indexes
        self.raws = raws
        self.properties = properties


class HoneyHiveExporter(Exporter):
    """Ships batches to ``{server_url}/events/batch`` and ``PUT {server_url}/events``.

    - ``timeout``: seconds one HTTP attempt may take; ``export_timeout``: seconds one
      ``export``/``export_batches`` call may take in total, retries included.
    - ``max_in_flight``: requests sent at once (1: all on the calling thread, one at a time).
    - ``base_delay`` / ``max_delay`` / ``max_attempts``: exponential backoff with full jitter;
      ``max_retry_after`` caps a server's ``Retry-After``.
    - ``breaker_threshold`` / ``breaker_cooldown``: after that many consecutive connection failures,
      nothing is sent (and nothing serialized) for the cooldown, doubling per failed probe.
    - ``transport``: an ``httpx`` transport (proxies, custom TLS, tests).
    - ``clock`` / ``jitter``: the clock the deadlines, backoff waits and circuit breaker run on, and
      the random source of the backoff's jitter (tests pass a fake clock and a seeded source).
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
        max_in_flight: int = _DEFAULT_MAX_IN_FLIGHT,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        max_retry_after: float = 60.0,
        max_attempts: int = 8,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        project: str = "default",
        clock: Clock = SYSTEM_CLOCK,
        jitter: random.Random | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigError("HoneyHiveExporter needs an API key (argument api_key, or HH_API_KEY / TRACER_API_KEY)")
        if not isinstance(server_url, str) or not server_url.startswith(("http://", "https://")):
            raise ConfigError(f"HoneyHiveExporter server_url must be an http:// or https:// URL, got {server_url!r}")
        if not export_timeout > 0:
            raise ConfigError(f"HoneyHiveExporter export_timeout must be positive, got {export_timeout!r}")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ConfigError(f"HoneyHiveExporter max_in_flight must be a whole number >= 1, got {max_in_flight!r}")
        policy = RetryPolicy.of_exporter(
            "HoneyHiveExporter",
            base_delay=base_delay,
            max_delay=max_delay,
            max_retry_after=max_retry_after,
            max_attempts=max_attempts,
            breaker_threshold=breaker_threshold,
            breaker_cooldown=breaker_cooldown,
        )
        self.server_url = server_url.strip().rstrip("/")
        self.gzip = gzip
        self.export_timeout = export_timeout
        self.max_in_flight = max_in_flight
        self._batch_url = f"{self.server_url}/events/batch"
        self._events_url = f"{self.server_url}/events"
        self._session_start_url = f"{self.server_url}/session/start"
        self.project = project
        # Sessions the server already has (created by a batch or by /session/start). A session
        # update for any other session creates it instead: a PUT would find nothing to update.
        self._known_sessions: set[str] = set()
        self._sessions_lock = threading.Lock()
        headers = {
            "Authorization": f"Bearer {api_key.strip()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"tracer-python/{__version__}",
        }
        try:
            self._http = HttpClient(
                headers, timeout=timeout, policy=policy, transport=transport, clock=clock, jitter=jitter
            )
        except ValueError as exc:
            raise ConfigError(f"HoneyHiveExporter: {exc}") from None
        self._log_lock = threading.Lock()
        self._logged: set[str] = set()
        self._unreachable_logged = False
        self._senders = Senders("tracer-sender")
        self._interrupted = False

    def __repr__(self) -> str:  # never shows the key
        return f"HoneyHiveExporter(server_url={self.server_url!r}, gzip={self.gzip})"

    # -- the Exporter interface -------------------------------------------------------------------

    def export(self, batch: Batch, timeout: float | None = None) -> ExportResult:
        return self._export_suppressed([batch], timeout)[0]

    def export_batches(self, batches: list[Batch], timeout: float | None = None) -> list[ExportResult | bool | None]:
        """Send *batches* within *timeout* seconds (None, or a longer one: ``export_timeout``)."""
        return list(self._export_suppressed(batches, timeout))

    def interrupt(self) -> None:
        """Stop waiting (between retries, and for requests in flight): the current export returns soon."""
        self._interrupted = True
        self._http.interrupt()
        self._senders.interrupt()

    def shutdown(self) -> None:
        self._interrupted = True
        self._http.close()
        self._senders.close()

    # -- sending ----------------------------------------------------------------------------------

    def _export_suppressed(self, batches: list[Batch], timeout: float | None) -> list[ExportResult]:
        token = suppressed.set(True)
        try:
            return self._export(batches, timeout)
        finally:
            suppressed.reset(token)

    def _export(self, batches: list[Batch], timeout: float | None) -> list[ExportResult]:
        seconds = self.export_timeout if timeout is None else min(timeout, self.export_timeout)
        deadline = self._http.clock.monotonic() + seconds
        tallies = [_Tally() for _ in batches]
        # 1. The events, every session of every batch side by side.
        jobs = [job for index, batch in enumerate(batches) for job in self._jobs(index, batch)]
        outcomes = self._run([functools.partial(self._send_job, job, deadline) for job in jobs])
        for job, outcome in zip(jobs, outcomes, strict=True):
            if outcome is None:
                # Interrupted before it ended: counted whole as not delivered, to be offered again
                # (a part may have arrived already; event ids make a second copy harmless).
                tallies[job.batch].fail("export_failed", job.indexes, retry=True)
                tallies[job.batch].last_error = f"honeyhive: {_INTERRUPTED}"
            else:
                tallies[job.batch].merge(outcome)
        # 2. Then the updates, which may refer to those events and sessions; one event's in order.
        by_event: dict[str, list[tuple[int, int]]] = {}
        for index, batch in enumerate(batches):
            for position, update in enumerate(batch.updates):
                by_event.setdefault(str(update.get("event_id")), []).append((index, position))
        chains = list(by_event.values())
        requests = [_Tally() for _ in chains]  # each chain's requests, counted with its first update's batch
        results = self._run(
            [
                functools.partial(self._send_updates, batches, chain, deadline, tally)
                for chain, tally in zip(chains, requests, strict=True)
            ]
        )
        for chain, result, tally in zip(chains, results, requests, strict=True):
            tallies[chain[0][0]].merge_requests(tally)
            for done, (index, position) in enumerate(chain):
                # None: interrupted before this update's turn, which is a transient failure
                reason = result[done] if result is not None else "export_failed"
                if reason is None:
                    continue
                tallies[index].updates_failed += 1
                if reason == "export_failed":
                    tallies[index].retry_updates.append(position)
                else:
                    tallies[index].updates_rejected += 1
        return [tally.result() for tally in tallies]

    def _jobs(self, index: int, batch: Batch) -> list[_Job]:
        """One job per session of *batch* (the usual batch has a single session: no regrouping)."""
        session_ids = batch.session_ids
        if not session_ids:
            return []
        if session_ids.count(session_ids[0]) == len(session_ids):
            groups: dict[str, tuple[Sequence[int], list[bytes]]] = {
                session_ids[0]: (range(len(session_ids)), batch.encoded)
            }
        else:
            grouped: dict[str, tuple[list[int], list[bytes]]] = {}
            for position, (raw, session_id) in enumerate(zip(batch.encoded, session_ids, strict=True)):
                indexes, raws = grouped.setdefault(session_id, ([], []))
                indexes.append(position)
                raws.append(raw)
            groups = dict(grouped)
        return [
            _Job(
                index,
                session_id,
                indexes,
                raws,
                orjson.dumps(batch.sessions.get(session_id) or {"session_id": session_id}),
            )
            for session_id, (indexes, raws) in groups.items()
        ]

    def _run(self, tasks: list[Callable[[], Any]]) -> list[Any]:
        """Run *tasks*, up to ``max_in_flight`` at once (see ``_senders.Senders``)."""
        return self._senders.run(tasks, self.max_in_flight)

    def _send_job(self, job: _Job, deadline: float) -> _Tally:
        tally = _Tally()
        isolation = _Isolation(len(job.raws))
        self._send_events(job.indexes, job.raws, job.properties, deadline, tally, isolation, isolating=False)
        if tally.delivered:
            self._remember_session(job.session_id)
        return tally

    def _remember_session(self, session_id: str) -> None:
        with self._sessions_lock:
            if len(self._known_sessions) >= 100_000:  # bounded: forgetting only costs a redundant /session/start
                self._known_sessions.clear()
            self._known_sessions.add(session_id)

    def _send_events(
        self,
        indexes: Sequence[int],
        events: list[bytes],
        properties: bytes,
        deadline: float,
        tally: _Tally,
        isolation: _Isolation,
        isolating: bool,
        probe: bool = False,
    ) -> HttpResult | None:
        """Deliver *events* (at *indexes* of their batch); record what became of each in *tally*.

        *isolating*: this request is part of isolating bad events, where a 500 is known to persist
        for the group it came from (so it is not retried). *probe*: a 400/422/500 for all of these
        events is returned instead of isolated here (the caller tries the sibling part first).
        """
        count = len(events)
        if not self._http.can_try_before(deadline):  # backend known down: don't even build the body
            if probe:
                return _NOT_TRIED  # the caller keeps the answer the whole group got
            skipped = self._skipped()
            tally.count_request(skipped)
            self._note_failure("POST /events/batch", skipped, count, tally)
            tally.fail("export_failed", indexes, retry=True)
            return None
        body = b"".join(
            (b'{"events":[', b",".join(events), b'],"is_single_session":true,"session_properties":', properties, b"}")
        )
        final = _is_partial_or_500 if isolating else _is_partial_success
        result = self._send("POST", self._batch_url, body, deadline, tally, final=final)
        if isolating:
            isolation.requests += 1
        status = result.status
        created = _partial_ids(result) if result.ok or status == 500 else None
        if result.ok and created is None:
            tally.delivered += count
            isolation.successes += 1
            self._recovered()
            return None
        if created is not None:
            self._recovered()
            self._partial(indexes, events, properties, deadline, tally, isolation, isolating, result, created)
            return None
        if status == 413:
            if count == 1:
                tally.fail("too_large", indexes, retry=False)
                self._log_once(
                    "413",
                    "tracer: HoneyHive refused an event as too large (HTTP 413) even when sent alone; it is "
                    "dropped. Lower max_event_bytes to trim events further (logged once).",
                )
                tally.last_error = "honeyhive: an event was too large for the server (HTTP 413)"
                return None
            half = count // 2
            self._send_events(indexes[:half], events[:half], properties, deadline, tally, isolation, isolating)
            self._send_events(indexes[half:], events[half:], properties, deadline, tally, isolation, isolating)
            return None
        if status == 500 or status in _ISOLATED_REFUSALS:
            if probe:
                return result
            self._isolate(indexes, events, properties, deadline, tally, isolation, result)
            return None
        rejected = _is_rejection(status)
        self._note_failure("POST /events/batch", result, count, tally)
        tally.fail("rejected" if rejected else "export_failed", indexes, retry=not rejected)
        return None

    def _partial(
        self,
        indexes: Sequence[int],
        events: list[bytes],
        properties: bytes,
        deadline: float,
        tally: _Tally,
        isolation: _Isolation,
        isolating: bool,
        result: HttpResult,
        created: list[str],
    ) -> None:
        """A partial success: the acknowledged events are delivered; the others are sent again, alone,
        after the usual backoff (a 500 is a server-side failure), up to ``max_attempts`` sends."""
        missing = _unacknowledged(events, created)
        if missing is None:  # the server's ids are not ours: count by number (nothing can be re-sent)
            delivered = min(len(created), len(events))
            tally.delivered += delivered
            if delivered < len(events):
                self._note_partial(result, len(events) - delivered, 1, tally)
                tally.fail("rejected", indexes[delivered:], retry=False)
            return
        if len(missing) < len(events):
            tally.delivered += len(events) - len(missing)
            isolation.successes += 1
        if not missing:
            return
        missing_indexes = [indexes[position] for position in missing]
        isolation.partial_rounds += 1
        if isolation.partial_rounds >= self._http.policy.max_attempts:
            self._note_partial(result, len(missing), isolation.partial_rounds, tally)
            tally.fail("rejected", missing_indexes, retry=False)
            return
        if not self._http.back_off(isolation.partial_rounds, deadline):
            # Out of time (or shut down) before the events were refused max_attempts times: they may
            # well be taken later.
            self._note_partial(result, len(missing), isolation.partial_rounds, tally)
            tally.fail("export_failed", missing_indexes, retry=True)
            return
        missing_events = [events[position] for position in missing]
        self._send_events(missing_indexes, missing_events, properties, deadline, tally, isolation, isolating)

    def _isolate(
        self,
        indexes: Sequence[int],
        events: list[bytes],
        properties: bytes,
        deadline: float,
        tally: _Tally,
        isolation: _Isolation,
        result: HttpResult,
    ) -> None:
        """*events* got a 400/422, or a 500 that persisted: find the events the server refuses, deliver the rest."""
        count = len(events)
        refusal = result.status != 500
        # Out of time (or interrupted): the events keep the answer they got, as a group.
        time_left = self._http.can_try_before(deadline)
        named = _named_event(result, count) if refusal and count > 1 and time_left else None
        if named is not None and isolation.requests < isolation.budget:
            # The server says which event it refuses: drop that one, send the others again.
            self._refused(result, 1, tally)
            tally.fail("rejected", [indexes[named]], retry=False)
            rest = [position for position in range(count) if position != named]
            rest_indexes = [indexes[position] for position in rest]
            rest_events = [events[position] for position in rest]
            self._send_events(rest_indexes, rest_events, properties, deadline, tally, isolation, isolating=True)
            return
        if count > 1 and time_left and isolation.can_split():
            # Both halves first, then deeper: a failing half is split only after its sibling was
            # tried, so that a server failing every request is recognised after _BLIND_PROBES requests.
            half = count // 2
            failed: list[tuple[Sequence[int], list[bytes], HttpResult]] = []
            for part_indexes, part_events in ((indexes[:half], events[:half]), (indexes[half:], events[half:])):
                answer = self._send_events(
                    part_indexes, part_events, properties, deadline, tally, isolation, isolating=True, probe=True
                )
                if answer is not None:
                    failed.append((part_indexes, part_events, result if answer is _NOT_TRIED else answer))
            for part_indexes, part_events, answer in failed:
                self._isolate(part_indexes, part_events, properties, deadline, tally, isolation, answer)
            return
        if refusal or (count == 1 and isolation.successes):
            # Refused on its own (a 400 beyond the isolation bound, or the deadline, is a refusal all the same).
            if count == 1:
                self._refused(result, count, tally)
            else:
                self._note_failure("POST /events/batch", result, count, tally)
            tally.fail("rejected", indexes, retry=False)
            return
        # A 500 that no smaller request avoided (or the bound was reached): a failure of the server.
        self._note_failure("POST /events/batch", result, count, tally)
        tally.fail("export_failed", indexes, retry=True)

    def _send_updates(
        self, batches: list[Batch], chain: list[tuple[int, int]], deadline: float, tally: _Tally
    ) -> list[str | None]:
        """The updates of one event (or session), in order (their requests counted in *tally*). For
        each: None if delivered, else the reason it was lost (``rejected`` or ``export_failed``)."""
        outcomes: list[str | None] = []
        for index, position in chain:
            batch = batches[index]
            update = batch.updates[position]
            session_id = update["event_id"]
            with self._sessions_lock:
                known = session_id in self._known_sessions
            if session_id in batch.sessions and not known:
                # An update of a session the server has not seen: create it with all its properties
                # (they already include this update) instead of a PUT that would find nothing.
                outcomes.append(self._start_session(batch.sessions[session_id], deadline, tally))
            else:
                outcomes.append(self._send_update(update, deadline, tally))
        return outcomes

    def _start_session(self, properties: dict[str, Any], deadline: float, tally: _Tally) -> str | None:
        session = {"project": self.project, **properties}
        if not self._http.can_try_before(deadline):
            result = self._skipped()
            tally.count_request(result)
        else:
            result = self._send("POST", self._session_start_url, orjson.dumps({"session": session}), deadline, tally)
            if result.ok:
                self._recovered()
                self._remember_session(str(properties.get("session_id")))
                return None
        self._note_failure("POST /session/start", result, 0, tally)
        return "rejected" if _is_rejection(result.status) else "export_failed"

    def _send_update(self, update: dict[str, Any], deadline: float, tally: _Tally) -> str | None:
        body = _update_body(update)
        if not self._http.can_try_before(deadline):
            result = self._skipped()
            tally.count_request(result)
        else:
            result = self._send("PUT", self._events_url, orjson.dumps(body), deadline, tally)
            if result.ok:
                self._recovered()
                return None
        self._note_failure("PUT /events", result, 0, tally)
        return "rejected" if _is_rejection(result.status) else "export_failed"

    def _send(
        self,
        method: str,
        url: str,
        body: bytes,
        deadline: float,
        tally: _Tally,
        final: Callable[[int, bytes], bool] | None = None,
    ) -> HttpResult:
        compressed = self.gzip
        if compressed:
            content = gzip_module.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
            headers: dict[str, str] | None = {"Content-Encoding": "gzip"}
        else:
            content, headers = body, None
        result = self._http.request(method, url, content, deadline=deadline, headers=headers, final=final)
        tally.count_request(result)
        if compressed and result.status == 415:
            # The server does not take compressed bodies: send uncompressed from now on.
            self.gzip = False
            self._log_once(
                "gzip",
                "tracer: %s answered 415 to a gzip-compressed body; sending uncompressed from now on "
                "(set gzip=False / TRACER_GZIP=0 to skip this)",
                self.server_url,
            )
            return self._send(method, url, body, deadline, tally, final)
        return result

    # -- bookkeeping ------------------------------------------------------------------------------

    def _skipped(self) -> HttpResult:
        """The result of a request not even tried."""
        if self._http.breaker.is_open():
            return HttpResult(None, error=_CIRCUIT_OPEN)
        if self._interrupted:
            return HttpResult(None, error=_INTERRUPTED)
        return HttpResult(None, error="not sent: export deadline used up")

    def _recovered(self) -> None:
        self._unreachable_logged = False

    def _note_failure(self, what: str, result: HttpResult, events: int, tally: _Tally) -> None:
        """Log (once per status, or once per outage) and record in *tally* the last error of a failed request."""
        status = result.status
        lost = f"{events} event(s)" if events else "an update"
        if status is None:
            tries = f" after {result.attempts} attempt(s)" if result.attempts else ""
            text = f"honeyhive: {what} to {self.server_url} failed{tries}: {result.error}"
            tally.last_error = text
            if not result.attempts and result.error != _CIRCUIT_OPEN:
                return  # not tried: the batch's deadline was used up by an earlier, already reported failure
            with self._log_lock:  # several senders may fail at once: one line per outage
                first = not self._unreachable_logged
                self._unreachable_logged = True
            if first:
                logger.warning(
                    "tracer: cannot reach HoneyHive at %s (%s); %s not delivered: kept in the spool "
                    "for later when it is on (the default), dropped otherwise; the same for what follows "
                    "while it stays unreachable (see tracer.stats(); logged once per outage)",
                    self.server_url,
                    result.error,
                    lost,
                )
            return
        message = _server_message(result)
        phrase = httpx.codes.get_reason_phrase(status)
        text = f"honeyhive: HTTP {status} {phrase} from {what}: {message}"
        tally.last_error = text
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
                "tracer: HoneyHive kept failing %s with HTTP %d %s after %d attempt(s): %s; %s not "
                "delivered: kept in the spool for later when it is on (the default), dropped otherwise "
                "(see tracer.stats(); logged once per status).",
                what,
                status,
                phrase,
                result.attempts,
                message,
                lost,
            )

    def _refused(self, result: HttpResult, count: int, tally: _Tally) -> None:
        """Record (and log once per status) events the server refused on their own, the rest delivered."""
        status = result.status
        message = _server_message(result)
        tally.last_error = f"honeyhive: HTTP {status} from POST /events/batch refused {count} event(s): {message}"
        self._log_once(
            f"refused:{status}",
            "tracer: HoneyHive refused %d event(s) of a batch on their own (HTTP %s: %s); they are dropped, "
            "the other events were sent (see tracer.stats(); logged once per status).",
            count,
            status,
            message,
        )

    def _note_partial(self, result: HttpResult, missing: int, sends: int, tally: _Tally) -> None:
        """Record (and log once) the events partial successes left out, after *sends* sends."""
        message = _server_message(result)
        tally.last_error = (
            f"honeyhive: POST /events/batch did not create {missing} event(s) (sent {sends} time(s)): {message}"
        )
        self._log_once(
            "partial",
            "tracer: HoneyHive did not create %d event(s) of a batch it partly accepted, sent %d time(s); they "
            "are dropped. Server errors: %s (logged once)",
            missing,
            sends,
            message,
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


def _is_partial_or_500(status: int, body: bytes) -> bool:
    """While isolating: a partial success, or a 500 already known to persist (neither is retried)."""
    return status == 500


def _unacknowledged(events: list[bytes], created: list[str]) -> list[int] | None:
    """Positions of the *events* the server did not report as created; None if it reported ids
    none of which are ours (a server with its own ids: which ones failed cannot be known)."""
    wanted = set(created)
    missing: list[int] = []
    for position, raw in enumerate(events):
        try:
            event_id = orjson.loads(raw).get("event_id")
        except (orjson.JSONDecodeError, AttributeError):
            event_id = None
        if event_id not in wanted:
            missing.append(position)
    if created and len(missing) == len(events):
        return None
    return missing


def _named_event(result: HttpResult, count: int) -> int | None:
    """The position of the event a refusal names (``events[N]…``), if within the *count* sent."""
    found = _NAMED_EVENT.search(_server_message(result))
    if found is None:
        return None
    position = int(found.group(1))
    return position if position < count else None


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
