"""``ConsoleExporter``: each finished trace as a readable indented tree (on stderr by default)."""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from typing import IO, Any

import orjson

from .._export import Batch, Exporter

__all__ = ["ConsoleExporter", "render_tree"]

_PREVIEW = 60


def _preview(outputs: Any) -> str:
    if not isinstance(outputs, dict) or not outputs:
        return ""
    value = outputs.get("result", outputs)
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


def _line(event: dict[str, Any]) -> str:
    duration = float(event.get("duration") or 0.0)
    shown = f"{duration * 1000:.0f} µs" if duration < 1 else f"{duration:.1f} ms"
    text = f"{event.get('event_type', '?'):<5} {event.get('event_name', '?')}  {shown}"
    if event.get("error"):
        text += f"  ✗ {event['error']}"
    else:
        preview = _preview(event.get("outputs"))
        if preview:
            text += f"  → {preview}"
    return text


def render_tree(events: list[dict[str, Any]], session: dict[str, Any] | None = None) -> str:
    """Render events of one session as an indented tree, children in start order."""
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids = {event["event_id"] for event in events}
    roots: list[dict[str, Any]] = []
    for event in events:
        parent = event.get("parent_id")
        if isinstance(parent, str) and parent in ids:
            children[parent].append(event)
        else:
            roots.append(event)
    lines: list[str] = []
    if session is not None:
        lines.append(f"session {session.get('session_name', '?')} ({session.get('session_id', '?')})")

    def walk(event: dict[str, Any], prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_line(event)}")
        kids = sorted(children.get(event["event_id"], []), key=lambda e: e.get("start_time", 0))
        for index, child in enumerate(kids):
            walk(child, prefix + ("   " if last else "│  "), index == len(kids) - 1)

    roots.sort(key=lambda e: e.get("start_time", 0))
    for index, root in enumerate(roots):
        walk(root, "", index == len(roots) - 1)
    return "\n".join(lines)


class ConsoleExporter(Exporter):
    """Prints a tree when a root event (one whose parent is the session) ends.

    Descendants wait in memory until their root ends; whatever is still waiting at shutdown
    is printed then.
    """

    name = "console"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._sessions: dict[str, dict[str, Any]] = {}

    def _write(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def export(self, batch: Batch) -> bool:
        with self._lock:
            self._sessions.update(batch.sessions)
            for event in batch.events():
                pending = self._pending[event["session_id"]]
                pending.append(event)
                if event["parent_id"] == event["session_id"]:
                    self._emit_root(event, pending)
        return True

    def _emit_root(self, root: dict[str, Any], pending: list[dict[str, Any]]) -> None:
        members = {root["event_id"]}
        tree = [root]
        # Children end before their parents, so every descendant is already pending.
        changed = True
        while changed:
            changed = False
            for event in pending:
                if event["event_id"] not in members and event.get("parent_id") in members:
                    members.add(event["event_id"])
                    tree.append(event)
                    changed = True
        pending[:] = [event for event in pending if event["event_id"] not in members]
        self._write(render_tree(tree, self._sessions.get(root["session_id"])))

    def shutdown(self) -> None:
        with self._lock:
            for session_id, pending in self._pending.items():
                if pending:
                    self._write(render_tree(pending, self._sessions.get(session_id)) + "  (unfinished)")
            self._pending.clear()
