"""HoneyHive's event wire schema, written once: every module that builds, reads or checks events
imports these names instead of spelling the fields out.

Reference: ``POST /events/batch`` (the legacy events API, ../shared/reference/honeyhive-api.md §2-3).
Adding a field means one edit here plus its uses.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BUCKETS",
    "ENRICHABLE",
    "EVENT_FIELDS",
    "EVENT_TYPES",
    "SESSION_TYPE",
    "UPDATE_FIELDS",
    "UPDATE_REPLACED",
]

#: The kinds of event a span records (``session`` is the session's own event, never a span's).
EVENT_TYPES: Final = ("chain", "model", "tool")
SESSION_TYPE: Final = "session"

#: Every event field, in the order the encoder writes them.
EVENT_FIELDS: Final = (
    "project",
    "source",
    "event_name",
    "event_type",
    "event_id",
    "session_id",
    "parent_id",
    "children_ids",
    "config",
    "inputs",
    "outputs",
    "error",
    "start_time",
    "end_time",
    "duration",
    "metadata",
    "feedback",
    "metrics",
    "user_properties",
)

#: The object-valued fields ("buckets"): always JSON objects on the wire, merged key by key.
BUCKETS: Final = ("config", "inputs", "outputs", "metadata", "metrics", "feedback", "user_properties")

#: The buckets a late ``PUT /events`` may change (never ``inputs``: the API refuses it there).
ENRICHABLE: Final = ("config", "outputs", "metadata", "metrics", "feedback", "user_properties")

#: Fields of an update that replace the event's value outright (the buckets are merged).
UPDATE_REPLACED: Final = ("duration", "end_time", "children_ids", "error")

#: Everything a ``PUT /events`` body may hold.
UPDATE_FIELDS: Final = frozenset({"event_id", *ENRICHABLE, "duration", "end_time"})
