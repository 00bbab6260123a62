"""Event and session ids: random 128-bit ints on the hot path, UUID4 strings on the wire."""

from __future__ import annotations

import random
import uuid

__all__ = ["ID_CLEAR_BITS", "ID_SET_BITS", "format_id", "new_id", "parse_uuid"]

# Set the UUID version (4) and variant (RFC 4122) bits, so formatted ids are valid UUID4s.
ID_CLEAR_BITS = ~((0xF << 76) | (0x3 << 62))
ID_SET_BITS = (0x4 << 76) | (0x2 << 62)

# random.getrandbits is ~20x cheaper than uuid.uuid4() (which reads os.urandom); ids need to be
# unique, not unpredictable. The random module reseeds itself in a forked child.
_getrandbits = random.getrandbits


def new_id() -> int:
    """A new random id as an int (formatted lazily, off the hot path)."""
    return (_getrandbits(128) & ID_CLEAR_BITS) | ID_SET_BITS


def format_id(value: int) -> str:
    """The canonical lower-case UUID string of an id."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_uuid(value: object, setting: str) -> str:
    """Validate a user-supplied id and return it in canonical form; ValueError names *setting*."""
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{setting} must be a UUID string, got {value!r}") from None
