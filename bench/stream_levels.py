"""Where the time a traced Mistral stream adds goes: the same short stream through wrappers that each
do a little more of what our patch does, every one timed against plain calls in one loop.

    python bench/stream_levels.py                                   # 4 processes x 600 rounds, about 4 minutes
    python bench/stream_levels.py --processes 8 --levels wrapper span tracer

The stream is ``llm_overhead.py``'s Mistral short stream (5 chunks; mistralai's real client on an
in-process mock transport) with the same tracer set-up (a discarding exporter, the worker flushed
every 200 calls outside the timing). Each process times every chosen level and a plain call in
turn, each in every place of the round equally often (``llm_overhead.balanced_orders``), so each
level's difference from ``wrapper`` comes from one process: the per-process bias that moves every figure by tens of µs
(a do-nothing wrapper reads anywhere from -40 to +70 µs added) cancels out of it.

Levels, each doing what the one before does and more, except ``floor`` and ``fewest-calls``:

* ``wrapper``: a wrapt wrapper that calls straight through: what any patch costs.
* ``floor``: the least a patch that records the call could do on the calling thread: the start
  time, the current span, a copy of the arguments, and from the chunks as they pass the text,
  finish reason, response id, model, token counts and the first text's arrival, kept as one tuple.
  No event, ids, sampling, suppression of nested calls or error handling: a bound on what any
  design could reach, not one to ship.
* ``span``: a span current while the SDK call runs, ended by a generator passing the chunks on.
* ``request``: our ``Call`` instead: the request saved for the worker, the event's end deferred.
* ``recorder``: and Mistral's recorder taking each chunk as it passes: the whole event.
* ``fewest-calls``: the same event, made with as few of our functions on the calling thread as
  possible (no suppression, sampling or error handling, no proxy). Not a design to ship; a bound on
  what restructuring our calling-thread code could save.
* ``tracer``: the patched method as ``instrument()`` installs it.

Each process first records one stream with every level that makes the whole event and checks that
the events match the patched method's (ids and times aside), and that ``floor`` kept the same
content: a bound that recorded less would mean nothing.

Reported per level: µs added to the stream (its 5 chunks included), and the same less the
process's ``wrapper`` figure; means of the processes' medians, their range in brackets.

``--dispatch`` swaps nothing on the class between calls: one wrapper installed once runs the
chosen level's wrapper function, or calls straight through for the plain call. It checks that the
figures are not an artifact of the ``setattr`` on the SDK's class before every call.

How far to trust a difference between two levels: the intermediate ones move with the set of
levels in the loop. In scratch runs with other sets (2026-12-07), the step from ``span`` to a
``Call`` ended the same way read +40 µs in one set and +1 in another; only the large, repeated
differences (``span`` against ``tracer``, ``fewest-calls`` against ``tracer``) held across sets.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import llm_overhead as lo
import wrapt
from mistralai.client import chat as mistral_chat

import tracer
import tracer.integrations
import tracer.integrations._llm as llm
import tracer.integrations.mistralai as mistral
from tracer import _lifecycle
from tracer._context import current_span_var, inside_call
from tracer._default import get_default_tracer
from tracer._tracer import recorder_of

LEVELS = ("wrapper", "floor", "span", "request", "recorder", "fewest-calls", "tracer")
WHOLE_EVENT = ("recorder", "fewest-calls")  # checked against the patched method's event
NAME = "mistral.chat.stream"
_perf_ns = time.perf_counter_ns
# What ``floor`` records, kept about as long as the tracer's queue keeps its records (the worker's
# turn comes every 200 traced calls in ``measure_settings``).
floor_records: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=200)


class Keep(tracer.Exporter):
    """Decodes every batch, as a real exporter reads it; keeps the events only when asked."""

    def __init__(self) -> None:
        self.keep = False
        self.events: list[dict[str, Any]] = []

    def export(self, batch: tracer.Batch) -> bool:
        events = batch.events()
        if self.keep:
            self.events.extend(events)
        return True


def make_levels(original: Any, patched: Any) -> dict[str, Any]:
    """The method each level puts on ``Chat.stream``."""
    recorder = recorder_of(get_default_tracer())
    api = llm.Api(
        NAME, mistral.LIBRARY, mistral._chat_request, mistral._chat_result, mistral.ChatStream, mistral._streams,
        saved=("messages", "tools"),
    )  # fmt: skip

    def passing(source: Iterator[Any], end: Callable[[], None]) -> Iterator[Any]:
        yield None
        yield from source
        end()

    def chained(stream: Any, generator: Iterator[Any]) -> Any:
        next(generator)  # primed, as ours are
        stream.generator = generator
        return stream

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    def span(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        event = recorder.start_under(current_span_var.get(), NAME, "model")
        assert event is not None
        previous, inside = current_span_var.set(event), inside_call.set(True)
        stream = wrapped(*args, **kwargs)
        current_span_var.reset(previous)
        inside_call.reset(inside)
        return chained(stream, passing(stream.generator, event.end))

    def start(instance: Any, kwargs: Any) -> llm.Call:
        call = llm.begin(NAME)
        assert call is not None
        call.request(api.request, instance, llm.save_request(kwargs, api.saved))
        return call

    def request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = start(instance, kwargs)
        previous = call.enter()
        stream = wrapped(*args, **kwargs)
        call.leave(previous)
        return chained(stream, passing(stream.generator, lambda: call.finish(None, None)))

    def taking(source: Iterator[Any], stream_recorder: llm.StreamRecorder) -> Iterator[Any]:
        yield None
        for item in source:
            stream_recorder.take_now(item)
            yield item
        stream_recorder.finish(None)

    def recording(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = start(instance, kwargs)
        previous = call.enter()
        stream = wrapped(*args, **kwargs)
        call.leave(previous)
        stream_recorder = api.recorder(call)
        stream_recorder.start(stream.response, api.request_id_header)
        return chained(stream, taking(stream.generator, stream_recorder))

    def fewest_taking(source: Iterator[Any], stream_recorder: Any, call: Any, event: Any) -> Iterator[Any]:
        yield None
        for item in source:
            if stream_recorder.first_ns:
                stream_recorder.take(item)
            else:
                arrived = _perf_ns()
                if stream_recorder.take(item):
                    stream_recorder.first_ns = arrived
            yield item
        stream_recorder.done = True
        _lifecycle.untrack(stream_recorder)
        call.recorder, call.reason, call.done = stream_recorder, None, True
        event.end()

    def fewest_calls(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        event = recorder.start_under(current_span_var.get(), NAME, "model")
        call = llm.Call(event, True, True)  # type: ignore[arg-type]
        saved = dict(kwargs)
        messages = kwargs.get("messages")
        if type(messages) is list:
            saved["messages"] = messages.copy()
        call.request_shape, call.instance, call.kwargs, call.extra = api.request, instance, saved, None
        event._deferred = call  # type: ignore[union-attr]  # what Call.request does for our own span
        previous, inside = current_span_var.set(event), inside_call.set(True)
        stream = wrapped(*args, **kwargs)
        current_span_var.reset(previous)
        inside_call.reset(inside)
        stream_recorder = mistral.ChatStream(call)
        stream_recorder.headers, stream_recorder.header = stream.response.headers, api.request_id_header
        _lifecycle.track(stream_recorder)
        return chained(stream, fewest_taking(stream.generator, stream_recorder, call, event))

    def floor_taking(source: Iterator[Any], start_ns: int, parent: Any, saved: dict[str, Any]) -> Iterator[Any]:
        yield None
        first_ns = 0
        response_id = model = reason = usage = None
        text: list[str] = []
        for item in source:
            chunk = item.data
            if response_id is None:
                response_id, model = chunk.id, chunk.model
            if chunk.usage is not None:
                usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            choices = chunk.choices
            if choices:
                choice = choices[0]
                if choice.finish_reason is not None:
                    reason = choice.finish_reason
                content = choice.delta.content
                if type(content) is str and content:
                    text.append(content)
                    if not first_ns:
                        first_ns = _perf_ns()
            yield item
        floor_records.append((start_ns, first_ns, _perf_ns(), parent, saved, response_id, model, reason, text, usage))

    def floor(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        start_ns = _perf_ns()
        parent = current_span_var.get()
        saved = dict(kwargs)
        stream = wrapped(*args, **kwargs)
        return chained(stream, floor_taking(stream.generator, start_ns, parent, saved))

    made = {
        "floor": floor,
        "wrapper": wrapper,
        "span": span,
        "request": request,
        "recorder": recording,
        "fewest-calls": fewest_calls,
    }
    return {level: patched if level == "tracer" else wrapt.FunctionWrapper(original, made[level]) for level in LEVELS}


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """An event without what differs from call to call (ids, times; of the metrics, their names)."""
    varying = {"event_id", "parent_id", "session_id", "start_time", "end_time", "duration", "children_ids"}
    kept = {key: value for key, value in event.items() if key not in varying}
    kept["metrics"] = sorted(event.get("metrics") or {})  # which were recorded (time to first token…)
    return kept


def floor_differs(record: tuple[Any, ...], event: dict[str, Any]) -> bool:
    """Whether ``floor`` missed something of the event's content (its times are only checked for order)."""
    start_ns, first_ns, end_ns, _parent, saved, response_id, model, reason, text, usage = record
    outputs, metadata = event["outputs"], event["metadata"]
    return (
        not start_ns < first_ns <= end_ns
        or saved["messages"] != event["inputs"]["chat_history"]
        or saved["model"] != event["config"]["model"]
        or "".join(text) != outputs["content"]
        or reason != outputs["finish_reason"]
        or (response_id, model) != (metadata["response_id"], metadata["response_model"])
        or usage != (metadata["prompt_tokens"], metadata["completion_tokens"])
    )


def child(levels: list[str], pairs: int, dispatch: bool) -> dict[str, float]:
    """One process's median µs added per level (*dispatch*: see ``--dispatch``)."""
    exporter = Keep()
    lo.init_tracer(exporter)
    case = next(c for c in lo.make_cases(0, pairs) if c.name == "mistral chat.stream" and c.kind == "short")
    original = mistral_chat.Chat.stream
    tracer.integrations.instrument("mistralai")
    patched = mistral_chat.Chat.__dict__["stream"]
    methods = make_levels(original, patched)

    def apply(level: str | None) -> None:
        mistral_chat.Chat.stream = original if level is None else methods[level]

    if dispatch:
        # One wrapper on the class for good, running the level's wrapper function (or none).
        bodies = {level: method._self_wrapper for level, method in methods.items()}
        chosen: list[Any] = [None]

        def dispatcher(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            body = chosen[0]
            return wrapped(*args, **kwargs) if body is None else body(wrapped, instance, args, kwargs)

        mistral_chat.Chat.stream = wrapt.FunctionWrapper(original, dispatcher)

        def apply(level: str | None) -> None:
            chosen[0] = None if level is None else bodies[level]

    exporter.keep = True
    expected: dict[str, Any] | None = None
    for level in ("tracer", *WHOLE_EVENT):
        apply(level)
        case.once()
        tracer.flush(10)
        (event,) = exporter.events
        exporter.events.clear()
        if expected is None:
            expected = comparable(event)
        elif comparable(event) != expected:
            raise SystemExit(f"{level} recorded another event than the patched method:\n{event}\n{expected}")
    apply("floor")
    case.once()
    if floor_differs(floor_records[-1], event):
        raise SystemExit(f"floor recorded less than the patched method's event:\n{floor_records[-1]}\n{event}")
    exporter.keep = False
    for level in (*levels, None):  # warm every path
        for _ in range(10):
            apply(level)
            case.once()
    got = lo.measure_settings(case, apply, tuple(levels), [])
    return {level: figures["wall"] for level, figures in got.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=4, help="fresh processes to average over")
    parser.add_argument(
        "--pairs", type=int, default=600, help="rounds of calls per process (each level and a plain one)"
    )
    parser.add_argument("--levels", nargs="*", choices=LEVELS, default=list(LEVELS), help="levels to time")
    parser.add_argument(
        "--dispatch",
        action="store_true",
        help="swap nothing on the class between calls: one wrapper, installed once, runs the level's code"
        " (a plain call goes straight through it)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("processes", "pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    levels = list(dict.fromkeys(["wrapper", *args.levels]))  # the baseline of the second column
    if args.child:
        print(json.dumps(child(levels, args.pairs, args.dispatch)))
        return {}
    runs = []
    for number in range(args.processes):
        command = [sys.executable, __file__, "--child", "--pairs", str(args.pairs), "--levels", *levels]
        command += ["--dispatch"] if args.dispatch else []
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
        print(f"process {number + 1}/{args.processes} done", file=sys.stderr)
    print(
        f"mistral chat.stream, 5 chunks; {args.processes} processes x {args.pairs} rounds (each level and a plain call)"
        + ("; one dispatching wrapper, nothing swapped" if args.dispatch else "")
    )
    print("µs added to the stream: mean of the processes' medians [range]; then less the same process's wrapper")
    print(f"{'level':<14} {'added':>8} {'range':>16} {'- wrapper':>10} {'range':>16}")
    results: dict[str, Any] = {}
    for level in levels:
        added = [run[level] for run in runs]
        over = [run[level] - run["wrapper"] for run in runs]
        print(
            f"{level:<14} {statistics.fmean(added):>8.1f} {f'[{min(added):.1f}, {max(added):.1f}]':>16}"
            f" {statistics.fmean(over):>10.1f} {f'[{min(over):.1f}, {max(over):.1f}]':>16}"
        )
        results[level] = {"added_us": added, "over_wrapper_us": over}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
