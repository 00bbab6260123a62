"""A real traced app for the viewer's browser tests and screenshots: writes sessions into a store.

    python page_app.py STORE fill          # the support-bot session (nested, a model call with a
                                             # chat history and tool calls, a failure, hostile strings)
                                             # and a few small sessions
    python page_app.py STORE live SID NAME # one more tool event in session SID (the live test)
    python page_app.py STORE big COUNT     # session "big-session": a chain with COUNT tool children
    python page_app.py URL live SID NAME   # the same, sent to the collector at URL (tracer serve)

Hostile strings (recorded text that must never run in the page) go into an event name, an input,
an output, an error and a session name.
"""

from __future__ import annotations

import sys
import time

import tracer

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
SESSION_NAME = "support-bot"
# Longer than the detail's fold (400 characters): shown folded behind "show all".
LONG_DOC = "Refund policy, in full: " + " ".join(f"clause {i} applies." for i in range(120))
REFUND_PROMISE = "Your refund of $42 will arrive within 5 business days, I promise."


def support_bot() -> None:
    with (
        tracer.session(session_name=SESSION_NAME, metadata={"user": "demo"}),
        tracer.span("answer", event_type="chain", inputs={"question": "where is my refund?"}) as chain,
    ):
        with tracer.span("search_docs", event_type="tool", inputs={"query": "refund policy"}) as search:
            time.sleep(0.030)
            search.update(outputs={"docs": ["Refunds are processed within 5 business days.", LONG_DOC]})
        with tracer.span("lookup_order", event_type="tool", inputs={"order_id": "#1042"}) as lookup:
            time.sleep(0.020)
            try:
                raise KeyError(f"no order '#1042' {IMG}")
            except KeyError as exc:
                lookup.set_error(exc)
        with tracer.span(f"render {SCRIPT}", event_type="tool", inputs={"template": IMG}) as render:
            time.sleep(0.010)
            render.update(outputs={"html": SCRIPT})
        chat_history = [
            {"role": "system", "content": "You are a support bot. Be kind."},
            {"role": "user", "content": f"Where is my refund? {SCRIPT}"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": '{"order_id": "1042"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "refunded"}'},
        ]
        with tracer.span(
            "llm",
            event_type="model",
            inputs={"chat_history": chat_history},
            config={"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.2},
        ) as llm:
            time.sleep(0.060)
            llm.update(
                outputs={"role": "assistant", "content": f"{REFUND_PROMISE} {IMG}", "finish_reason": "stop"},
                metadata={"prompt_tokens": 116, "completion_tokens": 18, "total_tokens": 134, "cached_tokens": 64},
                metrics={"time_to_first_token_ms": 3.5},
            )
        chain.update(outputs={"answer": REFUND_PROMISE})


def small_sessions(count: int) -> None:
    with tracer.session(session_name=f"nightly {IMG}"), tracer.span("step", event_type="tool"):
        time.sleep(0.001)
    for i in range(count):
        with tracer.session(session_name=f"batch-job-{i}"), tracer.span(f"step-{i}", event_type="tool"):
            time.sleep(0.001)


def live(session_id: str, name: str) -> None:
    with tracer.session(session_id=session_id), tracer.span(name, event_type="tool", inputs={"late": True}):
        time.sleep(0.001)


def big(count: int) -> None:
    with tracer.session(session_name="big-session"), tracer.span("root", event_type="chain"):
        for i in range(count):
            with tracer.span(f"item-{i}", event_type="tool"):
                pass


def main() -> None:
    target, mode = sys.argv[1], sys.argv[2]
    if target.startswith("http://"):
        tracer.init(project="viewer-tests", api_key="any", server_url=target, source="viewer-test")
    else:
        tracer.init(project="viewer-tests", store=target, source="viewer-test")
    if mode == "fill":
        small_sessions(3)
        support_bot()
    elif mode == "big":
        big(int(sys.argv[3]))
    elif mode == "live":
        live(sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    tracer.flush()
    tracer.shutdown()


if __name__ == "__main__":
    main()
