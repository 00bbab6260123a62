"""Turning arbitrary user values into bounded, scrubbed JSON objects.

Capture happens in two steps so that the traced call pays as little as possible:

1. ``snapshot()`` runs on the calling thread when a span ends, so that later mutation of the
   user's objects changes nothing. Ordinary values take one ``orjson.dumps`` call *without* a
   ``default=`` hook: no Python code runs during orjson's walk, so no other thread and no
   conversion hook can change a container under it (with a hook, a list shrinking mid-walk made
   orjson read freed memory: SIGSEGV, the bug class of python-rapidjson #238 and CPython
   gh-145244). Anything orjson cannot encode exactly (another type, a non-str key, a lone
   surrogate, an int beyond 53 bits, a NaN, a cycle) takes ``Converter``: a pure-Python walk that
   copies each container first and builds a fresh JSON-safe structure, which orjson then encodes.
   Both paths record every value the same way (the README's table); ``_FAST_SAFE`` lists what
   orjson encodes exactly as the converter would.
2. ``Sanitizer.finalize()`` runs on the background thread: it applies the size, depth and breadth
   limits and the secret scrubbing, decoding and re-encoding only the fields that need it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as _dt
import decimal
import enum
import fractions
import ipaddress
import itertools
import math
import pathlib
import re
import types
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson

from ._scrub import REDACTED, Scrubber

__all__ = [
    "CIRCULAR",
    "COPY_BELOW",
    "DUMPS_OPTIONS",
    "NO_FIELDS",
    "REDACTED",
    "Converter",
    "Limits",
    "Sanitizer",
    "checked_io",
    "safe_repr",
    "safe_str",
    "snapshot",
    "snapshot_io",
]

CIRCULAR: Final = "<circular>"
MAX_DEPTH_MARKER: Final = "<max depth reached>"
MORE_KEY: Final = "…"  # the key under which a cut mapping says how many items were left out
_REPR_LIMIT: Final = 1000
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1

_dumps = orjson.dumps
# Dataclasses go to the converter (it leaves out ``repr=False`` fields, orjson would not); ints past
# 53 bits too (it keeps those within 64 bits as numbers and writes larger ones as strings).
_FAST_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_STRICT_INTEGER
_SMALL: Final = 400  # bytes: a copy fits Python's small-object allocator (objects up to 512 bytes)
_MORE_ITEMS = re.compile(r"<(\d+) more items>")
_SURROGATES = re.compile("[\ud800-\udfff]")


def _copy(data: bytes) -> bytes:
    return b"%b" % data  # a new, exactly sized bytes object (the cheapest copy measured)


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Capture limits; every field is a user setting (see the README's configuration table)."""

    max_string_length: int = 32 * 1024
    max_depth: int = 10
    max_items: int = 1000
    max_event_bytes: int = 1024 * 1024
    scrub: bool = True
    scrub_keys: tuple[str, ...] = ()
    scrub_patterns: tuple[str, ...] = ()


DEFAULT_LIMITS: Final = Limits()


def safe_repr(value: object) -> str:
    """``repr()`` that never raises and never returns more than ~1,000 characters."""
    try:
        text = repr(value)
    except Exception:  # a user __repr__ may raise anything
        return f"<unrepresentable {_type_name(value)} object>"
    if type(text) is not str:  # pragma: no cover - repr() enforces str
        return f"<unrepresentable {_type_name(value)} object>"
    if len(text) > _REPR_LIMIT:
        text = text[:_REPR_LIMIT] + "…"
    return _clean_text(text)


def safe_str(value: object) -> str:
    """``str()`` that never raises (a marker instead), for exception messages and such."""
    try:
        text = str(value)
    except Exception:
        return f"<unprintable {_type_name(value)}>"
    if type(text) is not str:
        return f"<unprintable {_type_name(value)}>"
    return _clean_text(text)


def _type_name(value: object) -> str:
    try:
        name = type(value).__qualname__
    except Exception:  # pragma: no cover - a metaclass could make even this fail
        return "object"
    return name if isinstance(name, str) else "object"


def _clean_text(text: str) -> str:
    """*text* as valid UTF-8: lone surrogates (never valid alone) become U+FFFD, which marks them."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def _number(value: float) -> float | str:
    """Finite floats within the signed 64-bit range as numbers; others as strings a backend can store."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    if -9.223372036854776e18 < value < 9.223372036854776e18:
        return value
    return repr(value)


# -- the calling thread ------------------------------------------------------------------------


def snapshot(value: Any, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Serialize *value* now (on the calling thread); never raises.

    The bytes are JSON; string limits and scrubbing are applied later by ``Sanitizer.finalize``.
    """
    try:
        data = _dumps(value, None, _FAST_OPTIONS)
    except Exception:  # another type, non-str keys, >53-bit ints, lone surrogates, cycles...
        return _converted(value, limits)
    # orjson writes NaN and infinities as null: only where a null is can one be hiding. (find(), not
    # `in`: bytes.__contains__ first tries its argument as an int, and that failed try costs more.)
    if data.find(b"null") >= 0 and _has_non_finite(value):
        return _converted(value, limits)
    if len(data) <= _SMALL:
        # orjson writes into a ~1 KiB malloc'd buffer and shrinks it; thousands of those shrunken
        # buffers waiting in the queue fragment the C heap and made each dumps() ~4x slower here.
        # A copy this small comes from Python's own small-object allocator instead.
        return _copy(data)
    return data


# For callers that inline snapshot_io's first step (Span.end: a call less is 0.15 µs per span):
# orjson.dumps(..., None, DUMPS_OPTIONS) of {"inputs": …, "outputs": …} with NO_FIELDS for an unset
# bucket; then, unless it raised, checked_io() (or, when it holds no "null" and is at most
# COPY_BELOW bytes, a copy: see _copy).
DUMPS_OPTIONS: Final = _FAST_OPTIONS
NO_FIELDS: Final[dict[str, Any]] = {}  # never mutated: stands for an unset bucket
COPY_BELOW: Final = _SMALL


def snapshot_io(
    inputs: dict[str, Any] | None, outputs: dict[str, Any] | None, limits: Limits = DEFAULT_LIMITS
) -> bytes:
    """``{"inputs": …, "outputs": …}`` serialized now (on the calling thread); never raises.

    A span's two usual buckets go in one ``orjson.dumps`` call, one NaN check and one copy: half
    the calls of two ``snapshot()`` calls, about 0.25 µs per span measured with bench/overhead.py.
    The buckets must be plain dicts (``Span`` only ever holds those) or None (written as ``{}``).
    ``Sanitizer.finalize_io`` and the encoder (which splices the inside of the object into the
    event) read this shape.
    """
    try:
        data = _dumps(
            {"inputs": NO_FIELDS if inputs is None else inputs, "outputs": NO_FIELDS if outputs is None else outputs},
            None,
            _FAST_OPTIONS,
        )
    except Exception:  # see snapshot()
        return _converted_io(inputs, outputs, limits)
    return checked_io(data, inputs, outputs, limits)


def checked_io(data: bytes, inputs: Any, outputs: Any, limits: Limits) -> bytes:
    """The rest of ``snapshot_io`` once orjson has encoded the buckets into *data* without error."""
    if data.find(b"null") >= 0 and (_has_non_finite(inputs) or _has_non_finite(outputs)):
        return _converted_io(inputs, outputs, limits)
    if len(data) <= _SMALL:
        return _copy(data)  # see snapshot()
    return data


def _converted_io(inputs: Any, outputs: Any, limits: Limits) -> bytes:
    return b'{"inputs":%b,"outputs":%b}' % (
        b"{}" if inputs is None else _converted(inputs, limits),
        b"{}" if outputs is None else _converted(outputs, limits),
    )


_CONTAINERS: Final = frozenset({dict, list, tuple})
# What orjson encodes exactly as the converter would, besides the containers and floats.
_SCALARS: Final = frozenset({str, int, bool, type(None), uuid.UUID, _dt.datetime, _dt.date, _dt.time})
_PLAIN: Final = _SCALARS | _CONTAINERS


def _has_non_finite(value: Any) -> bool:
    """True if *value* (which orjson encoded without complaint) may hold a NaN or an infinity.

    Runs only when the JSON has a null. The set of item types is built in C, so a flat mapping of
    strings, ints and None (the usual inputs) costs one set; floats are summed (a NaN or an
    infinity makes the sum non-finite); only containers are looked into. Anything unusual (an
    enum, a subclass) answers True, and the converter decides.
    """
    try:
        kind = type(value)
        if kind is dict:
            items: Any = value.values()
        elif kind is list or kind is tuple:
            items = value
        elif kind is float:
            return not math.isfinite(value)
        else:  # subclasses and enums are rare: let the converter look at them
            return isinstance(value, (dict, list, tuple, float, enum.Enum))
        kinds = set(map(type, items))
        if kinds <= _SCALARS:
            return False
        if float in kinds:
            if not math.isfinite(sum([item for item in items if type(item) is float])):
                return True  # (or finite floats whose sum overflows: the converter keeps those as they are)
            kinds.discard(float)
        if not kinds <= _PLAIN:
            return True
        return not kinds <= _SCALARS and any(
            map(_has_non_finite, [item for item in items if type(item) in _CONTAINERS])
        )
    except Exception:  # changed by another thread while we looked
        return True


def _converted(value: Any, limits: Limits) -> bytes:
    converter = Converter(limits.max_depth + 2, limits.max_items)
    try:
        return orjson.dumps(converter.convert(value, 0))
    except Exception:  # pragma: no cover - the converter only returns JSON-safe values
        return orjson.dumps(f"<unrepresentable {_type_name(value)} object>")


class Converter:
    """Pure-Python walk that turns any value into a fresh JSON-safe structure (see the README table).

    Every container is copied (``list(...)``) before its items are looked at, and the result
    holds only new dicts and lists, so what the user's threads or hooks do meanwhile cannot
    reach the encoder. Each value is converted once; a failing conversion becomes a marker in
    its place, never a repr of the container around it. Depth and breadth are cut at the limits
    with the same markers ``Sanitizer`` uses; strings are kept whole (``finalize`` cuts them).
    """

    __slots__ = ("_max_depth", "_max_items", "_seen")

    def __init__(self, max_depth: int, max_items: int) -> None:
        self._max_depth = max_depth
        self._max_items = max_items
        self._seen: set[int] = set()

    def convert(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return _clean_text(value)
        if value is None or kind is bool:
            return value
        if kind is int:
            return value if _I64_MIN <= value <= _I64_MAX else _big_int_text(value)
        if kind is float:
            return _number(value)
        if kind is dict:
            return self._guarded(value, depth, self._mapping)
        if kind is list or kind is tuple:
            return self._guarded(value, depth, self._sequence)
        try:
            return self._other(value, depth)
        except Exception:
            return f"<unrepresentable {_type_name(value)} object>"

    def _guarded(self, value: Any, depth: int, convert: Callable[[Any, int], Any]) -> Any:
        """*convert* a container, with cycle and depth checks."""
        key = id(value)
        if key in self._seen:
            return CIRCULAR
        if depth >= self._max_depth:
            return MAX_DEPTH_MARKER
        self._seen.add(key)
        try:
            return convert(value, depth)
        except Exception:
            return f"<unrepresentable {_type_name(value)} object>"
        finally:
            self._seen.discard(key)

    def _mapping(self, value: Any, depth: int) -> dict[str, Any]:
        cap = self._max_items
        if type(value) is dict:
            items = list(itertools.islice(value.items(), cap + 1))  # in C: atomic for another thread
        else:
            items = list(itertools.islice(iter(value.items()), cap + 1))
        out: dict[str, Any] = {}
        for index, pair in enumerate(items):
            if index == cap:
                out[MORE_KEY] = f"<{_remaining(value, cap)} more items>"
                break
            raw_key, item = pair
            name = raw_key if type(raw_key) is str and raw_key.isascii() else self._key_text(raw_key)
            if name in out:  # 2 next to "2": keep both
                name = _free_key(out, name)
            out[name] = self.convert(item, depth + 1)
        return out

    def _sequence(self, value: Any, depth: int) -> list[Any]:
        cap = self._max_items
        if type(value) is list or type(value) is tuple:
            items = list(value[: cap + 1])
        else:
            items = list(itertools.islice(iter(value), cap + 1))
        convert = self.convert
        out = [convert(item, depth + 1) for item in items[:cap]]
        if len(items) > cap:
            out.append(f"<{_remaining(value, cap)} more items>")
        return out

    def _key_text(self, key: Any) -> str:
        if isinstance(key, str):
            return _clean_text(str.__str__(key))
        if isinstance(key, enum.Enum):
            key = key.value
        if key is None:
            return "null"
        if isinstance(key, bool):
            return "true" if key else "false"
        if isinstance(key, (int, float, uuid.UUID, decimal.Decimal)):
            return str(key)
        if isinstance(key, (_dt.datetime, _dt.date, _dt.time)):
            return key.isoformat()
        return safe_repr(key)

    def _tracked(self, owner: object, converted: Any, depth: int) -> Any:
        # A converted object (model, dataclass) can contain its owner again: guard it like a container.
        key = id(owner)
        if key in self._seen:
            return CIRCULAR
        self._seen.add(key)
        try:
            return self.convert(converted, depth)
        finally:
            self._seen.discard(key)

    def _other(self, value: Any, depth: int) -> Any:
        """Everything but the exact JSON types; the order is the README's table."""
        if isinstance(value, enum.Enum):
            return self._tracked(value, value.value, depth)
        if isinstance(value, str):
            return _clean_text(str.__str__(value))
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            number = int.__index__(value)
            return number if _I64_MIN <= number <= _I64_MAX else _big_int_text(number)
        if isinstance(value, float):
            return _number(float.__float__(value))
        if isinstance(value, collections.abc.Mapping):
            return self._guarded(value, depth, self._mapping)
        if isinstance(value, (list, tuple, collections.abc.Set, collections.abc.Sequence, collections.abc.KeysView)):
            if isinstance(value, (bytes, bytearray)):
                return _bytes_text(value)
            return self._guarded(value, depth, self._sequence)
        if isinstance(value, (collections.abc.ValuesView, collections.abc.ItemsView)):
            return self._guarded(value, depth, self._sequence)
        if isinstance(value, _dt.datetime | _dt.date | _dt.time):
            return value.isoformat()
        if isinstance(value, _dt.timedelta):
            return value.total_seconds()
        if isinstance(value, (uuid.UUID, decimal.Decimal, fractions.Fraction, complex, pathlib.PurePath)):
            return str(value)
        if isinstance(value, _IP_TYPES):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return _bytes_text(value)
        if isinstance(value, BaseException):
            return _exception_text(value)
        if isinstance(value, re.Pattern):
            return _clean_text(str(value.pattern))
        if isinstance(value, _NEVER_CONSUMED):
            return safe_repr(value)  # never consume or await the user's iterator
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value) if f.repr}
            return self._tracked(value, fields, depth)
        if isinstance(value, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            return safe_repr(value)
        cls = type(value)
        attrs_fields = getattr(cls, "__attrs_attrs__", None)  # attrs classes
        if attrs_fields is not None:
            fields = {a.name: getattr(value, a.name, None) for a in attrs_fields if a.repr is not False}
            return self._tracked(value, fields, depth)
        if getattr(cls, "__module__", "").partition(".")[0] == "numpy":  # without importing numpy
            return self._numpy(value, depth)
        if getattr(cls, "__pydantic_serializer__", None) is not None and callable(getattr(cls, "model_dump", None)):
            # Pydantic v2: JSON mode turns URLs, datetimes and such into strings and keeps SecretStr masked.
            return self._tracked(value, value.model_dump(mode="json"), depth)
        for method in ("model_dump", "to_dict", "dict"):
            dump = getattr(cls, method, None)
            if callable(dump):
                return self._tracked(value, getattr(value, method)(), depth)
        public = _public_attributes(value)
        if public:
            return self._tracked(value, public, depth)
        return safe_repr(value)

    def _numpy(self, value: Any, depth: int) -> Any:
        if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
            return self.convert(value.item(), depth)
        size = getattr(value, "size", None)
        if isinstance(size, int) and size > 100_000:
            return f"<ndarray shape={getattr(value, 'shape', '?')} dtype={getattr(value, 'dtype', '?')}>"
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            return self._tracked(value, tolist(), depth)
        return safe_repr(value)


_IP_TYPES: Final = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)
_NEVER_CONSUMED: Final = (
    collections.abc.Iterator,
    collections.abc.AsyncIterator,
    collections.abc.Awaitable,
    types.GeneratorType,
    types.AsyncGeneratorType,
    types.CoroutineType,
)


def _remaining(value: Any, cap: int) -> int | str:
    try:
        return len(value) - cap
    except Exception:  # an iterable without a length
        return "more than 0"


def _big_int_text(value: int) -> str:
    """An int beyond 64 bits as its digits (backends store 64-bit integers at most)."""
    try:
        return str(value)
    except ValueError:  # over sys.get_int_max_str_digits() digits: converting would take quadratic time
        return f"<int of {value.bit_length()} bits>"


def _free_key(out: dict[str, Any], name: str) -> str:
    """*name* with the first free suffix `` (2)``, `` (3)``…: keys equal once converted are all kept."""
    for number in itertools.count(2):
        candidate = f"{name} ({number})"
        if candidate not in out:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def _bytes_text(value: bytes | bytearray | memoryview) -> str:
    raw = bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes>"


def _exception_text(exc: BaseException) -> str:
    message = safe_str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _public_attributes(value: Any) -> dict[str, Any] | None:
    """An object's public attributes (instance ``__dict__`` and ``__slots__``), or None if it has none."""
    found: dict[str, Any] = {}
    try:
        namespace = object.__getattribute__(value, "__dict__")
    except AttributeError:
        namespace = None
    if isinstance(namespace, dict):
        found.update((key, item) for key, item in list(namespace.items()) if isinstance(key, str) and key[:1] != "_")
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if isinstance(name, str) and name[:1] != "_" and name not in found:
                try:
                    found[name] = object.__getattribute__(value, name)
                except AttributeError:
                    continue
    return found or None


# -- the background thread ---------------------------------------------------------------------


class Sanitizer:
    """Applies limits and scrubbing to snapshot bytes; used on the background thread."""

    __slots__ = ("_cheap_len", "_max_brackets", "_max_items", "_max_string", "_scrubber", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._scrubber = Scrubber(limits.scrub_keys, limits.scrub_patterns) if limits.scrub else None
        self._max_string = limits.max_string_length
        self._max_items = limits.max_items
        self._max_brackets = limits.max_depth
        # Shorter JSON cannot hold an over-long string nor max_items items (2 bytes each at least).
        self._cheap_len = min(limits.max_string_length, 2 * limits.max_items)

    def needs_walk(self, data: bytes) -> bool:
        """True if *data* might break a limit or the wire contract (cheap, conservative byte checks).

        A string over the limit needs that many bytes; a collection of more than max_items items
        needs as many commas; nesting deeper than max_depth needs that many brackets; a float out
        of the 64-bit range is written with an exponent (``e+``); a bucket must be an object.
        """
        size = len(data)
        if size >= self._cheap_len and (size >= self._max_string or data.count(b",") >= self._max_items):
            return True
        return data.count(b"{") + data.count(b"[") > self._max_brackets or data.find(b"e+") >= 0 or data[:1] != b"{"

    def may_hold_secret(self, data: bytes) -> bool:
        """Conservative pre-filter: False means *data* certainly holds no secret key or value."""
        return self._scrubber is not None and self._scrubber.may_hold_secret(data)

    def chunks_with_secret_hints(self, chunks: list[bytes]) -> set[int]:
        """Indexes of *chunks* that may hold a secret: one scan over all of them.

        False positives are fine (``finalize`` decides); a chunk with a secret is never missed.
        """
        if self._scrubber is None or not chunks:
            return set()
        return self._scrubber.hinted(chunks)

    def finalize(self, data: bytes) -> bytes:
        """Return bucket *data* within the limits and scrubbed; unchanged (same object) when it already was."""
        if not self.needs_walk(data) and not self.may_hold_secret(data):
            return data
        return self.rewrite(orjson.loads(data))

    def finalize_io(self, data: bytes) -> bytes:
        """``finalize`` for the output of ``snapshot_io``: both buckets within the limits and scrubbed."""
        if not self.needs_walk(data) and not self.may_hold_secret(data):
            return data
        both = orjson.loads(data)
        return b'{"inputs":%b,"outputs":%b}' % (self.rewrite(both["inputs"]), self.rewrite(both["outputs"]))

    def rewrite(self, value: Any, max_string_length: int | None = None) -> bytes:
        """Limit and scrub a decoded bucket (optionally with a smaller string limit) and encode it."""
        limits = self.limits
        if max_string_length is not None:
            limits = dataclasses.replace(limits, max_string_length=max_string_length)
        result = _Limiter(limits, self._scrubber).walk(value, 0)
        return orjson.dumps(result if isinstance(result, dict) else {"value": result})

    def sanitize(self, value: Any) -> Any:
        """A JSON-safe copy of any *value*, within the limits and scrubbed (for values set directly)."""
        converted = Converter(self.limits.max_depth + 2, self.limits.max_items).convert(value, 0)
        return _Limiter(self.limits, self._scrubber).walk(converted, 0)


class _Limiter:
    """Walk of a decoded JSON value (dicts, lists, str, numbers, bool, None) that applies the limits
    and scrubbing; the one place every recorded value passes before it is sent."""

    __slots__ = ("_limits", "_scrubber")

    def __init__(self, limits: Limits, scrubber: Scrubber | None) -> None:
        self._limits = limits
        self._scrubber = scrubber

    def walk(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return self._string(value)
        if kind is dict or kind is list:
            if depth >= self._limits.max_depth:
                return MAX_DEPTH_MARKER
            return self._mapping(value, depth) if kind is dict else self._sequence(value, depth)
        if kind is float:
            return _number(value)
        if kind is int:
            return value if _I64_MIN <= value <= _I64_MAX else str(value)
        return value

    def _string(self, text: str) -> str:
        limit = self._limits.max_string_length
        if len(text) > limit:
            head = limit // 2
            tail = limit - head
            text = f"{text[:head]}…[truncated: {len(text)} chars in total]…{text[len(text) - tail :]}"
        if self._scrubber is not None:
            text = self._scrubber.scrub_text(text)
        return text

    def _mapping(self, value: dict[str, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        max_items = self._limits.max_items
        scrubber = self._scrubber
        extra: int | str = 0
        for index, (key, item) in enumerate(value.items()):
            if index >= max_items:
                extra = _cut_count(value, max_items, value.get(MORE_KEY))
                break
            if scrubber is not None and scrubber.is_secret_entry(key, value):
                out[key] = REDACTED
            else:
                out[key] = self.walk(item, depth + 1)
        if extra:
            out[MORE_KEY] = f"<{extra} more items>"
        return out

    def _sequence(self, value: list[Any], depth: int) -> list[Any]:
        max_items = self._limits.max_items
        out = [self.walk(item, depth + 1) for item in value[:max_items]]
        if len(value) > max_items:
            out.append(f"<{_cut_count(value, max_items, value[-1])} more items>")
        return out


def _cut_count(value: Sequence[Any] | dict[str, Any], kept: int, last: Any) -> int | str:
    """Items left out when *value* is cut to *kept*, counting those an earlier cut (the capture's,
    whose marker is *last*) already left out."""
    extra = len(value) - kept
    if isinstance(last, str):
        match = _MORE_ITEMS.fullmatch(last)
        if match is not None:
            return extra - 1 + int(match.group(1))
    return extra
