"""Run each LLM client integration's tests against both ends of its version range (``.ci/run``).

The ranges themselves are ``tracer/_registry.py``'s ``tested`` pairs (the single source of truth;
``tests/integrations/test_ranges.py`` checks the README table and the pyproject extras against
them). For every integration and each end, a venv under ``.client-venvs/`` (made once and reused
while its requirements are the same, like HoneyHive's clients: ``tests/client_venvs.py``) holds
this checkout (editable), the test tools and that one release of the library, and runs only the
integration's own test files: a test of an API the release does not have skips itself.

    python tests/integrations/ranges.py              # every integration, both ends
    python tests/integrations/ranges.py openai       # one
    python tests/integrations/ranges.py --list       # the plan, nothing run
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.client_venvs import venv_python  # noqa: E402
from tracer._registry import INTEGRATIONS, Integration  # noqa: E402

#: What the integration tests need besides the library (no extras of ours: a bare install).
TEST_TOOLS = ("pytest>=8", "pytest-timeout>=2.3", "pydantic>=2")

#: More pins for one end of a range, for what the release itself needs but does not pin: these old
#: releases pass ``proxies=`` to ``httpx.Client``, which httpx 0.28 removed (TypeError at client creation).
END_PINS: dict[tuple[str, str], tuple[str, ...]] = {
    ("openai", "1.9.0"): ("httpx>=0.27,<0.28",),
    ("anthropic", "0.30.0"): ("httpx>=0.27,<0.28",),
    ("groq", "0.9.0"): ("httpx>=0.27,<0.28",),
    # mistralai 1.2's models use what pydantic 2.11 deprecated (warnings, errors under our tests).
    ("mistralai", "1.2.0"): ("pydantic>=2.9,<2.11",),
    # boto3 accepts any botocore of its minor version: the oldest end is botocore's oldest too.
    ("boto3", "1.34.116"): ("botocore==1.34.116",),
}


def test_files(entry: Integration) -> list[str]:
    """The integration's own test files (its name: ``tests/integrations/test_<name>.py``, ``-`` as ``_``)."""
    return [f"tests/integrations/test_{entry.name.replace('-', '_')}.py"]


def requirements(entry: Integration, version: str) -> tuple[str, ...]:
    return ("-e", str(REPO), *TEST_TOOLS, f"{entry.name}=={version}", *END_PINS.get((entry.name, version), ()))


def run(entry: Integration, version: str) -> bool:
    started = time.monotonic()
    python = venv_python(f"range-{entry.name}-{version}", requirements(entry, version))
    made = time.monotonic() - started
    found = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({entry.name!r}))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if found != version:
        print(f"== {entry.name} {version}: the venv holds {found or 'nothing'}", flush=True)
        return False
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *test_files(entry)], cwd=REPO, check=False
    )
    took = time.monotonic() - started
    ok = done.returncode == 0  # 5 (no test ran) fails too
    print(f"== {entry.name} {version}: {'passed' if ok else 'FAILED'} ({took:.0f} s, venv {made:.0f} s)", flush=True)
    return ok


def main(argv: list[str]) -> int:
    names = [arg for arg in argv if not arg.startswith("-")]
    chosen = [entry for entry in INTEGRATIONS if not names or entry.name in names]
    unknown = set(names) - {entry.name for entry in INTEGRATIONS}
    if unknown:
        print(f"unknown integration(s): {sorted(unknown)}", file=sys.stderr)
        return 2
    plan = [(entry, version) for entry in chosen for version in entry.tested]
    if "--list" in argv:
        for entry, version in plan:
            print(entry.name, version, " ".join(test_files(entry)))
        return 0
    failed = [f"{entry.name} {version}" for entry, version in plan if not run(entry, version)]
    if failed:
        print(f"version-range runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"== version ranges: {len(plan)} runs passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
