"""google-genai, mistralai and cohere are traced whatever the import order (fresh interpreters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.genai")
pytest.importorskip("mistralai")
pytest.importorskip("cohere")

ROOT = Path(__file__).resolve().parents[2]

_PRELUDE = """
import importlib.metadata, json, sys
sys.path.insert(0, {root!r})
from tests.fake_llm_server import FakeLLMServer
server = FakeLLMServer().start()
import tracer
from tracer import InMemoryExporter
exporter = InMemoryExporter()
USER = [{{"role": "user", "content": "hi"}}]


def clients():
    from google import genai
    import cohere
    mistral_package = "mistralai" if importlib.metadata.version("mistralai") < "2" else "mistralai.client"
    Mistral = __import__(mistral_package, fromlist=["Mistral"]).Mistral
    return (
        genai.Client(api_key="x", http_options={{"base_url": server.url}}),
        Mistral(api_key="x", server_url=server.url),
        cohere.ClientV2(api_key="x", base_url=server.url),
    )


def call(gemini, mistral, co):
    gemini.models.generate_content(model="gemini-x", contents="hi")
    mistral.chat.complete(model="mistral-x", messages=USER)
    co.chat(model="command-x", messages=USER)
    list(co.chat_stream(model="command-x", messages=USER))


def report():
    print(json.dumps([e["event_name"] for e in exporter.events if e["event_type"] == "model"]))
"""

_SCENARIOS = {
    "init_then_import": """
        tracer.init(exporter=exporter, batch=False)
        call(*clients())
        report()
    """,
    "clients_made_before_init": """
        made = clients()
        call(*made)  # not traced yet
        tracer.init(exporter=exporter, batch=False)
        call(*made)
        report()
    """,
    "instrument_list": """
        tracer.init(exporter=exporter, batch=False, instrument=["cohere", "google-genai"])
        call(*clients())
        report()
    """,
}

TRACED = ["google.models.generate_content", "mistral.chat.complete", "cohere.chat", "cohere.chat_stream"]


def _run(name: str) -> Any:
    script = _PRELUDE.format(root=str(ROOT)) + textwrap.dedent(_SCENARIOS[name])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    env["TRACER_RAISE_INTERNAL_ERRORS"] = "1"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_order_in_fresh_interpreters() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(_SCENARIOS, pool.map(_run, _SCENARIOS), strict=True))
    assert results["init_then_import"] == TRACED
    assert results["clients_made_before_init"] == TRACED
    assert results["instrument_list"] == ["google.models.generate_content", "cohere.chat", "cohere.chat_stream"]
