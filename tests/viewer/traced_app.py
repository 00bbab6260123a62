"""A small traced app for the viewer's tests, run as a subprocess: ``python traced_app.py STORE``.

Writes (without an API key, to the store) four sessions: three "support" conversations (a chain
calling a retriever, a failing tool, a model with a chat transcript) and one whose names, inputs and
error are hostile markup. Prints the session ids, one JSON object per line.
"""

from __future__ import annotations

import contextlib
import sys

import orjson

import tracer

HOSTILE_NAME = "<script>alert('name')</script>"
HOSTILE_INPUT = "<img src=x onerror=alert('input')>"


@tracer.trace(event_type="tool")
def search_docs(query: str) -> list[str]:
    return [f"Refunds are processed within 5 business days ({query})."]


@tracer.trace(event_type="tool")
def lookup_order(order_id: str) -> dict[str, str]:
    if not order_id.isdigit():
        raise KeyError(f"no order {order_id!r}")
    return {"order_id": order_id, "status": "shipped"}


@tracer.trace(event_type="model", config={"provider": "fake", "model": "fake-gpt-mini"})
def llm(chat_history: list[dict[str, str]]) -> dict[str, str]:
    tracer.enrich_span(metadata={"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52})
    return {"role": "assistant", "content": "Yes, we will refund you in full."}


@tracer.trace(event_type="chain")
def answer(question: str, order_id: str) -> dict[str, str]:
    search_docs(question)
    try:
        lookup_order(order_id)
    except KeyError:
        lookup_order(order_id.strip("#"))
    return llm([{"role": "system", "content": "You are a support bot."}, {"role": "user", "content": question}])


@tracer.trace(event_type="tool", event_name=HOSTILE_NAME)
def hostile(text: str) -> str:
    raise ValueError(f"bad input {text}")


def main() -> None:
    tracer.init(project="viewer-test", store=sys.argv[1], source="viewer-test")
    ids = {}
    for index in range(3):
        with tracer.session(f"support-{index}") as session:
            answer(f"where is order {index} and can I get a refund?", "#104" + str(index))
            ids[f"support-{index}"] = session.session_id
    with tracer.session(HOSTILE_NAME) as session:
        with contextlib.suppress(ValueError):
            hostile(HOSTILE_INPUT)
        ids["hostile"] = session.session_id
    tracer.flush()
    print(orjson.dumps(ids).decode())


if __name__ == "__main__":
    main()
