"""Who may use the viewer: no one needs a token on loopback without ``--api-key``; otherwise every
page and API call needs the token, as the ``tracer_token`` cookie (set by ``POST /api/login``) or as
``Authorization: Bearer <token>``. Tokens are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from starlette.requests import Request

__all__ = ["COOKIE", "ViewerAuth", "new_token"]

COOKIE: Final = "tracer_token"
# 32 random bytes, URL-safe: what `tracer ui` generates when bound off loopback without --api-key.
_TOKEN_BYTES: Final = 32


def new_token() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


class ViewerAuth:
    """The viewer's token rule: ``token`` None means open (loopback, no key)."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._expected = token.encode() if token else None

    @property
    def required(self) -> bool:
        return self._expected is not None

    def matches(self, given: str) -> bool:
        if self._expected is None:
            return True
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._expected)

    def allows(self, request: Request) -> bool:
        """Whether *request* carries the token (cookie or bearer header), or none is needed."""
        if self._expected is None:
            return True
        header = request.headers.get("authorization", "").strip()
        if header[:7].lower() == "bearer " and self.matches(header[7:].strip()):
            return True
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and self.matches(cookie)
