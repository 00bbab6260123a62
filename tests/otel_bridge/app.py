"""Apps traced with tracer and OpenTelemetry instrumentations together, one scenario per run.

``python tests/otel_bridge/app.py SCENARIO STORE [OPENAI_URL]`` runs SCENARIO with
``tracer.init(store=STORE, otel_bridge=True)`` and flushes: the test reads the events from the
store. A process per scenario, as the bridge (like OpenTelemetry's global TracerProvider and the
instrumentors' patches) is process-wide.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from typing import Any

import tracer

SCENARIO, STORE = sys.argv[1], sys.argv[2]
OPENAI_URL = sys.argv[3] if len(sys.argv) > 3 else ""


def otel_tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("tests.otel_bridge")


def nesting() -> None:
    """Both directions, sync: tracer > OTel > tracer > OTel, and an OTel root > tracer."""
    otel = otel_tracer()

    @tracer.trace
    def inner() -> str:
        with otel.start_as_current_span("otel-leaf") as leaf:
            leaf.set_attribute("openinference.span.kind", "TOOL")
        return "done"

    with tracer.span("outer"), otel.start_as_current_span("otel-mid"):
        inner()
    with otel.start_as_current_span("otel-root"), tracer.span("under-otel-root"):
        pass
    # A span started without being made current (OpenInference's LangChain callbacks): our spans
    # started until it ends, here, are its children.
    with tracer.span("outer-2"):
        unattached = otel.start_span("otel-unattached")
        with tracer.span("under-unattached"):
            pass
        unattached.end()
        with tracer.span("after-unattached"):
            pass
    # Made current in another thread (one started before the span existed, so our context propagation
    # cannot carry it there): OpenTelemetry's attach makes it our current span there too.
    import queue

    from opentelemetry import trace

    handed: queue.Queue[Any] = queue.Queue()

    def worker() -> None:
        span = handed.get()
        with trace.use_span(span, end_on_exit=True), tracer.span("under-attached-elsewhere"):
            pass
        with tracer.span("after-attached-elsewhere"):
            pass

    thread = threading.Thread(target=worker)
    thread.start()
    handed.put(otel.start_span("otel-handed-over"))
    thread.join()


def asyncio_and_threads() -> None:
    otel = otel_tracer()

    @tracer.trace
    async def task(index: int) -> None:
        with otel.start_as_current_span(f"otel-task-{index}"):
            await asyncio.sleep(0.001)
            with tracer.span(f"under-otel-task-{index}"):
                await asyncio.sleep(0.001)

    async def main() -> None:
        with tracer.span("async-root"):
            await asyncio.gather(task(0), task(1), task(2))

    asyncio.run(main())

    def in_thread(index: int) -> None:
        with otel.start_as_current_span(f"otel-thread-{index}"), tracer.span(f"under-otel-thread-{index}"):
            pass

    with tracer.span("threads-root"):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(in_thread, range(2)))
        thread = threading.Thread(target=in_thread, args=(9,))
        thread.start()
        thread.join()


def error() -> None:
    otel = otel_tracer()
    with tracer.span("outer"):
        try:
            with otel.start_as_current_span("otel-fails"):
                raise KeyError("missing")
        except KeyError:
            pass


def openai_client() -> Any:
    import openai

    return openai.OpenAI(base_url=OPENAI_URL, api_key="sk-test", max_retries=0)


def openinference_openai() -> None:
    """OpenInference's OpenAI instrumentor (it wraps the client's request method, under ours)."""
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument()
    client = openai_client()
    with tracer.span("ask"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])


def native_under_otel_span() -> None:
    """Our OpenAI integration inside a plain OpenTelemetry span: the span is kept, our event under it."""
    otel = otel_tracer()
    client = openai_client()
    with tracer.span("ask"), otel.start_as_current_span("otel-step"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])


def otel_openai_v2() -> None:
    """OpenTelemetry's own OpenAI instrumentation, instrumented after tracer: its wrapper is outside ours."""
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    OpenAIInstrumentor().instrument()
    client = openai_client()
    with tracer.span("ask"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])


def langchain_chain() -> Any:
    """A LangChain chain (prompt | ChatOpenAI | parser, and a lambda calling a traced function)
    under OpenInference's LangChain and OpenAI instrumentors."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda
    from langchain_openai import ChatOpenAI
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from openinference.instrumentation.openai import OpenAIInstrumentor

    LangChainInstrumentor().instrument()
    OpenAIInstrumentor().instrument()

    @tracer.trace
    def shout(text: str) -> str:
        return text.upper()

    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{question}")])
    model = ChatOpenAI(model="gpt-4o-mini", base_url=OPENAI_URL, api_key="sk-test", max_retries=0)  # type: ignore[arg-type]
    return prompt | model | StrOutputParser() | RunnableLambda(shout)


def langchain() -> None:
    chain = langchain_chain()

    @tracer.trace
    def pipeline(question: str) -> str:
        answer: str = chain.invoke({"question": question})
        return answer

    pipeline("What is the capital of France?")


def langchain_async() -> None:
    """The same chain through ``ainvoke``: LangChain runs OpenInference's callbacks in an executor,
    so the ``ChatOpenAI`` span starts in another thread than the OpenAI call it stands for."""
    chain = langchain_chain()

    @tracer.trace
    async def pipeline(question: str) -> str:
        answer: str = await chain.ainvoke({"question": question})
        return answer

    asyncio.run(pipeline("What is the capital of France?"))


SCENARIOS = {
    "nesting": nesting,
    "asyncio_and_threads": asyncio_and_threads,
    "error": error,
    "openinference_openai": openinference_openai,
    "openinference_openai_no_native": openinference_openai,
    "otel_openai_v2": otel_openai_v2,
    "native_under_otel_span": native_under_otel_span,
    "langchain": langchain,
    "langchain_async": langchain_async,
}

if __name__ == "__main__":
    import json

    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    native = not SCENARIO.endswith("_no_native")
    tracer.init(store=STORE, otel_bridge=True, instrument=native, session_name="bridge-test")
    # What OpenTelemetry itself recorded, next to the bridge (the provider tracer installed).
    seen = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(seen))  # type: ignore[attr-defined]
    SCENARIOS[SCENARIO]()
    assert tracer.flush(10.0), tracer.stats()
    print(json.dumps([{"name": s.name, "attributes": sorted(s.attributes or {})} for s in seen.get_finished_spans()]))
