"""The LLM client libraries ``tracer`` can instrument: one entry each, read by the settings and by
``tracer.integrations`` (no imports here, so the settings can validate names without loading any
integration).

Each entry's ``tested`` pair is the single source of truth for its version range: the oldest
version is the minimum the integration accepts, and both ends are the versions ``.ci/run`` runs the
integration's tests against (``tests/integrations/ranges.py``). The README's integrations table and
the pyproject extras are checked against it by ``tests/integrations/test_ranges.py``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

__all__ = ["INTEGRATIONS", "NAMES", "Integration", "integration", "min_version", "version_tuple"]


def version_tuple(text: str) -> tuple[int, ...]:
    """(1, 9, 0) for "1.9.0"; the leading digits of each of the first three parts ("1.0.0rc1" -> (1, 0, 0))."""
    parts = []
    for piece in text.split(".")[:3]:
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class Integration:
    """One instrumentable library."""

    #: The library's distribution name, also the name ``instrument=`` takes.
    name: str
    #: The oldest and the newest release the integration's tests run against (both in CI). The
    #: oldest is the minimum: older installs are skipped with one log line naming the range.
    tested: tuple[str, str]
    #: Our module that knows the library: it defines ``LIBRARY`` (``tracer.integrations._patch.Library``).
    module: str
    #: The package to import when it differs from the distribution name (``google.genai``).
    import_name: str = ""

    @property
    def min_version(self) -> tuple[int, ...]:
        return version_tuple(self.tested[0])


INTEGRATIONS: Final = (
    # 0.30-0.40 define Messages in anthropic.resources.messages (a module, a package from 0.41); every
    # 0.x Stream class rejects proxies in isinstance() (see _stream.bare_stream).
    Integration("anthropic", ("0.30.0", "2.17.0"), "tracer.integrations.anthropic"),
    # 1.9.0: the first release whose with_raw_response accessors are built on first use, not with
    # the client (a client made before tracer.init() would keep the unpatched methods).
    Integration("openai", ("1.9.0", "3.63.0"), "tracer.integrations.openai"),
    Integration("groq", ("0.9.0", "1.7.0"), "tracer.integrations.groq"),
    # 0.4.0: the first release whose responses are models (dicts before).
    Integration("ollama", ("0.4.0", "0.6.3"), "tracer.integrations.ollama"),
    Integration("google-genai", ("1.20.0", "3.6.1"), "tracer.integrations.google_genai", "google.genai"),
    # 1.2.0 needs pydantic < 2.11 (its models trip 2.11's deprecations); 2.0 moved the client to mistralai.client.
    Integration("mistralai", ("1.2.0", "3.7.0"), "tracer.integrations.mistralai"),
    # 5.16.0: the first release whose streams can be closed (5.15 swallows GeneratorExit) and that has
    # the raw client (see cohere.py).
    Integration("cohere", ("5.16.0", "7.3.1"), "tracer.integrations.cohere"),
    # Bedrock Runtime through botocore's clients (converse arrived in 1.34.116; boto3 and botocore
    # share version numbers since 1.33, the oldest end pins botocore to it: ranges.END_PINS).
    Integration("boto3", ("1.34.116", "1.44.18"), "tracer.integrations.bedrock"),
    # The gateway: every call goes through its dispatcher (PublicDispatch, there since 1.106 at
    # least); 1.108.0 is the first release that accepts openai 3.
    Integration("litellm", ("1.108.0", "1.110.2"), "tracer.integrations.litellm"),
)
NAMES: Final = tuple(integration.name for integration in INTEGRATIONS)


def integration(name: str) -> Integration:
    """The registry entry of *name*."""
    for entry in INTEGRATIONS:
        if entry.name == name:
            return entry
    raise KeyError(name)


def min_version(name: str) -> tuple[int, ...]:
    """The oldest supported version of integration *name*."""
    return integration(name).min_version
