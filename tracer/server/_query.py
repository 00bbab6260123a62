"""HoneyHive's event queries: the ``filters`` / ``dateRange`` / ``projections`` / paging of
``POST /events/export`` and ``POST /v1/events/export`` (and ``GET /events``), checked and applied
to wire-shape events. No web framework here.

A filter is ``{"field", "operator", "value", "type"}``; ``field`` is a dotted path into the event
(``metadata.cost``, ``inputs.chat_history.0.content``); operators: ``is``, ``is not``, ``exists``,
``not exists``, ``contains``, ``not contains``, ``greater than``, ``less than``, ``after``,
``before``; ``type``: ``string`` (default), ``number``, ``boolean``, ``datetime`` (ISO 8601 or
epoch milliseconds), ``id`` (a string).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson

from ._wire import BadRequest

__all__ = ["MAX_LIMIT", "EventQuery", "parse_export", "parse_filters"]

MAX_LIMIT: Final = 7500  # HoneyHive's page cap
_DEFAULT_LIMIT: Final = 1000
_MAX_PAGE: Final = 1_000_000
_OPERATORS: Final = (
    "is",
    "is not",
    "exists",
    "not exists",
    "contains",
    "not contains",
    "greater than",
    "less than",
    "after",
    "before",
)
_ALIASES: Final = {"=": "is", "==": "is", "!=": "is not", ">": "greater than", "<": "less than"}
_TYPES: Final = ("string", "number", "boolean", "datetime", "id")
#: Fields the store indexes: an ``is`` filter on one of them is answered by SQL.
INDEXED: Final = frozenset({"session_id", "event_id", "event_type", "event_name", "parent_id"})

_MISSING: Final = object()


@dataclasses.dataclass(frozen=True)
class Filter:
    path: tuple[str, ...]
    operator: str
    value: Any  # coerced to the filter's type (None for exists / not exists)
    kind: str

    def matches(self, event: Mapping[str, Any]) -> bool:
        found = _lookup(event, self.path)
        if self.operator == "exists":
            return found is not _MISSING and found is not None
        if self.operator == "not exists":
            return found is _MISSING or found is None
        if self.operator in ("is not", "not contains"):
            return not _compare(_POSITIVE[self.operator], found, self.value, self.kind)
        return _compare(self.operator, found, self.value, self.kind)


_POSITIVE: Final = {"is not": "is", "not contains": "contains"}


@dataclasses.dataclass(frozen=True)
class EventQuery:
    """A checked query: which events, which fields of them, which page."""

    filters: tuple[Filter, ...] = ()
    start_after: float | None = None  # dateRange $gte, epoch ms
    start_before: float | None = None  # dateRange $lte, epoch ms
    projections: tuple[tuple[str, ...], ...] = ()
    limit: int = _DEFAULT_LIMIT
    page: int = 1

    def indexed(self) -> dict[str, str]:
        """The ``is`` filters the store can answer by itself (column = string)."""
        return {
            f.path[0]: f.value
            for f in self.filters
            if f.operator == "is" and len(f.path) == 1 and f.path[0] in INDEXED and isinstance(f.value, str)
        }

    def matches(self, event: Mapping[str, Any]) -> bool:
        start = event.get("start_time")
        if self.start_after is not None or self.start_before is not None:
            if not isinstance(start, (int, float)) or isinstance(start, bool):
                return False
            if self.start_after is not None and start < self.start_after:
                return False
            if self.start_before is not None and start > self.start_before:
                return False
        return all(f.matches(event) for f in self.filters)

    def project(self, event: dict[str, Any]) -> dict[str, Any]:
        if not self.projections:
            return event
        shown: dict[str, Any] = {}
        for path in self.projections:
            found = _lookup(event, path)
            if found is _MISSING:
                continue
            target = shown
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = found
        return shown


def _lookup(value: Any, path: Sequence[str]) -> Any:
    for key in path:
        if isinstance(value, Mapping):
            value = value.get(key, _MISSING)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _as_ms(value: Any) -> float | None:
    """Epoch milliseconds from a number or an ISO 8601 text (``Z`` accepted)."""
    number = _as_number(value)
    if number is not None:
        return number
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp() * 1000


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)


def _compare(operator: str, found: Any, wanted: Any, kind: str) -> bool:
    if found is _MISSING or found is None:
        return False
    if operator == "contains":
        if isinstance(found, list):
            return any(_as_text(item) == wanted or wanted in _as_text(item) for item in found)
        return str(wanted) in _as_text(found)
    convert: Callable[[Any], Any]
    if kind == "number":
        convert = _as_number
    elif kind == "datetime" or operator in ("after", "before"):
        convert = _as_ms
    elif kind == "boolean":
        convert = lambda v: v if isinstance(v, bool) else {"true": True, "false": False}.get(str(v).lower())  # noqa: E731
    else:
        convert = _as_text
    have = convert(found)
    if have is None:
        return False
    if operator == "is":
        return bool(have == wanted)
    if operator in ("greater than", "after"):
        return bool(have > wanted)
    return bool(have < wanted)  # less than, before


def _coerce(value: Any, kind: str, operator: str, where: str) -> Any:
    if operator in ("exists", "not exists"):
        return None
    if operator == "contains" or operator == "not contains":
        return _as_text(value)
    if kind == "number" or (kind == "string" and operator in ("greater than", "less than")):
        number = _as_number(value)
        if number is None:
            raise BadRequest(f"{where}.value must be a number for {operator!r}, got {value!r}")
        return number
    if kind == "datetime" or operator in ("after", "before"):
        moment = _as_ms(value)
        if moment is None:
            raise BadRequest(f"{where}.value must be an ISO 8601 time or epoch milliseconds, got {value!r}")
        return moment
    if kind == "boolean":
        flag = value if isinstance(value, bool) else {"true": True, "false": False}.get(str(value).lower())
        if flag is None:
            raise BadRequest(f"{where}.value must be true or false, got {value!r}")
        return flag
    if value is None:
        raise BadRequest(f"{where}.value is required for {operator!r}")
    return _as_text(value)


def parse_filters(raw: Any, where: str = "filters") -> tuple[Filter, ...]:
    """HoneyHive's filters: an array (or one object, or its JSON text) of ``{field, operator, value, type}``."""
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest(f"{where} must be a JSON array of {{field, operator, value}}") from None
    if raw is None:
        return ()
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise BadRequest(f"{where} must be an array of {{field, operator, value}}")
    result = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{here} must be an object")
        field = item.get("field")
        if not isinstance(field, str) or not field.strip():
            raise BadRequest(f"{here}.field must be a non-empty string")
        operator = item.get("operator") or "is"
        operator = _ALIASES.get(operator, operator)
        if operator not in _OPERATORS:
            raise BadRequest(f"{here}.operator {operator!r} is not one of: {', '.join(_OPERATORS)}")
        kind = item.get("type") or "string"
        if kind not in _TYPES:
            raise BadRequest(f"{here}.type {kind!r} is not one of: {', '.join(_TYPES)}")
        value = _coerce(item.get("value"), kind, operator, here)
        result.append(Filter(tuple(field.strip().split(".")), operator, value, kind))
    return tuple(result)


def _whole(value: Any, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadRequest(f"{name} must be a whole number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise BadRequest(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value!r}")
    return int(value)


def parse_export(body: Any) -> EventQuery:
    """The body of ``POST /events/export`` / ``/v1/events/export``. ``project`` is accepted and not
    used: a local store holds what its clients sent, whatever their project."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    filters = parse_filters(body.get("filters"))
    start_after = start_before = None
    date_range = body.get("dateRange", body.get("date_range"))
    if date_range is not None:
        if not isinstance(date_range, dict):
            raise BadRequest("dateRange must be an object {$gte, $lte}")
        for key in ("$gte", "$lte"):
            if date_range.get(key) is not None and _as_ms(date_range[key]) is None:
                raise BadRequest(f"dateRange.{key} must be an ISO 8601 time, got {date_range[key]!r}")
        start_after = _as_ms(date_range.get("$gte")) if date_range.get("$gte") is not None else None
        start_before = _as_ms(date_range.get("$lte")) if date_range.get("$lte") is not None else None
    projections = body.get("projections") or []
    if not isinstance(projections, list) or not all(isinstance(p, str) and p.strip() for p in projections):
        raise BadRequest("projections must be an array of field names")
    return EventQuery(
        filters=filters,
        start_after=start_after,
        start_before=start_before,
        projections=tuple(tuple(p.strip().split(".")) for p in projections),
        limit=_whole(body.get("limit"), "limit", _DEFAULT_LIMIT, 1, MAX_LIMIT),
        page=_whole(body.get("page"), "page", 1, 1, _MAX_PAGE),
    )
