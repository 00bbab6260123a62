"""Turning what users hand us into event fields: buckets (JSON objects) and error text.

Everything here runs on the calling thread and never raises: a user's mapping that cannot be
read, an exception whose ``str()`` raises, a traceback that cannot be formatted each become a
clear marker instead (see the README's *Capture safety*).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any, Final

from ._errors import warn_once

__all__ = [
    "UNPRINTABLE",
    "UNREADABLE_KEY",
    "as_fields",
    "describe_error",
    "format_traceback",
    "merge_fields",
    "safe_str",
]

# What a bucket records when the user's mapping cannot be read (its keys()/items()/iteration
# raised): the type name under this key, and a warning logged once.
UNREADABLE_KEY: Final = "<unreadable>"
# The message recorded for an exception whose str() raises (or returns a non-str):
# "TypeName: <str() raised InnerError>". Python's own traceback says "<exception str() failed>".
UNPRINTABLE: Final = "<str() raised {}>"


def as_fields(value: Any, field: str, wrap_key: str = "value") -> dict[str, Any]:
    """*value* as the content of a bucket (a JSON object); never raises.

    A dict is returned as is (callers copy or merge it); any other mapping is copied; anything
    else is wrapped as ``{wrap_key: value}``. A mapping that cannot be read (its ``keys()``,
    ``__getitem__`` or iteration raises) becomes ``{"<unreadable>": "TypeName"}``, logged once.
    """
    if type(value) is dict:
        return value
    try:
        if isinstance(value, Mapping) or hasattr(type(value), "keys"):
            return dict(value)
    except Exception as exc:
        name = _type_name(value)
        warn_once(
            f"unreadable:{field}:{name}",
            "tracer: %s given as %s could not be read (%r); recorded as {%r: %r} (logged once)",
            field,
            name,
            exc,
            UNREADABLE_KEY,
            name,
        )
        return {UNREADABLE_KEY: name}
    return {wrap_key: value}


def merge_fields(target: dict[str, Any] | None, update: Any, field: str, wrap_key: str = "value") -> dict[str, Any]:
    """Shallow-merge *update* into a bucket (see ``as_fields`` for non-dicts); never raises."""
    if type(update) is not dict:
        update = as_fields(update, field, wrap_key)
    if target is None:
        return dict(update)
    try:
        target.update(update)
    except Exception:  # a dict subclass as *target* whose update() raises: start afresh
        return dict(update)
    return target


def _type_name(value: object) -> str:
    try:
        return type(value).__name__
    except Exception:  # pragma: no cover - a metaclass whose __name__ raises
        return "object"


def _plain_str(value: object) -> str:
    """``str(value)`` as an exact ``str`` (raises what the user's ``__str__`` raises)."""
    text = str(value)
    # A str subclass (str() returns it as is) would run the user's methods later on.
    return text if type(text) is str else str.__str__(text)


def safe_str(value: object) -> str:
    """``str(value)``, or ``"TypeName: <str() raised InnerError>"`` when that raises; never raises."""
    try:
        return _plain_str(value)
    except Exception as exc:
        return f"{_type_name(value)}: {UNPRINTABLE.format(_type_name(exc))}"


def describe_error(error: object, max_chars: int = 32768) -> str:
    """The ``error`` field: ``"TypeName: message"`` for an exception (``"TypeName"`` without a
    message), ``str(error)`` for anything else; never raises.

    When ``str()`` raises (or returns a non-str) the message is ``"<str() raised InnerError>"``,
    after the type name, exception or not. A message over *max_chars* keeps its head and states
    its length (the worker would cut it anyway; this keeps it from filling the queue).
    """
    try:
        message = _plain_str(error)
    except Exception as exc:
        return f"{_type_name(error)}: {UNPRINTABLE.format(_type_name(exc))}"
    if len(message) > max_chars:
        message = f"{message[:max_chars]}…[truncated: {len(message)} chars in total]"
    if not isinstance(error, BaseException):
        return message
    name = _type_name(error)
    return f"{name}: {message}" if message else name


def format_traceback(error: BaseException) -> str | None:
    """The formatted traceback of *error*, or None; never raises (the traceback module calls
    ``str()`` and ``repr()`` on the user's exceptions, their causes and notes)."""
    if error.__traceback__ is None:
        return None
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception as exc:
        warn_once(
            f"traceback:{_type_name(error)}",
            "tracer: the traceback of a %s could not be formatted (%r); not recorded (logged once)",
            _type_name(error),
            exc,
        )
        return None
