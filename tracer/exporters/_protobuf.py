"""Protobuf's wire format by hand, for the OTLP trace messages: varints, tags, length-delimited
fields, and OTLP's ``AnyValue`` / ``KeyValue`` (the attribute values).

Written by hand rather than through the ``opentelemetry-proto`` message classes because a batch is
encoded on the delivery worker once per request, and building one upb message per span and
attribute cost about 9 µs per event (with the dicts it is built from, 20 µs of the worker's time
per event; ``bench/throughput.py --variants tracer-otlp``). Joining pieces of bytes, most of them
cached, costs a fraction of that.

Field numbers and types are opentelemetry-proto's (``opentelemetry/proto/trace/v1/trace.proto``,
``common/v1/common.proto``, ``resource/v1/resource.proto``, ``collector/trace/v1/trace_service.proto``):
the tests decode what is written here with the official classes. A field is written when proto3
would write it: scalars other than their default, messages once set, and the one ``AnyValue`` field
that is set even when it holds its default (``oneof``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = [
    "any_value",
    "attributes",
    "key_field",
    "key_value",
    "length_delimited",
    "string_attribute",
    "varint",
]

# How a string over the length limit is cut (``_otlp_codec.truncate_text``).
Truncate = Callable[[str, int], str]

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_U64: Final = 2**64 - 1

# Varints of the lengths most fields have (a table lookup instead of a loop per field).
_SMALL_VARINTS: Final = tuple(bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7]) for n in range(1 << 14))
_DOUBLE: Final = struct.Struct("<d")

# Tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
TAG_ANY_STRING: Final = b"\x0a"  # AnyValue.string_value = 1
TAG_ANY_BOOL: Final = b"\x10"  # AnyValue.bool_value = 2
TAG_ANY_INT: Final = b"\x18"  # AnyValue.int_value = 3 (int64)
TAG_ANY_DOUBLE: Final = b"\x21"  # AnyValue.double_value = 4
TAG_ANY_ARRAY: Final = b"\x2a"  # AnyValue.array_value = 5
TAG_ANY_KVLIST: Final = b"\x32"  # AnyValue.kvlist_value = 6
TAG_KEY: Final = b"\x0a"  # KeyValue.key = 1
TAG_VALUE: Final = b"\x12"  # KeyValue.value = 2
TAG_VALUES: Final = b"\x0a"  # ArrayValue.values = 1, KeyValueList.values = 1


def varint(value: int) -> bytes:
    """*value* as a base-128 varint (a negative int64 as its 64-bit two's complement: 10 bytes)."""
    if 0 <= value < 16384:
        return _SMALL_VARINTS[value]
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: *tag*, the length of *payload*, *payload*."""
    size = len(payload)
    return b"%b%b%b" % (tag, _SMALL_VARINTS[size] if size < 16384 else varint(size), payload)


def key_field(key: str) -> bytes:
    """The ``key`` field of a ``KeyValue`` (cache it: keys repeat)."""
    return length_delimited(TAG_KEY, key.encode()) if key else b""


def string_attribute(tag: bytes, key: bytes, text: bytes) -> bytes:
    """A ``KeyValue`` field (*tag*) whose value is the string *text* (UTF-8); *key* from ``key_field``."""
    size = len(text)
    value = b"\x0a%b%b" % (_SMALL_VARINTS[size] if size < 16384 else varint(size), text)
    size = len(value)
    pair = b"%b\x12%b%b" % (key, _SMALL_VARINTS[size] if size < 16384 else varint(size), value)
    size = len(pair)
    return b"%b%b%b" % (tag, _SMALL_VARINTS[size] if size < 16384 else varint(size), pair)


def any_value(value: Any, max_length: int, truncate: Truncate) -> bytes:
    """An ``AnyValue`` message's contents for a Python value (strings longer than *max_length*
    characters cut by *truncate*): what ``_otlp_codec`` has always sent for each type."""
    if type(value) is str:
        if len(value) > max_length:
            value = truncate(value, max_length)
        return length_delimited(TAG_ANY_STRING, value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if _I64_MIN <= value <= _I64_MAX:
            return TAG_ANY_INT + varint(value)
        return length_delimited(TAG_ANY_STRING, str(value).encode())
    if isinstance(value, float):
        return TAG_ANY_DOUBLE + _DOUBLE.pack(value)
    if isinstance(value, str):
        return length_delimited(TAG_ANY_STRING, truncate(value, max_length).encode())
    if isinstance(value, (list, tuple)):
        items = b"".join(length_delimited(TAG_VALUES, any_value(item, max_length, truncate)) for item in value)
        return length_delimited(TAG_ANY_ARRAY, items)
    if isinstance(value, dict):
        pairs = b"".join(
            length_delimited(TAG_VALUES, key_value(str(key), item, max_length, truncate)) for key, item in value.items()
        )
        return length_delimited(TAG_ANY_KVLIST, pairs)
    return length_delimited(TAG_ANY_STRING, truncate(str(value), max_length).encode())


def key_value(key: str, value: Any, max_length: int, truncate: Truncate) -> bytes:
    """A ``KeyValue`` message's contents."""
    return key_field(key) + length_delimited(TAG_VALUE, any_value(value, max_length, truncate))


def attributes(tag: bytes, values: Mapping[str, Any], max_length: int, truncate: Truncate) -> bytes:
    """Repeated ``KeyValue`` fields (*tag*) for *values*, None values left out."""
    return b"".join(
        length_delimited(tag, key_value(key, value, max_length, truncate))
        for key, value in values.items()
        if value is not None
    )
