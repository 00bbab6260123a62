"""The wrapt mechanics: patch a library's methods when (or as soon as) their module is imported, and undo it.

A ``Library`` lists ``Target`` methods by *defining* module and ``"Class.method"`` path. ``enable()``
patches the modules already imported and registers a post-import hook for the others, so the import
order (before or after ``import openai``, before or after a client is created) does not matter.
Hooks never raise: a target that is missing (the library changed shape) is skipped with one log
line, and the user's import goes on. ``disable()`` unwraps every handle, restoring the originals.

Every wrapper installed here checks ``Library.active`` first, so a wrapper that could not be removed
(someone else wrapped on top of it with a non-wrapt wrapper) turns into a pass-through.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import wrapt

from .._errors import logger, report_internal_error, warn_once

__all__ = ["Library", "Target", "Wrapper", "disable", "enable", "is_ours"]

Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]
"""A wrapt wrapper: ``wrapper(wrapped, instance, args, kwargs)``."""

_MARK = "_tracer_integration"
_lock = threading.RLock()
_pending: set[tuple[str, str]] = set()  # (library, module) with a post-import hook not fired yet


@dataclass(frozen=True)
class Target:
    """One method to wrap: ``module`` defines ``path`` (``"Class.method"``, or ``"name"`` for a module attribute)."""

    module: str
    path: str
    wrapper: Wrapper
    optional: bool = False  # absent in some supported versions: skip quietly


@dataclass(eq=False)
class Library:
    """A client library and what to patch in it; ``active`` and ``handles`` are its patch state."""

    name: str
    min_version: tuple[int, ...]
    targets: Callable[[], tuple[Target, ...]]  # built on first use (the wrappers close over the library)
    active: bool = False
    handles: list[tuple[ModuleType, str, Any]] = field(default_factory=list)
    version: str = "?"
    # Settings of the integration, set through ``instrument()`` (e.g. OpenAI's ``include_stream_usage``).
    options: dict[str, bool] = field(default_factory=dict)
    # The package to import when it is not the distribution name (``google.genai`` for google-genai).
    import_name: str = ""
    _targets: tuple[Target, ...] | None = None

    def target_list(self) -> tuple[Target, ...]:
        if self._targets is None:
            self._targets = self.targets()
        return self._targets


def mark(wrapper: Wrapper) -> Wrapper:
    """Tag *wrapper* as one of ours, so a second ``enable()`` recognizes what is already there."""
    setattr(wrapper, _MARK, True)
    return wrapper


def is_ours(entry: Any) -> bool:
    """True for a wrapt FunctionWrapper whose wrapper function is one of ours (predicate for find_wrapper)."""
    try:
        return bool(getattr(getattr(entry, "_self_wrapper", None), _MARK, False))
    except Exception:  # a broken proxy of someone else's
        return False


def enable(library: Library) -> None:
    """Patch *library* now where its modules are imported, and on import for the others. Idempotent."""
    with _lock:
        library.active = True
        modules: dict[str, None] = {}
        for target in library.target_list():
            modules.setdefault(target.module)
        for module_name in modules:
            key = (library.name, module_name)
            if key in _pending:
                continue  # the hook registered earlier will patch it (it checks `active` when it fires)
            _pending.add(key)
            # Fires at once if the module is already imported, else right after its import.
            wrapt.register_post_import_hook(functools.partial(_on_import, library, module_name), module_name)


def disable(library: Library) -> bool:
    """Remove every wrapper installed for *library*; True if it was enabled."""
    with _lock:
        was_active = library.active
        library.active = False
        handles, library.handles = library.handles, []
        for module, path, handle in reversed(handles):
            try:
                wrapt.unwrap_object(module, path, handle, missing_ok=True)
            except Exception as exc:  # e.g. a non-wrapt wrapper installed on top of ours
                logger.warning(
                    "tracer: could not remove the %s wrapper of %s.%s (%s); it now calls straight through",
                    library.name,
                    module.__name__,
                    path,
                    exc,
                )
        return was_active


def _on_import(library: Library, module_name: str, module: ModuleType) -> None:
    """Post-import hook. Must never raise: an exception here would fail the user's import."""
    try:
        with _lock:
            _pending.discard((library.name, module_name))
            if library.active:
                _patch_module(library, module_name, module)
    except Exception as exc:
        report_internal_error(f"instrumenting {module_name}", exc)


def _patch_module(library: Library, module_name: str, module: ModuleType) -> None:
    for target in library.target_list():
        if target.module != module_name:
            continue
        class_name, _, method_name = target.path.partition(".")
        if method_name:
            owner = getattr(module, class_name, None)
            current = getattr(owner, "__dict__", {}).get(method_name) if owner is not None else None
        else:  # a module-level function (or a bound method kept there, like ollama.chat)
            current = module.__dict__.get(class_name)
        if current is None:
            if target.optional:
                logger.debug(
                    "tracer: %s %s has no %s.%s; skipped", library.name, library.version, module_name, target.path
                )
            else:
                warn_once(
                    f"integration:{library.name}:{module_name}:{target.path}",
                    "tracer: %s %s has no %s.%s (the library changed shape); those calls are not traced",
                    library.name,
                    library.version,
                    module_name,
                    target.path,
                )
            continue
        if wrapt.find_wrapper(current, predicate=is_ours) is not None:
            continue  # already ours (instrumented twice, or a subclass body copied our wrapper)
        handle = wrapt.wrap_function_wrapper(module, target.path, target.wrapper)
        library.handles.append((module, target.path, handle))


def loaded(module_name: str) -> ModuleType | None:
    """The module if it is imported (for type checks at call time without importing anything)."""
    return sys.modules.get(module_name)
