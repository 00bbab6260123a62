"""The first thing to run: trace a small "support bot" locally, then look at it with the CLI.

No account, no network: without an API key, events go to ./.tracer/traces.db.

    python examples/local_demo.py
    tracer show last          # the session as a tree (or: python -m tracer show last)
    tracer sessions           # every run so far
"""

from __future__ import annotations

import random
import time

import tracer

tracer.init(project="local-demo", session_name="support-bot")


@tracer.trace
def search_docs(query: str, k: int = 2) -> list[str]:
    time.sleep(0.004)
    docs = [
        "Refunds are processed within 5 business days.",
        "You can change your plan from the billing page.",
        "Support is available 24/7 by chat.",
    ]
    words = set(query.lower().split())
    return sorted(docs, key=lambda doc: -len(words & set(doc.lower().split())))[:k]


@tracer.trace(event_type="tool")
def lookup_order(order_id: str) -> dict[str, str]:
    time.sleep(0.002)
    if not order_id.isdigit():
        raise KeyError(f"no order {order_id!r}")
    return {"order_id": order_id, "status": "shipped"}


@tracer.trace(event_type="model", config={"provider": "fake", "model": "fake-gpt-mini", "temperature": 0.2})
def llm(prompt: str) -> str:
    time.sleep(0.015 + random.random() * 0.01)  # a model call takes a while
    tracer.enrich_span(metadata={"prompt_tokens": len(prompt.split()) * 4, "completion_tokens": 18})
    return "Your order has shipped; refunds take up to 5 business days."


@tracer.trace(event_type="chain")
def answer(question: str, order_id: str) -> str:
    context = search_docs(question)
    try:
        order = lookup_order(order_id)
    except KeyError:
        order = lookup_order(order_id.strip("#"))  # the failed lookup stays in the trace, in red
    prompt = f"Context: {context}\nOrder: {order}\nQuestion: {question}"
    return llm(prompt)


if __name__ == "__main__":
    print(answer("where is my order and how do refunds work?", "#1042"))
    tracer.enrich_session(metadata={"user": "demo"}, feedback={"helpful": True})
    tracer.flush()
    print("Now run:  tracer show last   (or: python -m tracer show last)")
