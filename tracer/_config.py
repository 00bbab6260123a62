"""Settings: one table of every option, its environment variables and default.

Precedence is argument > environment variable (``TRACER_*`` first, then the HoneyHive name) > default.
Every value is validated here, at ``init()``; a bad one raises ``ConfigError`` naming the setting.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from ._errors import ConfigError
from ._registry import NAMES

__all__ = ["SETTINGS", "Config", "Setting", "resolve_config"]

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One option: its name, environment variables, default and parser."""

    name: str
    env: tuple[str, ...]
    default: Any
    kind: str  # "str" | "bool" | "float" | "int" | "url" | "rate" | "object" | "names" | "keys" | "patterns" | "spool"
    help: str
    minimum: float | None = None


def _default_session_name() -> str:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return script or "python"


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("project", ("TRACER_PROJECT", "HH_PROJECT"), "default", "str", "Project the events belong to."),
    Setting("api_key", ("TRACER_API_KEY", "HH_API_KEY"), None, "str", "API key; selects the HoneyHive exporter."),
    Setting(
        "server_url",
        ("TRACER_SERVER_URL", "HH_API_URL"),
        "https://api.honeyhive.ai",
        "url",
        "Base URL of the HoneyHive-compatible events API.",
    ),
    Setting("store", ("TRACER_STORE",), None, "str", "Local trace store (SQLite file) used without an API key; default ./.tracer/traces.db."),
    Setting("source", ("TRACER_SOURCE", "HH_SOURCE"), "dev", "str", "Environment label (production, staging…)."),
    Setting("session_name", ("TRACER_SESSION_NAME", "HH_SESSION_NAME"), None, "str", "Name of the default session."),
    Setting("disabled", ("TRACER_DISABLED",), False, "bool", "Turn tracing off: decorators call straight through."),
    Setting("sample_rate", ("TRACER_SAMPLE_RATE",), 1.0, "rate", "Fraction of sessions recorded (0.0–1.0)."),
    Setting("capture_content", ("TRACER_CAPTURE_CONTENT",), True, "bool", "Record inputs and outputs at all."),
    Setting("scrub", ("TRACER_SCRUB",), True, "bool", "Redact secret-looking keys and values."),
    Setting("scrub_keys", ("TRACER_SCRUB_KEYS",), (), "keys", "More key names to redact; a name starting with ! is never redacted by key (env: comma-separated)."),
    Setting("scrub_patterns", ("TRACER_SCRUB_PATTERNS",), (), "patterns", "More regexes to redact in every string (env: one per line)."),
    Setting("mask", (), None, "object", "A function run on every event dict before export: return it (changed) or None to drop it."),
    Setting("max_string_length", ("TRACER_MAX_STRING_LENGTH",), 32 * 1024, "int", "Longer strings keep head and tail.", 16),
    Setting("max_depth", ("TRACER_MAX_DEPTH",), 10, "int", "Deeper nesting is cut with a marker.", 1),
    Setting("max_items", ("TRACER_MAX_ITEMS",), 1000, "int", "Items kept per collection.", 1),
    Setting("max_event_bytes", ("TRACER_MAX_EVENT_BYTES",), 1024 * 1024, "int", "Size cap of one encoded event.", 4096),
    Setting("propagate_to_threads", ("TRACER_PROPAGATE_TO_THREADS",), True, "bool", "Nest thread and executor work under the submitting span."),
    Setting("propagate_http", ("TRACER_PROPAGATE_HTTP",), False, "bool", "Add W3C trace headers to outgoing httpx and requests calls made inside a span (never to the tracer's own endpoints)."),
    Setting("batch", ("TRACER_BATCH",), True, "bool", "Ship from a background thread (False: export inline, e.g. serverless)."),
    Setting("max_queue_size", ("TRACER_MAX_QUEUE_SIZE",), 1_000_000, "int", "Events held in memory before dropping the oldest (far above what fits in max_queue_bytes: the bytes bound).", 1),
    Setting("max_queue_bytes", ("TRACER_MAX_QUEUE_BYTES",), 64 * 1024 * 1024, "int", "Bytes held in memory; past half of it the worker spills to the spool, at it the oldest are dropped.", 1024),
    Setting("spool", ("TRACER_SPOOL",), True, "spool", "On-disk spool (SQLite file) for events the backend cannot take yet; a path, or false to turn it off; default ./.tracer/spool.db."),
    Setting("max_spool_bytes", ("TRACER_MAX_SPOOL_BYTES",), 1024 * 1024 * 1024, "int", "Size of the spool file before its oldest events are dropped.", 65536),
    Setting("max_batch_size", ("TRACER_MAX_BATCH_SIZE",), 512, "int", "Events per export batch.", 1),
    Setting("max_batch_bytes", ("TRACER_MAX_BATCH_BYTES",), 4 * 1024 * 1024, "int", "Bytes per export batch.", 1024),
    Setting("flush_interval", ("TRACER_FLUSH_INTERVAL",), 1.0, "float", "Seconds a batch may wait before it is sent.", 0.001),
    Setting("first_flush_interval", ("TRACER_FIRST_FLUSH_INTERVAL",), 0.1, "float", "The same for the first batches, so short scripts see data at once.", 0.001),
    Setting("exit_timeout", ("TRACER_EXIT_TIMEOUT",), 5.0, "float", "Seconds the exit hook may spend delivering what is left.", 0.0),
    Setting("export_timeout", ("TRACER_EXPORT_TIMEOUT",), 30.0, "float", "Total seconds one export (the few batches sent together) may spend, retries included.", 0.1),
    Setting("max_in_flight", ("TRACER_MAX_IN_FLIGHT",), 16, "int", "Export requests sent at once (hides a far backend's round trip); HoneyHive and OTLP exporters.", 1),
    Setting("gzip", ("TRACER_GZIP",), True, "bool", "Compress request bodies."),
    Setting("debug", ("TRACER_DEBUG",), False, "bool", "Log the library's own activity at DEBUG level."),
    Setting("instrument", ("TRACER_INSTRUMENT",), True, "names", "Auto-instrument installed LLM clients: true, false, or a list of names (openai, anthropic, groq, ollama, google-genai, mistralai, cohere, boto3, litellm)."),
    Setting("otel_bridge", ("TRACER_OTEL_BRIDGE",), False, "bool", "Record the spans of every OpenTelemetry instrumentation in the process as events, in the same trees (extra tracer-ai[otel])."),
)  # fmt: skip

_BY_NAME: Final = {s.name: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Resolved, validated settings (see ``SETTINGS`` for meaning and defaults)."""

    project: str
    api_key: str | None
    server_url: str
    store: str | None
    source: str
    session_name: str
    disabled: bool
    sample_rate: float
    capture_content: bool
    scrub: bool
    scrub_keys: tuple[str, ...]
    scrub_patterns: tuple[str, ...]
    mask: Callable[[dict[str, Any]], dict[str, Any] | None] | None
    max_string_length: int
    max_depth: int
    max_items: int
    max_event_bytes: int
    propagate_to_threads: bool
    propagate_http: bool
    batch: bool
    max_queue_size: int
    max_queue_bytes: int
    spool: bool | str
    max_spool_bytes: int
    max_batch_size: int
    max_batch_bytes: int
    flush_interval: float
    first_flush_interval: float
    exit_timeout: float
    export_timeout: float
    max_in_flight: int
    gzip: bool
    debug: bool
    instrument: bool | tuple[str, ...]
    otel_bridge: bool


def _where(setting: Setting, env_name: str | None) -> str:
    return (
        f"environment variable {env_name} (for setting {setting.name!r})" if env_name else f"setting {setting.name!r}"
    )


def _parse(setting: Setting, value: Any, env_name: str | None) -> Any:
    where = _where(setting, env_name)
    kind = setting.kind
    if value is None:
        if setting.default is None or kind in ("str", "object"):
            return None
        raise ConfigError(f"{where} must not be None")
    if kind == "names":
        return _parse_names(value, where)
    if kind in ("keys", "patterns"):
        return _parse_scrub_list(kind, value, where)
    if kind == "spool":
        return _parse_spool(value, where)
    if kind == "object":
        if not callable(value):
            raise ConfigError(f"{where} must be a callable taking an event dict, got {type(value).__name__}")
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where} must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}")
    if kind in ("str", "url"):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {type(value).__name__}")
        text = value.strip()
        if kind == "url":
            if not text.startswith(("http://", "https://")) or len(text) <= len("https://"):
                raise ConfigError(f"{where} must be an http:// or https:// URL, got {value!r}")
            return text.rstrip("/")
        if setting.name in ("project", "source") and not text:
            raise ConfigError(f"{where} must be a non-empty string")
        return text
    if kind in ("int", "float", "rate"):
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            number = float(value) if kind != "int" else _to_int(value)
        except (TypeError, ValueError):
            accepted = "a whole number" if kind == "int" else "a number"
            raise ConfigError(f"{where} must be {accepted}, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        if kind == "rate" and not 0.0 <= number <= 1.0:
            raise ConfigError(f"{where} must be between 0.0 and 1.0, got {value!r}")
        if setting.minimum is not None and number < setting.minimum:
            raise ConfigError(f"{where} must be at least {setting.minimum:g}, got {value!r}")
        return number
    raise AssertionError(kind)  # pragma: no cover


KNOWN_INTEGRATIONS: Final = NAMES


def _parse_names(value: Any, where: str) -> bool | tuple[str, ...]:
    """``instrument``: a boolean, or integration names (a list, or a comma-separated string)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        names: list[Any] = [part.strip() for part in text.split(",") if part.strip()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        names = list(value)
    else:
        raise ConfigError(f"{where} must be true, false or a list of names, got {type(value).__name__}")
    unknown = [name for name in names if name not in KNOWN_INTEGRATIONS]
    if unknown:
        raise ConfigError(f"{where} names unknown integration(s) {unknown!r}; known: {', '.join(KNOWN_INTEGRATIONS)}")
    return tuple(sorted(set(names)))


def _parse_scrub_list(kind: str, value: Any, where: str) -> tuple[str, ...]:
    """``scrub_keys`` (a list, or names separated by commas) and ``scrub_patterns`` (a list, or
    one regex per line: a newline is the one separator a regex never needs unescaped)."""
    if isinstance(value, str):
        items: list[Any] = value.split("," if kind == "keys" else "\n")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(f"{where} must be a list of strings, got {type(value).__name__}")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{where} must hold strings only, got {type(item).__name__}")
        text = item.strip() if kind == "keys" or isinstance(value, str) else item
        if not text or text == "!":
            continue
        if kind == "patterns":
            try:
                re.compile(text)
            except re.error as exc:
                raise ConfigError(f"{where} holds an invalid regular expression {text!r}: {exc}") from None
        result.append(text)
    return tuple(result)


def _parse_spool(value: Any, where: str) -> bool | str:
    """``spool``: true (the default path), false (off), or a file path."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{where} must be a file path, true or false, got {type(value).__name__}")
    text = os.fspath(value).strip()
    if text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    return text


def _to_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip().replace("_", ""))
    raise ValueError(value)


def resolve_config(options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Merge *options* (arguments left as None mean "not given") with the environment and defaults."""
    env = os.environ if environ is None else environ
    unknown = sorted(set(options) - set(_BY_NAME))
    if unknown:
        known = ", ".join(sorted(_BY_NAME))
        raise ConfigError(f"unknown setting(s) {', '.join(map(repr, unknown))}; accepted settings: {known}")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        given = options.get(setting.name)
        if given is not None:
            values[setting.name] = _parse(setting, given, None)
            continue
        for env_name in setting.env:
            raw = env.get(env_name)
            if raw is not None and (raw.strip() or setting.kind == "bool"):
                values[setting.name] = _parse(setting, raw, env_name)
                break
        else:
            values[setting.name] = setting.default
    if values["session_name"] is None:
        values["session_name"] = _default_session_name()
    if values["first_flush_interval"] > values["flush_interval"]:
        values["first_flush_interval"] = values["flush_interval"]
    return Config(**values)
