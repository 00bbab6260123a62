"""Values that change while they are captured (run as a script by tests/capture/test_capture_races.py).

    python shapes.py SHAPE ROUNDS

Each shape made the code before the fix crash with SIGSEGV: another thread trimming a chat history
of pydantic messages (``pydantic_history``), another thread mutating a list of Decimals
(``decimal_list``) or the lists of a dict (``decimal_dict``), and a value's own conversion hook
emptying the list being serialized (``hook``). Prints the number of events recorded.
"""

from __future__ import annotations

import decimal
import sys
import threading
from typing import Any

import pydantic

import tracer
from tracer import InMemoryExporter


class Message(pydantic.BaseModel):
    role: str
    content: str


class Shrinker:
    """Empties the list it sits in when it is converted."""

    def __init__(self, owner: list[Any]) -> None:
        self.owner = owner

    def model_dump(self) -> dict[str, Any]:
        self.owner.clear()
        return {"shrunk": True}

    def __repr__(self) -> str:
        self.owner.clear()
        return "Shrinker"


def trim_history(shared: list[Any], stop: threading.Event) -> None:
    while not stop.is_set():
        if len(shared) > 50:
            del shared[: len(shared) // 2]
        else:
            shared.extend(Message(role="user", content="y") for _ in range(200))


def trim_decimals(shared: list[Any], stop: threading.Event) -> None:
    while not stop.is_set():
        if len(shared) > 50:
            del shared[: len(shared) // 2]
        else:
            shared.extend(decimal.Decimal(i) for i in range(300))


def trim_columns(shared: dict[str, list[Any]], stop: threading.Event) -> None:
    while not stop.is_set():
        for column in list(shared.values()):
            if len(column) > 20:
                del column[: len(column) // 2]
            else:
                column.extend(decimal.Decimal(i) for i in range(100))
        shared[f"column{len(shared) % 5}"] = [decimal.Decimal(i) for i in range(100)]


def main(shape: str, rounds: int) -> int:
    sys.setswitchinterval(1e-6)  # let the mutating thread in as often as possible
    memory = InMemoryExporter()
    t = tracer.Tracer(exporter=memory, batch=False, instrument=False)

    @t.trace
    def call(history: Any) -> int:
        return len(history)

    stop = threading.Event()
    shared: Any = None
    if shape == "pydantic_history":
        shared = [Message(role="user", content="x" * 50) for _ in range(200)]
        threading.Thread(target=trim_history, args=(shared, stop), daemon=True).start()
    elif shape == "decimal_list":
        shared = [decimal.Decimal(i) for i in range(300)]
        threading.Thread(target=trim_decimals, args=(shared, stop), daemon=True).start()
    elif shape == "decimal_dict":
        shared = {f"column{c}": [decimal.Decimal(i) for i in range(100)] for c in range(3)}
        threading.Thread(target=trim_columns, args=(shared, stop), daemon=True).start()
    elif shape != "hook":
        raise SystemExit(f"unknown shape {shape!r}")
    for _ in range(rounds):
        if shape == "hook":
            value: list[Any] = []
            value.extend([Shrinker(value), *(decimal.Decimal(n) for n in range(100)), *(object() for _ in range(100))])
            call(value)
        else:
            call(shared)
    stop.set()
    print("events", len(memory.events))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], int(sys.argv[2])))
