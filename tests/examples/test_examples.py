"""Every example runs offline and prints the trace tree it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "quickstart.py": ["session quickstart", "└─ chain answer", "├─ tool  retrieve", "└─ model generate"],
    "async_and_generators.py": ["└─ chain main", "├─ chain ask", "model fake_llm"],
    "threads.py": ["└─ chain index_documents", "├─ tool  embed", "└─ tool  embed"],
    "web_sessions.py": ["session GET /profile", "└─ chain handle", "└─ tool  lookup_user"],
    "openai_chat.py": [
        "session openai_chat",
        "└─ chain answer",
        "├─ model openai.chat.completions.create",
        "├─ tool  get_weather",
        "└─ model openai.chat.completions.create",
    ],
    "anthropic_stream.py": [
        "session anthropic_stream",
        "└─ chain stream_story",
        "└─ model anthropic.messages.stream",
        "└─ chain ask_twice",
        "├─ model anthropic.messages.stream",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_offline(name: str) -> None:
    # Without provider keys the LLM examples talk to their bundled fake server: offline.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACER_", "HH_")) and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    env["TRACER_RAISE_INTERNAL_ERRORS"] = "1"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    for fragment in EXPECTED[name]:
        assert fragment in done.stderr, done.stderr
    if name == "web_sessions.py":
        assert done.stderr.count("session GET /profile") == 3  # one session per request


# local_demo.py is run in a temporary directory, then `tracer show last`, by tests/cli/test_cli.py.
OTHERWISE_TESTED = {"local_demo.py"}


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} <= set(EXPECTED) | OTHERWISE_TESTED
