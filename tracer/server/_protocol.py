"""The collector's HTTP/1.1 connections: uvicorn's h11 protocol, with the limits it lacks.

uvicorn times out idle keep-alive connections but not a request whose headers never finish, and
does not cap connections: 300 connections each holding half a request made every legitimate request
fail under a 256-descriptor limit. Here:

- a request's headers must arrive within ``header_timeout`` of the connection (or of the previous
  answer on it), else the connection is closed;
- at most ``max_connections`` are open: one more closes, of the connections waiting for a client
  (for headers, or for the rest of a body), the one that has sent nothing for the longest; when
  every connection is busy answering, the new one. A client actively sending is never the oldest
  silent one while a stalled one is open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

__all__ = ["guarded_protocol", "knows_uvicorn"]

logger = logging.getLogger("tracer")

# What the guard reads of uvicorn's h11 protocol and of its request cycle: private attributes, so
# a uvicorn release may rename them. Looked for in the code that sets them (their __init__).
_PROTOCOL_ATTRIBUTES: Final = frozenset({"cycle", "connections", "loop", "transport"})
_CYCLE_ATTRIBUTES: Final = frozenset({"response_complete", "more_body", "response_started"})
_PROTOCOL_METHODS: Final = ("connection_made", "data_received", "on_response_complete", "connection_lost")


def knows_uvicorn(protocol: type = H11Protocol, cycle: type = RequestResponseCycle) -> bool:
    """Whether *protocol* (uvicorn's h11 protocol) still has what the guard reads and overrides."""
    try:
        protocol_names = set(vars(protocol)["__init__"].__code__.co_names)
        cycle_names = set(vars(cycle)["__init__"].__code__.co_names)
    except (KeyError, AttributeError):  # no __init__ of its own, or one that is not plain Python code
        return False
    return (
        protocol_names >= _PROTOCOL_ATTRIBUTES
        and cycle_names >= _CYCLE_ATTRIBUTES
        and all(callable(getattr(protocol, name, None)) for name in _PROTOCOL_METHODS)
    )


def guarded_protocol(max_connections: int, header_timeout: float) -> type[asyncio.Protocol] | str:
    """An h11 protocol class for ``uvicorn.Config(http=...)`` with these limits; uvicorn's own
    ``"h11"`` (no limits, a warning) when the installed uvicorn is not one the guard knows: a
    collector without them beats one whose every connection fails."""
    if not knows_uvicorn():
        logger.warning(
            "tracer: this uvicorn's h11 protocol is not the one the collector's connection guard "
            "knows; serving without its header timeout and connection cap"
        )
        return "h11"

    class GuardedH11Protocol(H11Protocol):
        _last_heard = 0.0
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._expect_headers()
            if len(self.connections) > max_connections:
                self._make_room()

        def data_received(self, data: bytes) -> None:
            self._last_heard = time.monotonic()
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # a request's headers are complete
                self._cancel_timer()

        def on_response_complete(self) -> None:
            self._expect_headers()  # first: the next pipelined request may start in super()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timer()
            super().connection_lost(exc)

        def waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def waiting_for_client(self) -> bool:
            """Waiting for headers, or for the rest of a body (nothing to answer yet)."""
            cycle = self.cycle
            return self.waiting_for_headers() or (cycle.more_body and not cycle.response_started)

        def _expect_headers(self) -> None:
            self._cancel_timer()
            self._last_heard = time.monotonic()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _cancel_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.waiting_for_headers():
                self._close()

        def _close(self) -> None:
            self._cancel_timer()
            self.connections.discard(self)  # at once: connection_lost comes on a later loop turn
            if not self.transport.is_closing():
                self.transport.close()

        def _make_room(self) -> None:
            waiting: list[Any] = [
                other
                for other in self.connections
                if other is not self and isinstance(other, GuardedH11Protocol) and other.waiting_for_client()
            ]
            oldest = min(waiting, key=lambda other: other._last_heard, default=None)
            (oldest if oldest is not None else self)._close()

    return GuardedH11Protocol
