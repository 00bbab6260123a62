"""Quickstart: trace a tiny "RAG" app and print its trace tree. No account, no network.

python examples/quickstart.py
"""

from __future__ import annotations

import tracer

tracer.init(project="quickstart", session_name="quickstart", exporter=tracer.ConsoleExporter())  # trees on stderr


@tracer.trace
def retrieve(question: str, k: int = 2) -> list[str]:
    corpus = ["Paris is the capital of France.", "Berlin is in Germany.", "The Seine flows through Paris."]
    words = set(question.lower().split())
    return sorted(corpus, key=lambda doc: -len(words & set(doc.lower().split())))[:k]


@tracer.trace(event_type="model", config={"provider": "fake", "model": "echo-1"})
def generate(question: str, context: list[str]) -> str:
    tracer.enrich_span(metadata={"prompt_tokens": 42, "completion_tokens": 7})
    return f"Answer to {question!r}, based on: {context[0]}"


@tracer.trace
def answer(question: str) -> str:
    return generate(question, retrieve(question))


if __name__ == "__main__":
    print(answer("what is the capital of france"))
    tracer.flush()
