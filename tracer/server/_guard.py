"""Which ``Host`` the collector answers to: a DNS-rebinding page (``attacker.example`` resolving to
127.0.0.1) reaches a loopback port from the user's browser, but always with its own name as ``Host``.

Answered: no ``Host`` (HTTP/1.0), ``localhost`` and ``*.localhost``, the bound address (any loopback
address when bound to loopback; any address literal when bound to all interfaces), and the names
configured (``--allow-host``; ``*`` turns the check off). Everything else gets 403.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

import orjson

__all__ = ["HostCheck", "HostPolicy", "host_name"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WILDCARDS: Final = frozenset({ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")})


def host_name(header: str) -> str:
    """The name in a ``Host`` header: no port, no brackets, lower case, no trailing dot."""
    text = header.strip().lower()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class HostPolicy:
    """The ``Host`` names answered by a collector bound to *bound_host*, plus *allowed* names."""

    def __init__(self, bound_host: str, allowed: Iterable[str] = ()) -> None:
        names = {host_name(name) for name in allowed if name.strip()}
        self.any_host = "*" in names
        self.names = frozenset(names - {"*"})
        self.bound = _address(host_name(bound_host))
        if host_name(bound_host) == "localhost":
            self.bound = ipaddress.ip_address("127.0.0.1")

    def allows(self, header: str | None) -> bool:
        if header is None or self.any_host:
            return True
        name = host_name(header)
        if name == "localhost" or name.endswith(".localhost") or name in self.names:
            return True
        address = _address(name)
        if address is None or self.bound is None:
            return False
        if address == self.bound or self.bound in _WILDCARDS:
            return True
        return address.is_loopback and self.bound.is_loopback


class HostCheck:
    """ASGI middleware: requests with a ``Host`` the policy refuses get 403 in HoneyHive's error shape."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((value for key, value in scope["headers"] if key == b"host"), None)
            text = header.decode("latin-1") if header is not None else None
            if not self.policy.allows(text):
                await _refuse(send, text or "")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, host: str) -> None:
    message = (
        f"Host {host!r} is not served here (it may be a DNS-rebinding page); "
        "use localhost or the address the collector listens on, or start it with --allow-host NAME"
    )
    body = orjson.dumps({"message": message, "errorCode": "FORBIDDEN", "success": False})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
