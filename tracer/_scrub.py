"""Deciding what is a secret and redacting it (interim: the previous rules behind the new interface)."""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from typing import Final

__all__ = ["REDACTED", "Scrubber"]

REDACTED: Final = "[REDACTED]"

_SECRET_KEY: Final = (
    r"password|passwd|passphrase|secret|api_?key|access_?key|private_?key|authorization"
    r"|cookie|credential|session_?key|(?:^|_)token$|(?:^|_)auth$|(?:^|_)pwd$|^x_api_key$"
)
_SECRET_VALUE: Final = (
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|\b[Bb]earer\s+[A-Za-z0-9._~+/=\-]{8,}"
)
_NEEDLES: Final = (
    b"pass", b"secret", b"key", b"auth", b"cookie", b"credential", b'token"', b"pwd",
    b"sk-", b"akia", b"gh", b"eyj", b"bearer",
)  # fmt: skip


class Scrubber:
    def __init__(self, extra_keys: Sequence[str] = (), extra_patterns: Sequence[str] = ()) -> None:
        self._keys = re.compile("|".join([_SECRET_KEY, *map(re.escape, extra_keys)]))
        self._values = re.compile("|".join([_SECRET_VALUE, *extra_patterns]))
        self._cache: dict[str, bool] = {}

    def is_secret_key(self, key: str) -> bool:
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            found = self._cache[key] = bool(self._keys.search(key.lower().replace("-", "_").replace(" ", "_")))
        return found

    def scrub_text(self, text: str) -> str:
        return self._values.sub(REDACTED, text)

    def may_hold_secret(self, data: bytes) -> bool:
        low = data.lower()
        return any(needle in low for needle in _NEEDLES)

    def hinted(self, chunks: list[bytes]) -> set[int]:
        joined = b"\x00".join(chunks).lower()
        found: set[int] = set()
        starts: list[int] | None = None
        for needle in _NEEDLES:
            position = joined.find(needle)
            if position < 0:
                continue
            if starts is None:
                starts = list(itertools.accumulate((len(chunk) + 1 for chunk in chunks[:-1]), initial=0))
            while position >= 0:
                index = bisect.bisect_right(starts, position) - 1
                found.add(index)
                if index + 1 >= len(starts):
                    break
                position = joined.find(needle, starts[index + 1])
        return found
