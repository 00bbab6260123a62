"""Turning arbitrary user values into bounded, scrubbed JSON.

Capture happens in two steps so that the traced call pays as little as possible:

1. ``snapshot()`` runs on the calling thread when a span ends. It is one ``orjson.dumps`` call
   (C speed, ~0.1 µs for small values), so later mutation of the user's objects changes nothing.
   Only values orjson cannot encode (circular references, huge ints, odd keys) take the slower
   pure-Python ``sanitize()`` walk right away.
2. ``Sanitizer.finalize()`` runs on the background thread: it applies the size, depth and breadth
   limits and the secret scrubbing, decoding and re-encoding only the fields that need it.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as _dt
import decimal
import enum
import itertools
import pathlib
import re
import types
import uuid
from collections.abc import Mapping
from typing import Any, Final

import orjson

__all__ = [
    "CIRCULAR",
    "REDACTED",
    "Limits",
    "Sanitizer",
    "safe_repr",
    "snapshot",
]

REDACTED: Final = "[REDACTED]"
CIRCULAR: Final = "<circular>"
MAX_DEPTH_MARKER: Final = "<max depth reached>"
_REPR_LIMIT: Final = 1000

_DUMP_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_SMALL: Final = 400  # bytes: a copy fits Python's small-object allocator (objects up to 512 bytes)


_dumps = orjson.dumps


def _copy(data: bytes) -> bytes:
    return b"%b" % data  # a new, exactly sized bytes object (the cheapest copy measured)


# Keys whose values are secrets. Matched against the lower-cased key with '-' and ' ' read as '_'.
# 'token' only at the end of a key so that LLM usage counters such as 'max_tokens' or
# 'prompt_tokens' are kept.
DEFAULT_SECRET_KEY_PATTERN: Final = (
    r"password|passwd|passphrase|secret|api_?key|access_?key|private_?key|authorization"
    r"|cookie|credential|session_?key|(?:^|_)token$|(?:^|_)auth$|(?:^|_)pwd$|^x_api_key$"
)

# Values that look like credentials, wherever they appear in a string.
_SECRET_VALUE = re.compile(
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"  # OpenAI / Anthropic keys
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"  # GitHub tokens
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # JWTs
    r"|\b[Bb]earer\s+[A-Za-z0-9._~+/=\-]{8,}"  # HTTP bearer credentials
)

# Cheap lower-case byte needles: if none occurs in a serialized field, it holds no secret key
# and no secret value, and the regexes above never have to run on it. 'token"' (a key ending in
# token) rather than 'token': every model event has max_tokens / prompt_tokens keys.
_SECRET_NEEDLES: Final = (
    b"pass", b"secret", b"key", b"auth", b"cookie", b"credential", b'token"', b"pwd",
    b"sk-", b"akia", b"gh", b"eyj", b"bearer",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Capture limits; every field is a user setting (see the README's configuration table)."""

    max_string_length: int = 32 * 1024
    max_depth: int = 10
    max_items: int = 1000
    max_event_bytes: int = 1024 * 1024
    scrub: bool = True
    secret_key_pattern: str = DEFAULT_SECRET_KEY_PATTERN


def safe_repr(value: object) -> str:
    """``repr()`` that never raises and never returns more than ~1,000 characters."""
    try:
        text = repr(value)
    except Exception:  # a user __repr__ may raise anything
        try:
            return f"<unrepresentable {type(value).__qualname__} object>"
        except Exception:
            return "<unrepresentable object>"
    if not isinstance(text, str):  # pragma: no cover - repr() enforces str
        return "<unrepresentable object>"
    if len(text) > _REPR_LIMIT:
        return text[:_REPR_LIMIT] + "…"
    return text


def _type_module(value: object) -> str:
    return getattr(type(value), "__module__", "") or ""


def _convert(value: Any) -> Any:
    """One conversion step for a value JSON has no form for; the result may still need converting."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(raw)} bytes>"
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}" if str(value) else type(value).__name__
    if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)):
        return safe_repr(value)  # never consume or await the user's generator
    dump = getattr(type(value), "model_dump", None)  # pydantic v2
    if dump is not None and callable(dump):
        return value.model_dump()
    fields = getattr(type(value), "__attrs_attrs__", None)  # attrs classes
    if fields is not None:
        return {a.name: getattr(value, a.name, None) for a in fields}
    if _type_module(value).split(".", 1)[0] == "numpy":  # without importing numpy
        item = getattr(value, "item", None)
        size = getattr(value, "size", None)
        if getattr(value, "ndim", None) == 0 and item is not None:
            return item()
        if isinstance(size, int) and size > 100_000:
            return f"<ndarray shape={getattr(value, 'shape', '?')} dtype={getattr(value, 'dtype', '?')}>"
        tolist = getattr(value, "tolist", None)
        if tolist is not None:
            return tolist()
    legacy_dict = getattr(type(value), "dict", None)  # pydantic v1
    if legacy_dict is not None and hasattr(type(value), "__fields__") and callable(legacy_dict):
        return value.dict()
    return safe_repr(value)


def _default(value: Any) -> Any:
    # orjson's fallback hook; an exception here makes snapshot() take the pure-Python walk.
    return _convert(value)


def snapshot(value: Any) -> bytes:
    """Serialize *value* now (on the calling thread); never raises.

    The bytes are raw JSON; limits and scrubbing are applied later by ``Sanitizer.finalize``.
    """
    try:
        # No options on the first try: OPT_NON_STR_KEYS alone costs ~40% of a small dumps().
        data = _dumps(value, default=_default)
    except Exception:  # non-str keys, circular, >64-bit ints, a raising model_dump()...
        try:
            data = _dumps(value, default=_default, option=_DUMP_OPTIONS)
        except Exception:
            return _slow_snapshot(value)
    if len(data) <= _SMALL:
        # orjson writes into a ~1 KiB malloc'd buffer and shrinks it; thousands of those shrunken
        # buffers waiting in the queue fragment the C heap and made each dumps() ~4x slower here.
        # A copy this small comes from Python's own small-object allocator instead.
        return _copy(data)
    return data


_ENCODABLE_ONLY: Final = Limits(max_string_length=2**62, max_depth=200, max_items=2**62, scrub=False)


def _slow_snapshot(value: Any) -> bytes:
    # Generous limits: this only has to make the value encodable; finalize() applies the real ones.
    walker = _Walker(_ENCODABLE_ONLY, None)
    try:
        return orjson.dumps(walker.walk(value, 0), option=_DUMP_OPTIONS)
    except Exception:
        return orjson.dumps(safe_repr(value))


class _Walker:
    """Pure-Python walk that makes any value JSON-safe within the limits."""

    __slots__ = ("_keys", "_limits", "_seen")

    def __init__(self, limits: Limits, secret_keys: re.Pattern[str] | None) -> None:
        self._limits = limits
        self._keys = secret_keys
        self._seen: set[int] = set()

    def walk(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, (bool, float)):
            return value
        if isinstance(value, int):
            return value if -(2**63) <= value < 2**64 else str(value)
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, enum.Enum):
            return self.walk(value.value, depth)
        if isinstance(value, (uuid.UUID,)):
            return str(value)
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, (Mapping, list, tuple)):
            return self._container(value, depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
            return self._tracked(value, fields, depth)
        try:
            converted = _convert(value)
        except Exception:
            return safe_repr(value)
        if isinstance(converted, str):
            return self._string(converted)
        return self._tracked(value, converted, depth)

    def _tracked(self, owner: object, converted: Any, depth: int) -> Any:
        # A converted object (model, dataclass) can contain its owner again: guard it like a container.
        key = id(owner)
        if key in self._seen:
            return CIRCULAR
        self._seen.add(key)
        try:
            return self.walk(converted, depth)
        finally:
            self._seen.discard(key)

    def _string(self, text: str) -> str:
        limit = self._limits.max_string_length
        if len(text) > limit:
            head = limit // 2
            tail = limit - head
            text = f"{text[:head]}…[truncated: {len(text)} chars in total]…{text[len(text) - tail :]}"
        if self._keys is not None:
            text = _SECRET_VALUE.sub(REDACTED, text)
        return text

    def _container(self, value: Any, depth: int) -> Any:
        key = id(value)
        if key in self._seen:
            return CIRCULAR
        if depth >= self._limits.max_depth:
            return MAX_DEPTH_MARKER
        self._seen.add(key)
        try:
            if isinstance(value, Mapping):
                return self._mapping(value, depth)
            return self._sequence(value, depth)
        finally:
            self._seen.discard(key)

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        max_items = self._limits.max_items
        keys = self._keys
        for index, (raw_key, item) in enumerate(value.items()):
            if index >= max_items:
                out["…"] = f"<{len(value) - max_items} more items>"
                break
            name = raw_key if isinstance(raw_key, str) else self._key_text(raw_key)
            if keys is not None and keys.search(name.lower().replace("-", "_").replace(" ", "_")):
                out[name] = REDACTED
            else:
                out[name] = self.walk(item, depth + 1)
        return out

    def _sequence(self, value: Any, depth: int) -> list[Any]:
        max_items = self._limits.max_items
        out = [self.walk(item, depth + 1) for item in value[:max_items]]
        if len(value) > max_items:
            out.append(f"<{len(value) - max_items} more items>")
        return out

    @staticmethod
    def _key_text(key: object) -> str:
        if isinstance(key, enum.Enum):
            key = key.value
        if isinstance(key, (str, int, float, bool)) or key is None:
            return str(key) if not isinstance(key, bool) else ("true" if key else "false")
        return safe_repr(key)


class Sanitizer:
    """Applies limits and scrubbing to snapshot bytes; used on the background thread."""

    __slots__ = ("_cheap_len", "_keys", "_max_brackets", "_max_items", "_max_string", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._keys = re.compile(limits.secret_key_pattern) if limits.scrub else None
        self._max_string = limits.max_string_length
        self._max_items = limits.max_items
        self._max_brackets = limits.max_depth
        # Shorter JSON cannot hold an over-long string nor max_items items (2 bytes each at least).
        self._cheap_len = min(limits.max_string_length, 2 * limits.max_items)

    def needs_walk(self, data: bytes) -> bool:
        """True if *data* might break a limit (cheap, conservative byte counts only).

        A string over the limit needs that many bytes; a collection of more than max_items items
        needs as many commas; nesting deeper than max_depth needs that many brackets.
        """
        size = len(data)
        if size >= self._cheap_len and (size >= self._max_string or data.count(b",") >= self._max_items):
            return True
        return data.count(b"{") + data.count(b"[") > self._max_brackets

    def may_hold_secret(self, data: bytes) -> bool:
        """Conservative pre-filter: False means *data* certainly holds no secret key or value."""
        if self._keys is None:
            return False
        low = data.lower()
        return any(needle in low for needle in _SECRET_NEEDLES)

    @property
    def scrubbing(self) -> bool:
        return self._keys is not None

    def chunks_with_secret_hints(self, chunks: list[bytes]) -> set[int]:
        """Indexes of *chunks* in which a secret needle occurs: one scan over all of them.

        False positives are fine (``finalize`` decides); a chunk with a secret is never missed.
        """
        if self._keys is None or not chunks:
            return set()
        joined = b"\x00".join(chunks).lower()
        found: set[int] = set()
        starts: list[int] | None = None
        for needle in _SECRET_NEEDLES:
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

    def finalize(self, data: bytes) -> bytes:
        """Return *data* within the limits and scrubbed; unchanged (same object) when it already was."""
        if not self.needs_walk(data) and not self.may_hold_secret(data):
            return data
        return self.rewrite(orjson.loads(data))

    def rewrite(self, value: Any, max_string_length: int | None = None) -> bytes:
        """Walk *value* with the limits (optionally a smaller string limit) and encode it."""
        limits = self.limits
        if max_string_length is not None:
            limits = dataclasses.replace(limits, max_string_length=max_string_length)
        walker = _Walker(limits, self._keys)
        return orjson.dumps(walker.walk(value, 0), option=_DUMP_OPTIONS)

    def sanitize(self, value: Any) -> Any:
        """A JSON-safe copy of *value* within the limits, scrubbed (for values set directly)."""
        return _Walker(self.limits, self._keys).walk(value, 0)
