"""Auto-instrumentation of LLM client libraries: every call becomes a ``model`` event.

``tracer.init()`` calls ``auto_instrument()`` with the ``instrument`` setting (true: every supported
library that is installed; a list: those). Patching works whatever the import order: a library not
imported yet is patched right after its import. ``instrument()`` / ``uninstrument()`` do the same
explicitly; instrumenting twice changes nothing, uninstrumenting restores the original methods.

A library too old to support, or whose shape changed, is skipped with one log line; patching never
breaks an import or a call.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import threading
from collections.abc import Iterable, Sequence
from typing import Final

from .._errors import logger, warn_once
from .._registry import INTEGRATIONS, NAMES, version_tuple
from . import _patch, _propagate
from ._patch import Library

__all__ = ["SUPPORTED", "auto_instrument", "instrument", "instrumented", "uninstrument"]

SUPPORTED: Final = NAMES
_MODULES: Final = {integration.name: integration.module for integration in INTEGRATIONS}
_NEWEST_TESTED: Final = {integration.name: integration.tested[1] for integration in INTEGRATIONS}

_lock = threading.RLock()
_explicit: set[str] = set()  # instrumented by instrument(): auto_instrument() leaves them alone
_auto: set[str] = set()  # instrumented by auto_instrument()


def _library(name: str) -> Library:
    module = _MODULES.get(name)
    if module is None:
        raise ValueError(f"unknown integration {name!r}; supported: {', '.join(SUPPORTED)}")
    library: Library = importlib.import_module(module).LIBRARY
    return library


def _names(names: Iterable[str]) -> list[str]:
    chosen = [str(name).strip().lower() for name in names]
    unknown = [name for name in chosen if name not in SUPPORTED]
    if unknown:
        raise ValueError(f"unknown integration(s) {unknown!r}; supported: {', '.join(SUPPORTED)}")
    return sorted(set(chosen))


def _supported_install(library: Library) -> bool:
    """Installed in a supported version? (Looks at package metadata; imports nothing.)

    Older than the minimum: skipped with one warning naming the range. Newer than the newest
    release tested: instrumented (a changed shape is caught target by target, see ``_patch``), with
    one info line saying so.
    """
    try:
        if importlib.util.find_spec(library.import_name or library.name) is None:
            return False
    except ImportError:  # the parent of a dotted name (``google``) is not installed
        return False
    try:
        version = importlib.metadata.version(library.name)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    library.version = version
    parsed = version_tuple(version)
    wanted = ".".join(map(str, library.min_version))
    newest = _NEWEST_TESTED.get(library.name)
    supported = f">= {wanted}" + (f", tested {wanted} to {newest}" if newest else "")
    if parsed and parsed < library.min_version:
        warn_once(
            f"integration-version:{library.name}",
            "tracer: %s %s is outside the supported range (%s); its calls are not traced",
            library.name,
            version,
            supported,
        )
        return False
    if parsed and newest is not None and parsed > version_tuple(newest):
        logger.info(
            "tracer: %s %s is newer than the newest release tested (%s); instrumenting it",
            library.name,
            version,
            newest,
        )
    return True


def _enable(name: str) -> bool:
    library = _library(name)
    if library.active:
        return True
    if not _supported_install(library):
        return False
    _patch.enable(library)
    logger.debug("tracer: instrumenting %s %s", name, library.version)
    return True


def _disable(name: str) -> bool:
    return _patch.disable(_library(name))


def instrument(*names: str, include_stream_usage: bool | None = None) -> list[str]:
    """Instrument these libraries (none given: every supported one installed); returns the names instrumented.

    ``include_stream_usage=True`` makes streamed OpenAI chat/completions requests ask for token usage
    (``stream_options={"include_usage": True}``) when they do not say; the extra usage chunk is recorded
    and not passed on. Off by default: requests are never changed unless you ask.
    """
    if include_stream_usage is not None:
        _library("openai").options["include_stream_usage"] = bool(include_stream_usage)
    with _lock:
        done = [name for name in _names(names or SUPPORTED) if _enable(name)]
        _explicit.update(done)
        return done


def uninstrument(*names: str) -> list[str]:
    """Remove the instrumentation of these libraries (none given: all, and the trace headers on
    outgoing HTTP calls of ``propagate_http``); returns the names restored."""
    if not names:
        _propagate.disable()
    with _lock:
        restored = [name for name in _names(names or SUPPORTED) if _disable(name)]
        for name in _names(names or SUPPORTED):
            _explicit.discard(name)
            _auto.discard(name)
        return restored


def auto_instrument(names: Sequence[str] | None = None) -> list[str]:
    """Instrument *names* (None: every supported library installed), now or when first imported.

    Called by ``tracer.init()`` on every (re)configuration: libraries auto-instrumented before and
    no longer named are uninstrumented again (unless ``instrument()`` asked for them explicitly).
    """
    with _lock:
        wanted = _names(SUPPORTED if names is None else names)
        for name in sorted(_auto - set(wanted) - _explicit):
            _disable(name)
            _auto.discard(name)
        done = [name for name in wanted if _enable(name)]
        _auto.update(done)
        return done


def instrumented() -> list[str]:
    """Names of the libraries instrumented now."""
    return [name for name in SUPPORTED if _library(name).active]
