"""Every OpenAI call becomes a ``model`` event: a small tool-using agent, traced without decorating a call.

python examples/openai_chat.py

Offline by default: the bundled fake OpenAI server (tests/fake_llm_server.py) is started on
127.0.0.1. With OPENAI_API_KEY set, the real API is used (model from OPENAI_MODEL, default
gpt-4o-mini). The trace tree is printed to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import tracer

tracer.init(session_name="openai_chat", exporter=tracer.ConsoleExporter())  # trees on stderr; import order free

import openai  # noqa: E402

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@tracer.trace(event_type="tool")
def get_weather(city: str) -> str:
    return f"Sunny and 22°C in {city}."


@tracer.trace(event_type="chain")
def answer(client: openai.OpenAI, model: str, question: str) -> str:
    messages: list[Any] = [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": question},
    ]
    # 1. The model asks for a tool (model event: config, chat_history, tool_calls, tokens).
    first = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, tool_choice="required", temperature=0
    )
    message = first.choices[0].message
    messages.append(message.model_dump(exclude_none=True))
    for call in message.tool_calls or []:
        arguments = json.loads(call.function.arguments)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)})
    # 2. The final answer, streamed (one model event for the whole stream, with time to first token).
    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def main() -> None:
    if os.environ.get("OPENAI_API_KEY"):
        print(answer(openai.OpenAI(), os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), "Weather in Paris?"))
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.fake_llm_server import FakeLLMServer

        with FakeLLMServer() as server:
            client = openai.OpenAI(base_url=server.openai_url, api_key="sk-fake", max_retries=0)
            print(answer(client, "gpt-4o-mini", "Weather in Paris?"))
    tracer.flush()


if __name__ == "__main__":
    main()
