"""Auto-instrumentation of LLM client libraries (openai, anthropic).

Placeholder: the integrations are being built (issue 4). ``auto_instrument`` is called by
``Tracer.configure`` with the ``instrument`` setting.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["auto_instrument", "instrument", "uninstrument"]


def auto_instrument(names: Sequence[str] | None = None) -> list[str]:
    """Instrument *names* (None: every supported library), now or when first imported."""
    return []


def instrument(*names: str) -> list[str]:
    """Instrument these libraries explicitly; returns the names instrumented."""
    return []


def uninstrument(*names: str) -> list[str]:
    """Undo ``instrument``; returns the names restored."""
    return []
