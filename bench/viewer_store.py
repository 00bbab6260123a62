"""Build a large trace store for the viewer's and `tracer show`'s measurements (not a test).

    .venv/bin/python bench/viewer_store.py /tmp/big.db --sessions 1 --events 200000   # one huge session
    .venv/bin/python bench/viewer_store.py /tmp/many.db --sessions 2000 --events 100  # many sessions

Each session is a tree like an agent's: a root chain, steps (chains) under it, and under each step
a model call (chat history, tokens), tool calls, and now and then a failure. Events go straight
into the store in batches (``TraceStore.write``), as the store exporter writes them.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from tracer.store import TraceStore

_MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "llama-3-70b")
_WORDS = [
    "order",
    "refund",
    "shipping",
    "invoice",
    "account",
    "password",
    "delivery",
    "warranty",
    "discount",
    "subscription",
]
_STEP = 10  # children per step: one model call, then tools


def _event(
    session: str, parent: str, kind: str, name: str, start: int, duration: float, **fields: Any
) -> dict[str, Any]:
    return {
        "project": "bench",
        "source": "bench",
        "event_id": str(uuid.uuid4()),
        "session_id": session,
        "parent_id": parent,
        "event_type": kind,
        "event_name": name,
        "children_ids": [],
        "config": fields.pop("config", {}),
        "inputs": fields.pop("inputs", {}),
        "outputs": fields.pop("outputs", {}),
        "error": fields.pop("error", None),
        "start_time": start,
        "end_time": start + int(duration),
        "duration": duration,
        "metadata": fields.pop("metadata", {}),
        "feedback": {},
        "metrics": {},
        "user_properties": {},
    }


def session_events(rng: random.Random, session: str, count: int, start: int) -> Iterator[dict[str, Any]]:
    """*count* events of one session (the root first), starting at *start* epoch ms."""
    root = _event(session, session, "chain", "agent", start, float(count * 2), inputs={"question": "help"})
    yield root
    made, clock = 1, start
    while made < count:
        step = _event(session, root["event_id"], "chain", f"step-{made}", clock, 2.0 * _STEP)
        yield step
        made += 1
        for child in range(min(_STEP, count - made)):
            topic = rng.choice(_WORDS)
            if child == 0:
                model = rng.choice(_MODELS)
                yield _event(
                    session, step["event_id"], "model", "chat", clock, 1.5,
                    config={"model": model, "provider": "openai"},
                    inputs={"chat_history": [
                        {"role": "system", "content": "You are a support agent."},
                        {"role": "user", "content": f"What about my {topic}? Ticket {rng.randrange(10**6)}"},
                    ]},
                    outputs={"role": "assistant", "content": f"I checked your {topic}: all good ({made})."},
                    metadata={"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
                )  # fmt: skip
            else:
                failed = rng.random() < 0.02
                yield _event(
                    session, step["event_id"], "tool", f"lookup_{topic}", clock + child, 0.8,
                    inputs={"query": f"{topic} {rng.randrange(10**6)}"},
                    outputs={} if failed else {"result": f"{topic} record {made}"},
                    error=f"TimeoutError: {topic} service did not answer" if failed else None,
                )  # fmt: skip
            made += 1
        clock += 2 * _STEP


def build(path: str, sessions: int, events: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    start = int(time.time() * 1000) - sessions * events * 20
    with TraceStore(path) as store:
        for index in range(sessions):
            session = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            props = {session: {"session_id": session, "session_name": f"support-{index}", "source": "bench"}}
            batch: list[tuple[dict[str, Any], str]] = []
            for event in session_events(rng, session, events, start + index * events * 20):
                batch.append((event, orjson.dumps(event).decode()))
                if len(batch) == 5000:
                    store.write(batch, props)
                    batch = []
            store.write(batch, props)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--events", type=int, default=200_000, help="per session")
    args = parser.parse_args()
    began = time.perf_counter()
    build(args.path, args.sessions, args.events)
    print(f"{args.sessions * args.events:,} events in {args.path} ({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
