"""Terminal rendering of stored traces (rich): the sessions table, the session tree, tail lines."""

from __future__ import annotations

import datetime
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..store import SessionSummary
from ..store._events import event_error, token_counts

__all__ = [
    "format_duration",
    "format_time",
    "make_console",
    "session_header",
    "sessions_table",
    "short_id",
    "tail_line",
    "tree_lines",
]

BAR_WIDTH: Final = 24
_MAX_LABEL: Final = 56
_MAX_DETAIL: Final = 120
_PREVIEW: Final = 100
_TYPE_STYLES: Final = {"chain": "cyan", "tool": "green", "model": "magenta", "session": "blue"}
_PIPE_WIDTH: Final = 200  # output to a pipe or file: no wrapping or truncation of ordinary rows


def make_console(stderr: bool = False) -> Console:
    """A console that colours only terminals and does not squeeze piped output to 80 columns."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, _PIPE_WIDTH)
    return console


def format_duration(ms: float | None) -> str:
    if ms is None or ms != ms:
        return "—"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_time(ms: int | None, with_date: bool = True, precise: bool = False) -> str:
    if ms is None:
        return "—"
    when = datetime.datetime.fromtimestamp(ms / 1000)
    text = when.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
    return f"{text}.{when.microsecond // 1000:03d}" if precise else text


def _tokens(count: int | None) -> str:
    return "—" if not count else f"{count:,}"


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _preview(value: Any) -> str:
    if isinstance(value, dict) and list(value) == ["result"]:
        value = value["result"]
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return _one_line(text, _PREVIEW)


def short_id(session_id: str) -> str:
    """The end of an id: distinct even between sessions of one process (their ids share a prefix)."""
    return session_id[-12:]


def sessions_table(sessions: Sequence[SessionSummary]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("SESSION", no_wrap=True)
    table.add_column("NAME", no_wrap=True, max_width=40, overflow="ellipsis")
    table.add_column("SOURCE", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("STARTED", no_wrap=True)
    table.add_column("DURATION", justify="right", no_wrap=True)
    table.add_column("EVENTS", justify="right", no_wrap=True)
    table.add_column("ERRORS", justify="right", no_wrap=True)
    table.add_column("TOKENS", justify="right", no_wrap=True)
    for session in sessions:
        errors = Text(str(session.error_count), style="bold red" if session.error_count else "dim")
        table.add_row(
            Text(short_id(session.session_id), style="yellow"),
            session.session_name,
            session.source or "—",
            format_time(session.start_time),
            format_duration(session.duration_ms),
            str(session.event_count),
            errors,
            _tokens(session.total_tokens),
        )
    return table


def session_header(session: SessionSummary) -> list[Text]:
    title = Text.assemble(("session ", "bold"), (session.session_name, "bold"), "  ", (session.session_id, "yellow"))
    errors = session.error_count
    facts = [
        session.source or "unknown source",
        f"started {format_time(session.start_time)}",
        format_duration(session.duration_ms),
        f"{session.event_count} event{'s' if session.event_count != 1 else ''}",
    ]
    line = Text(" · ".join(facts), style="dim")
    line.append(" · ", style="dim")
    line.append(f"{errors} error{'s' if errors != 1 else ''}", style="bold red" if errors else "dim")
    if session.total_tokens:
        line.append(
            f" · {session.total_tokens:,} tokens ({session.prompt_tokens:,} in, {session.completion_tokens:,} out)",
            style="dim",
        )
    return [title, line]


def _details(event: dict[str, Any]) -> Text:
    text = Text()
    if event.get("event_type") == "model":
        config = event.get("config")
        model = config.get("model") if isinstance(config, dict) else None
        prompt, completion, total = token_counts(event)
        parts = []
        if isinstance(model, str) and model:
            parts.append(model)
        if total:
            parts.append(f"{total:,} tokens ({prompt or 0:,} in, {completion or 0:,} out)")
        if parts:
            text.append(" · ".join(parts), style="magenta")
    error = event_error(event)
    if error:
        if text:
            text.append("  ")
        text.append(f"✗ {_one_line(error, _MAX_DETAIL)}", style="bold red")
    return text


def _bar(window: tuple[float, float], origin: float, span: float, style: str) -> Text:
    start, end = window
    first = min(int((start - origin) / span * BAR_WIDTH), BAR_WIDTH - 1)
    last = min(max(math.ceil((end - origin) / span * BAR_WIDTH - 1e-9), first + 1), BAR_WIDTH)
    return Text.assemble(("·" * first, "dim"), ("█" * (last - first), style), ("·" * (BAR_WIDTH - last), "dim"))


def _extent(event: dict[str, Any]) -> tuple[float, float]:
    """Start and end in epoch ms: the integer start plus the precise duration."""
    start = float(event.get("start_time") or 0)
    duration = event.get("duration")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        return start, start + max(float(duration), 0.0)
    return start, max(float(event.get("end_time") or start), start)


def tree_lines(
    events: Sequence[dict[str, Any]], show_io: bool = False, timeline: tuple[float, float] | None = None
) -> list[Text]:
    """The events as an indented tree (children by start time) with aligned durations and timeline bars.

    *timeline*: the session's first start and last end (epoch ms), when *events* are only some of its
    events (the bars stay on the whole session's scale); by default, the extent of *events*.
    """
    if not events:
        return [Text("(no events)", style="dim")]
    ids = {event["event_id"] for event in events}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    roots: list[dict[str, Any]] = []
    for event in events:
        parent = event.get("parent_id")
        if isinstance(parent, str) and parent in ids and parent != event["event_id"]:
            children[parent].append(event)
        else:
            roots.append(event)

    def order(event: dict[str, Any]) -> tuple[float, float]:
        return (float(event.get("start_time") or 0), float(event.get("end_time") or 0))

    # Each event's place on the timeline, kept within its parent's: starts are whole milliseconds,
    # so a child could otherwise seem to end a fraction of a millisecond after its parent.
    rows: list[tuple[str, str, dict[str, Any], tuple[float, float]]] = []  # prefix, io prefix, event, window
    seen: set[str] = set()

    def walk(event: dict[str, Any], prefix: str, last: bool, top: bool, outer: tuple[float, float]) -> None:
        if event["event_id"] in seen:  # a cycle in parent ids: show each event once
            return
        seen.add(event["event_id"])
        start, end = _extent(event)
        start = min(max(start, outer[0]), outer[1])
        window = (start, min(max(end, start), outer[1]))
        branch = "" if top else ("└─ " if last else "├─ ")
        below = "" if top else ("   " if last else "│  ")
        kids = sorted(children.get(event["event_id"], []), key=order)
        rows.append((prefix + branch, prefix + below + ("│  " if kids else "   "), event, window))
        for index, child in enumerate(kids):
            walk(child, prefix + below, index == len(kids) - 1, False, window)

    for root in sorted(roots, key=order) + sorted(events, key=order):  # then any caught in a parent cycle
        if root["event_id"] not in seen:
            walk(root, "", True, True, (-math.inf, math.inf))
    origin = min(window[0] for *_, window in rows)
    last = max(window[1] for *_, window in rows)
    if timeline is not None:
        origin, last = min(origin, timeline[0]), max(last, timeline[1])
    span = max(last - origin, 1e-9)

    labels = []
    for prefix, _, event, _ in rows:
        kind = str(event.get("event_type") or "?")
        labels.append(f"{prefix}{kind:<5} {event.get('event_name') or '?'}")
    width = min(max(len(label) for label in labels), _MAX_LABEL)

    lines: list[Text] = []
    for (prefix, continuation, event, window), label in zip(rows, labels, strict=True):
        kind = str(event.get("event_type") or "?")
        style = _TYPE_STYLES.get(kind, "white")
        failed = event_error(event) is not None
        if len(label) > width:
            label = label[: width - 1] + "…"
        line = Text(prefix, style="dim")
        line.append(f"{kind:<5}", style=style)
        line.append(label[len(prefix) + 5 :].ljust(width - len(prefix) - 5), style="bold red" if failed else "bold")
        duration = event.get("duration")
        line.append(f"  {format_duration(float(duration) if isinstance(duration, (int, float)) else None):>9}  ")
        line.append_text(_bar(window, origin, span, "red" if failed else style))
        details = _details(event)
        if details:
            line.append("  ")
            line.append_text(details)
        lines.append(line)
        if show_io:
            for name, tag in (("inputs", "in "), ("outputs", "out")):
                value = event.get(name)
                if value:
                    lines.append(Text.assemble((continuation, "dim"), (f"  {tag} ", "dim"), _preview(value)))
    return lines


def tail_line(event: dict[str, Any]) -> Text:
    kind = str(event.get("event_type") or "?")
    failed = event_error(event) is not None
    duration = event.get("duration")
    line = Text.assemble(
        (format_time(event.get("end_time") or event.get("start_time"), with_date=False, precise=True), "dim"),
        "  ",
        (short_id(str(event.get("session_id", ""))), "yellow"),
        "  ",
        (f"{kind:<5}", _TYPE_STYLES.get(kind, "white")),
        " ",
        (str(event.get("event_name") or "?"), "bold red" if failed else "bold"),
        f"  {format_duration(float(duration) if isinstance(duration, (int, float)) else None)}",
    )
    details = _details(event)
    if details:
        line.append("  ")
        line.append_text(details)
    return line
