"""The LLM client libraries ``tracer`` can instrument: one entry each, read by the settings and by
``tracer.integrations`` (no imports here, so the settings can validate names without loading any
integration)."""

from __future__ import annotations

import dataclasses
from typing import Final

__all__ = ["INTEGRATIONS", "NAMES", "Integration", "min_version"]


@dataclasses.dataclass(frozen=True, slots=True)
class Integration:
    """One instrumentable library."""

    #: The library's import (and distribution) name, also the name ``instrument=`` takes.
    name: str
    #: The oldest version the integration supports; older installs are skipped with a log line.
    min_version: tuple[int, ...]
    #: Our module that knows the library: it defines ``LIBRARY`` (``tracer.integrations._patch.Library``).
    module: str


INTEGRATIONS: Final = (
    Integration("anthropic", (0, 30), "tracer.integrations.anthropic"),
    Integration("openai", (1, 0), "tracer.integrations.openai"),
)
NAMES: Final = tuple(integration.name for integration in INTEGRATIONS)


def min_version(name: str) -> tuple[int, ...]:
    """The oldest supported version of integration *name*."""
    for integration in INTEGRATIONS:
        if integration.name == name:
            return integration.min_version
    raise KeyError(name)
