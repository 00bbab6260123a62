"""``@trace``: one decorator for functions, coroutines, generators, async generators and methods.

Everything that can be decided once is decided at decoration time: the function's kind, its
event name, and a generated *binder* with the function's own signature that turns a call's
arguments into the ``inputs`` dict at C speed (defaults applied, ``*args``/``**kwargs`` kept).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import sys
import time
import types
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from typing import Any, Final

from ._errors import report_internal_error
from ._fields import as_fields
from ._span import EVENT_TYPES, Recorder, RecorderRef, Span, current_span_var

__all__ = ["TraceSpec", "make_binder", "make_decorator", "running_call_spans", "validate_event_type"]

_perf_ns = time.perf_counter_ns
_RECEIVER_NAMES: Final = ("self", "cls")


def validate_event_type(event_type: str | None) -> str | None:
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ValueError(
            f"event_type must be one of 'chain', 'model', 'tool' (or None to infer it), got {event_type!r}"
        )
    return event_type


Binder = Callable[..., dict[str, Any]]


def _generic_binder(*args: Any, **kwargs: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if args:
        inputs["args"] = args
    inputs.update(kwargs)
    return inputs


def make_binder(fn: Callable[..., Any], ignore: Iterable[str] = ()) -> Binder:
    """Build ``bind(*args, **kwargs) -> inputs`` with the signature ``inspect.signature(fn)`` reports.

    That signature follows ``__wrapped__``: a ``functools.wraps`` wrapper (retry, caching,
    framework decorators) taking ``*args, **kwargs`` records the wrapped function's parameter
    names. A wrapper may accept calls its wrapped function does not (it injects an argument,
    say): such a call is recorded as ``{"args": [...], **kwargs}`` rather than failing, so the
    binder never raises for a call the wrapper accepts. A leading ``self``/``cls`` is left out,
    and so are the names in *ignore*.
    """
    try:
        own = inspect.signature(fn, follow_wrapped=False)
    except (TypeError, ValueError):
        return _generic_binder
    try:
        followed = inspect.signature(fn)
    except (TypeError, ValueError):
        followed = own
    try:
        same = followed == own
    except Exception:  # a default whose == raises or is ambiguous (a numpy array, say)
        same = False
    if same:
        return _compile_binder(own, fn, ignore)[0]
    bind_wrapped, drops_receiver = _compile_binder(followed, fn, ignore)
    fallback = _generic_binder_after_receiver if drops_receiver else _generic_binder

    def bind_wrapped_or_generic(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return bind_wrapped(*args, **kwargs)
        except TypeError:  # a call the wrapper accepts and its wrapped signature does not
            return fallback(*args, **kwargs)

    return bind_wrapped_or_generic


def _generic_binder_after_receiver(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return _generic_binder(*args[1:], **kwargs)


def _compile_binder(signature: inspect.Signature, fn: Callable[..., Any], ignore: Iterable[str]) -> tuple[Binder, bool]:
    """A binder for *signature* (Python's own argument binding, in C, applies defaults and collects
    ``*args``/``**kwargs``; the generated function only returns them as a dict), and whether it
    leaves out a leading ``self``/``cls``."""
    ignored = set(ignore)
    params = list(signature.parameters.values())
    drops_receiver = bool(
        params
        and params[0].name in _RECEIVER_NAMES
        and params[0].kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    )
    if drops_receiver:
        ignored.add(params[0].name)
    namespace: dict[str, Any] = {}
    parts: list[str] = []
    entries: list[str] = []
    var_keyword: str | None = None
    seen_kw_only_marker = False
    last_positional_only = max(
        (i for i, p in enumerate(params) if p.kind is inspect.Parameter.POSITIONAL_ONLY), default=-1
    )
    for index, param in enumerate(params):
        name = param.name
        if not name.isidentifier():  # pragma: no cover - signatures come from real functions
            return _generic_binder, False
        text = name
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            text = "*" + name
            seen_kw_only_marker = True
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            text = "**" + name
            var_keyword = name
        elif param.kind is inspect.Parameter.KEYWORD_ONLY and not seen_kw_only_marker:
            parts.append("*")
            seen_kw_only_marker = True
        if param.default is not inspect.Parameter.empty:
            default_name = f"_tracer_default_{index}"
            namespace[default_name] = param.default
            text += f"={default_name}"
        parts.append(text)
        if index == last_positional_only:
            parts.append("/")
        if name not in ignored and param.kind is not inspect.Parameter.VAR_KEYWORD:
            entries.append(f"{name!r}: {name}")
    body = "{" + ", ".join(entries)
    if var_keyword is not None:
        body += (", " if entries else "") + f"**{var_keyword}"
    body += "}"
    source = f"def _tracer_bind({', '.join(parts)}):\n    return {body}\n"
    try:
        exec(compile(source, f"<tracer binder for {getattr(fn, '__qualname__', fn)!s}>", "exec"), namespace)
    except SyntaxError:  # pragma: no cover - defensive: fall back rather than fail decoration
        return _generic_binder, False
    binder: Binder = namespace["_tracer_bind"]
    leftover = ignored - {p.name for p in params}
    if var_keyword is not None and leftover:
        inner = binder

        def binder(*args: Any, **kwargs: Any) -> dict[str, Any]:
            inputs = inner(*args, **kwargs)
            for key in leftover:
                inputs.pop(key, None)
            return inputs

    return binder, drops_receiver


class _Options:
    """Per-decorator settings, resolved once at decoration time."""

    __slots__ = ("binder", "capture_inputs", "capture_output", "config", "event_name", "event_type", "metadata")

    def __init__(
        self,
        event_name: str,
        event_type: str | None,
        config: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        capture_inputs: bool,
        capture_output: bool,
        binder: Binder,
    ) -> None:
        self.event_name = event_name
        self.event_type = event_type
        # Copied once, here; like everywhere else a non-mapping is recorded as {"value": ...}.
        self.config = dict(as_fields(config, "config")) if config else None
        self.metadata = dict(as_fields(metadata, "metadata")) if metadata else None
        self.capture_inputs = capture_inputs
        self.capture_output = capture_output
        self.binder = binder


def _begin(recorder: Recorder, opts: _Options, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | None:
    """Start the span for one call, or None to call straight through. Never raises."""
    try:
        span = recorder.start(opts.event_name, opts.event_type)
        if span is None:
            return None
        if opts.capture_inputs and recorder.capture_content:
            # A TypeError means the call itself is invalid; the user's function raises the real error.
            with contextlib.suppress(TypeError):
                span._inputs = opts.binder(*args, **kwargs)
        if opts.config is not None or opts.metadata is not None:
            _apply_extra(span, opts)
        return span
    except Exception as exc:
        report_internal_error("starting a span", exc)
        return None


def _fail(span: Span, exc: BaseException) -> None:
    try:
        try:
            span.set_error(exc)
        finally:
            span.end()  # whatever happened above: a span left open would be lost for good
    except Exception as internal:
        report_internal_error("recording an error", internal)


class _StreamState:
    """What a traced (async) generator has produced so far."""

    __slots__ = ("all_text", "count", "first_ns", "items", "max_chars", "max_items", "text_chars")

    def __init__(self, max_items: int, max_chars: int) -> None:
        self.items: list[Any] = []
        self.text_chars = 0
        self.all_text = True
        self.count = 0
        self.first_ns = 0
        self.max_items = max_items
        self.max_chars = max_chars

    def add(self, item: Any) -> None:
        if self.count == 0:
            self.first_ns = _perf_ns()
        self.count += 1
        if isinstance(item, str):
            if self.text_chars < self.max_chars:
                self.items.append(item)
            self.text_chars += str.__len__(item)  # not len(): a str subclass may override __len__
        else:
            self.all_text = False
            if len(self.items) < self.max_items:
                self.items.append(item)

    def fail(self, span: Span, opts: _Options, exc: BaseException, reason: str | None = None) -> None:
        """The generator raised (while running, or in its cleanup when closed for *reason*): keep
        the partial output and the counts, and record the error."""
        try:
            span.set_error(exc)
        except Exception as internal:
            report_internal_error("recording an error", internal)
        self.finish(span, opts, reason)

    def finish_reason(self, opts: _Options, span: Span, reason: str) -> None:
        """End *span* early for *reason* (argument order suits functools.partial)."""
        self.finish(span, opts, reason)

    def finish(self, span: Span, opts: _Options, reason: str | None) -> None:
        try:
            metrics: dict[str, Any] = {"item_count": self.count}
            if self.count:
                metrics["time_to_first_item_ms"] = (self.first_ns - span._start) / 1_000_000
            span.update(metrics=metrics)
            if reason is not None:
                span.update(metadata={"ended_early": True, "end_reason": reason})
            if opts.capture_output and span._recorder.capture_content and span._outputs is None:
                if self.all_text:
                    text = "".join(self.items)
                    if self.text_chars > len(text):
                        text += f"…[truncated: {self.text_chars} chars in total]"
                    span._outputs = {"result": text}
                else:
                    kept: list[Any] = self.items
                    if self.count > len(kept):
                        kept = [*kept, f"<{self.count - len(kept)} more items>"]
                    span._outputs = {"result": kept}
            span.end()
        except Exception as internal:
            report_internal_error("ending a generator span", internal)


@dataclasses.dataclass(frozen=True, slots=True)
class TraceSpec:
    """What ``@trace(...)`` was given; validated once, shared by every function it decorates."""

    event_type: str | None = None
    event_name: str | None = None
    config: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    capture_inputs: bool = True
    capture_output: bool = True
    ignore_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_event_type(self.event_type)


def make_decorator(fn: Callable[..., Any], ref: RecorderRef, spec: TraceSpec) -> Callable[..., Any]:
    """Wrap *fn* (the kind is decided here, once)."""
    if isinstance(fn, (classmethod, staticmethod)):
        return type(fn)(make_decorator(fn.__func__, ref, spec))
    if not callable(fn):
        raise TypeError(f"@trace needs a function or callable, got {type(fn).__name__}")
    target: Any = fn
    if not inspect.isroutine(fn) and not inspect.isclass(fn):
        target = type(fn).__call__.__get__(fn)  # a callable instance: inspect and name its __call__
    name = (
        spec.event_name
        or getattr(fn, "__qualname__", None)
        or getattr(target, "__qualname__", None)
        or type(fn).__qualname__
    )
    opts = _Options(
        name,
        spec.event_type,
        spec.config,
        spec.metadata,
        spec.capture_inputs,
        spec.capture_output,
        make_binder(target, spec.ignore_inputs) if spec.capture_inputs else _generic_binder,
    )
    if inspect.isasyncgenfunction(target):
        return _wrap_async_generator(fn, ref, opts)
    if inspect.isgeneratorfunction(target):
        return _wrap_generator(fn, ref, opts)
    if inspect.iscoroutinefunction(target):
        return _wrap_coroutine(fn, ref, opts)
    return _wrap_function(fn, ref, opts)


# The two wrappers below run on every traced call. They inline what _begin() does and keep the
# library's own work inside try/except, while the user's function runs outside of it: its
# exceptions pass through untouched, and it is never called twice.


def _wrap_function(fn: Callable[..., Any], ref: RecorderRef, opts: _Options) -> Callable[..., Any]:
    var = current_span_var
    name, event_type, binder = opts.event_name, opts.event_type, opts.binder
    capture_inputs, capture_output = opts.capture_inputs, opts.capture_output
    extra = opts.config is not None or opts.metadata is not None

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        recorder = ref.recorder or ref.get()
        if recorder.disabled:
            return fn(*args, **kwargs)
        previous = var.get()
        span: Span | None
        try:
            if previous is not None and previous._recorder is recorder:
                # Recorder.start_under, inlined for the usual nested call (a current span's session
                # is always sampled: a sampled-out session has no spans).
                span = Span(recorder, previous._session, previous, name, event_type, False)
            else:
                span = recorder.start_under(previous, name, event_type, False)
            if span is not None:
                if capture_inputs and recorder.capture_content:
                    try:  # noqa: SIM105 - faster than contextlib.suppress on this path
                        span._inputs = binder(*args, **kwargs)
                    except TypeError:
                        pass  # an invalid call: the user's function raises the real error below
                if extra:
                    _apply_extra(span, opts)
        except Exception as exc:
            report_internal_error("starting a span", exc)
            span = None
        if span is None:
            return fn(*args, **kwargs)
        var.set(span)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            var.set(previous)
            _fail(span, exc)
            raise
        var.set(previous)
        if capture_output and span._outputs is None and recorder.capture_content:
            span._outputs = {"result": result}
        else:
            _merge_result(span, opts, result)
        span.end()  # never raises: it guards the library's own work
        return result

    return wrapper


# The code of every traced function's wrapper (one code object, many closures): how the exit
# handler recognizes their frames.
_CALL_WRAPPER_CODE: Final = next(
    const
    for const in _wrap_function.__code__.co_consts
    if isinstance(const, types.CodeType) and const.co_name == "wrapper"
)


def running_call_spans() -> list[Span]:
    """The open spans of traced functions running on any thread now (their spans are not in a
    recorder's ``open_spans``): at exit, a daemon thread still inside a traced function."""
    found: list[Span] = []
    for top in sys._current_frames().values():
        frame: types.FrameType | None = top
        while frame is not None:
            if frame.f_code is _CALL_WRAPPER_CODE:
                span = frame.f_locals.get("span")
                if isinstance(span, Span) and not span._ended:
                    found.append(span)
            frame = frame.f_back
    return found


def _wrap_coroutine(fn: Callable[..., Any], ref: RecorderRef, opts: _Options) -> Callable[..., Any]:
    var = current_span_var
    name, event_type, binder = opts.event_name, opts.event_type, opts.binder
    capture_inputs, capture_output = opts.capture_inputs, opts.capture_output
    extra = opts.config is not None or opts.metadata is not None

    @functools.wraps(fn)
    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        recorder = ref.recorder or ref.get()
        if recorder.disabled:
            return await fn(*args, **kwargs)
        previous = var.get()
        span: Span | None
        try:
            if previous is not None and previous._recorder is recorder:
                # Recorder.start_under, inlined for the usual nested call (a current span's session
                # is always sampled: a sampled-out session has no spans).
                span = Span(recorder, previous._session, previous, name, event_type)
            else:
                span = recorder.start_under(previous, name, event_type)
            if span is not None:
                if capture_inputs and recorder.capture_content:
                    try:  # noqa: SIM105 - faster than contextlib.suppress on this path
                        span._inputs = binder(*args, **kwargs)
                    except TypeError:
                        pass  # an invalid call: the user's function raises the real error below
                if extra:
                    _apply_extra(span, opts)
        except Exception as exc:
            report_internal_error("starting a span", exc)
            span = None
        if span is None:
            return await fn(*args, **kwargs)
        var.set(span)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            var.set(previous)
            _fail(span, exc)
            raise
        var.set(previous)
        if capture_output and span._outputs is None and recorder.capture_content:
            span._outputs = {"result": result}
        else:
            _merge_result(span, opts, result)
        span.end()
        return result

    return async_wrapper


def _apply_extra(span: Span, opts: _Options) -> None:
    rare: dict[str, dict[str, Any]] = {}
    if opts.config is not None:
        rare["config"] = dict(opts.config)
    if opts.metadata is not None:
        rare["metadata"] = dict(opts.metadata)
    span._rare = rare


def _merge_result(span: Span, opts: _Options, result: Any) -> None:
    """The output when enrich_span() already set some outputs: add 'result' unless it is there."""
    try:
        outputs = span._outputs
        if opts.capture_output and span._recorder.capture_content and isinstance(outputs, dict):
            outputs.setdefault("result", result)
    except Exception as internal:
        report_internal_error("recording the output", internal)


def _wrap_generator(fn: Callable[..., Any], ref: RecorderRef, opts: _Options) -> Callable[..., Any]:
    var = current_span_var

    @functools.wraps(fn)
    def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        recorder = ref.recorder or ref.get()
        span = None if recorder.disabled else _begin(recorder, opts, args, kwargs)
        if span is None:
            return (yield from fn(*args, **kwargs))
        state = _StreamState(recorder.limits.max_items, recorder.limits.max_string_length)
        recorder.track_open(span, functools.partial(state.finish_reason, opts))
        previous = var.get()
        var.set(span)
        try:
            gen = fn(*args, **kwargs)
        except BaseException as exc:
            var.set(previous)
            _fail(span, exc)
            raise
        var.set(previous)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            previous = var.get()
            var.set(span)  # the span is current only while the generator body runs
            try:
                if to_throw is not None:
                    exc_in, to_throw = to_throw, None
                    item = gen.throw(exc_in)
                else:
                    item = gen.send(to_send)
            except StopIteration as stop:
                var.set(previous)
                state.finish(span, opts, None)
                return stop.value
            except BaseException as exc:
                var.set(previous)
                state.fail(span, opts, exc)
                raise
            var.set(previous)
            state.add(item)
            try:
                to_send = yield item
            except GeneratorExit:
                # close(), break out of a for loop, or garbage collection of the abandoned generator.
                previous = var.get()
                var.set(span)
                try:
                    gen.close()
                except BaseException as exc:  # raised by the generator's own cleanup (finally:)
                    var.set(previous)
                    state.fail(span, opts, exc, "closed")
                    raise  # reaches the caller of close() unchanged
                var.set(previous)
                state.finish(span, opts, "closed")
                raise
            except BaseException as exc:
                to_throw = exc

    return gen_wrapper


def _wrap_async_generator(fn: Callable[..., Any], ref: RecorderRef, opts: _Options) -> Callable[..., Any]:
    var = current_span_var

    @functools.wraps(fn)
    async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        recorder = ref.recorder or ref.get()
        span = None if recorder.disabled else _begin(recorder, opts, args, kwargs)
        state = _StreamState(recorder.limits.max_items, recorder.limits.max_string_length) if span else None
        if span is not None and state is not None:
            recorder.track_open(span, functools.partial(state.finish_reason, opts))
        previous = var.get()
        if span is not None:
            var.set(span)
        try:
            agen = fn(*args, **kwargs)
        except BaseException as exc:
            var.set(previous)
            if span is not None:
                _fail(span, exc)
            raise
        var.set(previous)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            previous = var.get()
            if span is not None:
                var.set(span)
            try:
                if to_throw is not None:
                    exc_in, to_throw = to_throw, None
                    item = await agen.athrow(exc_in)
                else:
                    item = await agen.asend(to_send)
            except StopAsyncIteration:
                var.set(previous)
                if span is not None and state is not None:
                    state.finish(span, opts, None)
                return
            except BaseException as exc:
                var.set(previous)
                if span is not None and state is not None:
                    state.fail(span, opts, exc)
                raise
            var.set(previous)
            if state is not None:
                state.add(item)
            try:
                to_send = yield item
            except GeneratorExit:
                previous = var.get()
                if span is not None:
                    var.set(span)
                try:
                    await agen.aclose()
                except BaseException as exc:  # raised by the generator's own cleanup (finally:)
                    var.set(previous)
                    if span is not None and state is not None:
                        state.fail(span, opts, exc, "closed")
                    raise  # reaches the caller of aclose() unchanged
                var.set(previous)
                if span is not None and state is not None:
                    state.finish(span, opts, "closed")
                raise
            except BaseException as exc:
                to_throw = exc

    return agen_wrapper
