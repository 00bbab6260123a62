"""Work handed to thread pools and threads nests under the span that started it.

python examples/threads.py
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import tracer

tracer.init(project="examples", session_name="threads", exporter=tracer.ConsoleExporter())


@tracer.trace
def embed(text: str) -> list[float]:
    return [float(len(word)) for word in text.split()]


@tracer.trace
def index_documents(docs: list[str]) -> int:
    with ThreadPoolExecutor(max_workers=2) as pool:
        vectors = list(pool.map(embed, docs))  # each embed() is a child of index_documents
    audit = threading.Thread(target=embed, args=("audit log entry",))
    audit.start()  # plain threads nest too
    audit.join()
    return len(vectors)


if __name__ == "__main__":
    print(index_documents(["a b c", "hello world", "tracing across threads"]))
    tracer.flush()
