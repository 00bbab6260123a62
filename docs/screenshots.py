"""Regenerate the viewer's screenshots in docs/ (README, "Viewer") from a demo store this script fills.

    python docs/screenshots.py          # needs the server and test extras and Debian's chromium

Writes docs/viewer-list.png (the sessions list), docs/viewer-session.png (a waterfall with a model
event open) and docs/viewer-dark.png (the same in dark mode), all 1280x800. The demo store is a
temporary file filled by this script run as a traced app (``--fill STORE``); ``tracer ui`` serves it
on a free loopback port.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
SIZE = {"width": 1280, "height": 800}

QUESTIONS = [
    ("where is my order #1042?", "1042"),
    ("can I get a refund for my last order?", "1043"),
    ("how do I change my plan?", "abc"),
    ("my invoice shows the wrong address", "1044"),
    ("cancel my subscription please", "1045"),
]


def fill(store: str) -> None:
    """The demo: a support bot answering a few questions (tools, a model call with a tool call, a failure)."""
    import tracer

    tracer.init(project="support-bot", store=store, source="demo")
    rng = random.Random(7)

    def sleep(low: float, high: float) -> None:
        time.sleep(rng.uniform(low, high))

    for question, order_id in QUESTIONS:
        with (
            tracer.session(session_name="support-bot", metadata={"customer": f"c-{order_id}"}),
            tracer.span("answer", event_type="chain", inputs={"question": question}) as chain,
        ):
            with tracer.span("search_docs", event_type="tool", inputs={"query": question, "k": 3}) as search:
                sleep(0.015, 0.03)
                with tracer.span(
                    "embed", event_type="model", config={"provider": "openai", "model": "text-embedding-3-small"}
                ) as embed:
                    sleep(0.008, 0.012)
                    embed.update(metadata={"prompt_tokens": 12, "total_tokens": 12})
                search.update(
                    outputs={
                        "docs": [
                            "Refunds are processed within 5 business days.",
                            "Plans change on the billing page.",
                        ]
                    }
                )
            with tracer.span("lookup_order", event_type="tool", inputs={"order_id": order_id}) as lookup:
                sleep(0.01, 0.02)
                if not order_id.isdigit():
                    try:
                        raise KeyError(f"no order {order_id!r}")
                    except KeyError as exc:
                        lookup.set_error(exc)
                else:
                    lookup.update(outputs={"order_id": order_id, "status": "shipped", "eta": "2 days"})
            history = [
                {"role": "system", "content": "You are Acme's support assistant. Answer briefly and kindly."},
                {"role": "user", "content": question},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_7Qm",
                            "type": "function",
                            "function": {"name": "lookup_order", "arguments": f'{{"order_id": "{order_id}"}}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_7Qm", "content": '{"status": "shipped", "eta": "2 days"}'},
            ]
            with tracer.span(
                "chat.completions",
                event_type="model",
                inputs={"chat_history": history},
                config={"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.2},
            ) as llm:
                sleep(0.06, 0.12)
                answer = "Your order has shipped and should arrive in 2 days. Refunds take up to 5 business days."
                llm.update(
                    outputs={"role": "assistant", "content": answer, "finish_reason": "stop"},
                    metadata={
                        "prompt_tokens": 212,
                        "completion_tokens": 24,
                        "total_tokens": 236,
                        "cached_tokens": 128,
                    },
                    metrics={"time_to_first_token_ms": 41.7},
                )
            with tracer.span("moderate", event_type="tool", inputs={"text": answer}) as moderate:
                sleep(0.005, 0.01)
                moderate.update(outputs={"flagged": False})
            chain.update(outputs={"answer": answer})
    with tracer.session(session_name="nightly-eval"), tracer.span("evaluate", event_type="chain"):
        for i in range(3):
            with tracer.span(f"case-{i}", event_type="tool"):
                sleep(0.005, 0.01)
    tracer.flush()
    tracer.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    env["PYTHONPATH"] = str(REPO)
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "demo.db")
        subprocess.run([sys.executable, __file__, "--fill", store], check=True, env=env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "tracer", "ui", "--store", store, "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    httpx.get(url + "/api/info", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            # The session with the failed lookup: the waterfall shows a red row too.
            sessions = httpx.get(url + "/api/sessions", params={"q": "support-bot", "errors": "1"}).json()["sessions"]
            session_id = sessions[0]["session_id"]
            rows = httpx.get(url + f"/api/sessions/{session_id}/events").json()["events"]
            model_event = next(r["event_id"] for r in rows if r["event_name"] == "chat.completions")
            event_url = f"{url}/sessions/{session_id}/events/{model_event}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                for scheme, shots in (("light", ("list", "session")), ("dark", ("dark",))):
                    context = browser.new_context(viewport=SIZE, color_scheme=scheme)
                    page = context.new_page()
                    for shot in shots:
                        if shot == "list":
                            page.goto(url + "/")
                            page.wait_for_selector("tr.session-row")
                        else:
                            page.goto(event_url)
                            page.wait_for_selector(".transcript")
                            page.wait_for_selector(".wf-row.open")
                        page.mouse.move(0, 0)
                        page.wait_for_timeout(300)  # the live stream connects; the list's row flash ends
                        page.screenshot(path=str(DOCS / f"viewer-{shot}.png"))
                        print(f"wrote docs/viewer-{shot}.png")
                    context.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--fill":
        fill(sys.argv[2])
    else:
        main()
