"""Stream proxies: one model event covers a whole streamed response, however the stream ends.

``TracedStream`` / ``AsyncTracedStream`` wrap the SDK's ``Stream`` / ``AsyncStream`` (wrapt proxies,
so ``isinstance(stream, openai.Stream)`` stays true and every other attribute is the SDK's). Each
chunk goes to the stream's ``StreamRecorder``; the event ends exactly once: on exhaustion, on an
error, on ``with`` exit, ``close()`` / ``aclose()``, or when an abandoned stream is garbage collected
(then ``metadata.ended_early`` is true and the partial output is kept).

``TracedStreamManager`` / ``AsyncTracedStreamManager`` wrap a stream helper's manager (anthropic
``messages.stream(...)``): the request is sent in ``__enter__``, where the event starts, and the
helper's raw stream is swapped for a ``TracedStream`` so that ``text_stream``,
``get_final_message()`` and plain iteration all flow through it.

No context variable is held across a ``yield``: the event is current only while the request is sent.

Everything here runs once per streamed call or once per chunk on the caller's thread, between the
SDK's own work, which leaves the CPU caches cold for ours: the fixed cost is kept to few objects and
few calls (one recorder per stream, holding the call's state and what the chunks carry).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import AsyncGeneratorType, GeneratorType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import wrapt

from .. import _lifecycle
from .._errors import report_internal_error

if TYPE_CHECKING:
    from .._span import Span

__all__ = [
    "AsyncTracedStream",
    "AsyncTracedStreamManager",
    "Call",
    "StreamRecorder",
    "TracedStream",
    "TracedStreamManager",
    "afinish_bare_stream",
    "afinish_helper_stream",
    "finish_bare_stream",
    "finish_helper_stream",
    "traced_async_stream",
    "traced_manager",
    "traced_stream",
]


class Call(Protocol):
    """What a stream needs of its LLM call (``_llm.Call``, which imports this module)."""

    owned: bool  # the call's own span (not the user's model span being enriched)
    start_ns: int  # perf_counter_ns when the call started

    def enter(self) -> Span | None: ...

    def leave(self, previous: Span | None) -> None: ...

    def fail(self, error: BaseException, metadata: dict[str, Any] | None = None) -> None: ...

    def finish_stream(self, recorder: StreamRecorder, reason: str | None, error: BaseException | None) -> None: ...


_perf_ns = time.perf_counter_ns
_END: Any = object()  # what next() gives for an exhausted stream


class StreamRecorder:
    """The model event of one streamed response: sees every chunk on its way to the caller and ends
    the event once. Subclasses, one per API, record a chunk (``take``) and say what the event gets
    (``result``).

    A passing chunk costs a list append (and, until the first output chunk is known, a clock
    read): chunks are taken every ``BATCH`` chunks and at the end, in one tight loop while its code
    and data are warm, a fraction of the cost of taking each one between the SDK's own parsing,
    which churns the CPU caches. The first chunk carrying output sets ``first_ns`` to the time it
    arrived, so time-to-first-token stays exact. With ``BATCH = 1`` (an SDK that parses each chunk
    slowly, see mistralai) a chunk is taken as it passes, with no buffer on the way: such a
    recorder has none (``buffer`` and ``arrivals`` are None), two lists fewer kept until the worker
    shapes the event.
    """

    __slots__ = ("arrivals", "buffer", "call", "done", "first_ns", "header", "headers", "hide", "pull")

    # Small enough that the buffered chunks (about ten garbage-collected objects each) stay well
    # under the collector's young-generation threshold (700): a larger batch keeps enough of them
    # alive to trigger collections, which then cost more than the batching saves.
    BATCH: ClassVar[int] = 16
    # True for a recorder that needs nothing after the first output chunk (only when it arrived).
    FIRST_OUTPUT_ONLY: ClassVar[bool] = False
    # The SDK stream's attribute holding the generator its iteration reads (see chain()).
    SOURCE: ClassVar[str] = "_iterator"

    def __init__(self, call: Call) -> None:
        self.call = call
        self.done = False
        self.first_ns = 0  # perf_counter_ns of the arrival of the first chunk carrying output (0: none yet)
        # Chunks not taken yet, and when each arrived until the first output is known; both None
        # when chunks are taken as they pass (decided here: a BATCH changed later leaves this stream be).
        self.buffer: list[Any] | None = None
        self.arrivals: list[int] | None = None
        if self.BATCH > 1 or self.FIRST_OUTPUT_ONLY:
            self.buffer = []
            self.arrivals = []
        self.headers: Any = None  # the HTTP response's headers (its request id is read when the event is shaped)
        self.header = ""  # the response header with the request id
        self.hide: Callable[[Any], bool] | None = None  # chunks recorded but not passed on
        self.pull: Callable[[], Any] = _nothing  # the SDK stream's next(), when there is no generator to chain

    def take(self, item: Any) -> bool:
        """Record one chunk; True if it carries output (text, tool-call arguments, refusal, thinking…)."""
        raise NotImplementedError

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(outputs, metadata) from everything taken so far."""
        raise NotImplementedError

    def start(self, response: Any, request_id_header: str, track: bool = True) -> None:
        """The stream is open: keep its HTTP response's headers (for the request id); end it at process exit."""
        # The headers alone: the whole response would keep its request and streams alive until then.
        self.headers = getattr(response, "headers", None)
        self.header = request_id_header
        if track and self.call.owned:
            _lifecycle.track(self)  # ended at exit (process_exit) if still open

    def take_now(self, item: Any) -> None:
        """Take one chunk as it passes (``BATCH = 1``), noting its arrival if it is the first with output."""
        try:
            if self.first_ns:
                self.take(item)
            else:
                arrived = _perf_ns()
                if self.take(item):
                    self.first_ns = arrived
        except Exception as exc:
            report_internal_error("recording a stream chunk", exc)

    def drain(self) -> None:
        """Take the buffered chunks, in order (on the caller's thread, while the stream runs)."""
        if not self.done:  # once ended, the rest is the worker's (see outcome())
            self._take_buffered()

    def _take_buffered(self) -> None:
        buffer, arrivals = self.buffer, self.arrivals
        if not buffer or arrivals is None:
            return
        try:
            take = self.take
            if self.first_ns:
                if not self.FIRST_OUTPUT_ONLY:
                    for item in buffer:
                        take(item)
            else:
                for index, item in enumerate(buffer):
                    if take(item) and not self.first_ns:
                        self.first_ns = arrivals[index]
                        if self.FIRST_OUTPUT_ONLY:
                            break
        finally:
            buffer.clear()
            arrivals.clear()

    def chain(self, stream: Any, aio: bool) -> Any:
        """Put our generator between the SDK stream and its chunk generator; returns it (None: no chaining).

        The SDK streams read chunks from ``self._iterator`` (a generator) in ``__iter__``, ``__next__``
        and their ``async`` forms. With ours chained there, the SDK's own iteration code runs
        unchanged and each chunk costs one generator step. Ours is primed at once: closing it (when
        the stream is garbage collected) ends the event as abandoned. Without a generator to chain
        (another SDK version), a stream proxy pulls chunks through ``read``/``aread`` instead.
        """
        chained: Any = None
        try:
            # An SDK that hands out a generator (google-genai): ours reads it, the proxy hands out ours.
            if aio and type(stream) is AsyncGeneratorType:
                chained = self._awrap(stream, True)
                _prime(chained)
                return chained
            if not aio and type(stream) is GeneratorType:
                chained = self._wrap(stream, True)
                next(chained)
                return chained
            source = getattr(stream, self.SOURCE, None)
            if aio:
                if type(source) is AsyncGeneratorType:
                    chained = self._awrap(source)
                    setattr(stream, self.SOURCE, chained)
                    _prime(chained)
            elif type(source) is GeneratorType:
                chained = self._wrap(source)
                setattr(stream, self.SOURCE, chained)
                next(chained)
        except AttributeError:  # a read-only _iterator
            chained = None
        return chained

    def _wrap(self, source: Iterator[Any], sends_request: bool = False) -> Iterator[Any]:
        """Our generator reading *source*; *sends_request*: a generator handed out by the SDK, which
        sends the request on its first read: the call's event is current then, as while an SDK
        method runs (so the client layer beneath it records no second event)."""
        hide, buffer, arrivals, batch = self.hide, self.buffer, self.arrivals, self.BATCH
        try:
            yield None  # primed by chain()
            if sends_request:
                previous = self.call.enter()
                try:
                    first = next(source, _END)
                finally:
                    self.call.leave(previous)
                if first is not _END and self._passes(first):
                    yield first
            if buffer is None or arrivals is None:  # both None together (see __init__)
                # Taken as it passes, with no buffer, list of arrivals or drain() on the way. Mistral's
                # stream, this path alone against the buffered one in one loop (a scratch copy of the
                # bench): 3.0 µs per chunk against 4.5. With its leaner take() too: 0.26 and 2.20
                # against 3.54 and 3.82 (bench/llm_overhead.py --no-peer --processes 2 --pairs 600,
                # runs alternating with the code before, 2026-12-07). self.take is looked up for each
                # chunk: a bound method kept in a local across the yields measured slower (a scratch
                # harness timing generator variants after the same start, 4 processes: 68-109 µs
                # added per 5-chunk stream against 91-131; the bench, 3 runs each alternating: 91.5,
                # 96.0, 97.9 per call against 104.7, 98.9, 111.7; 2026-12-07).
                for item in source:
                    if not self.done:  # take_now(), inlined
                        try:
                            if self.first_ns:
                                self.take(item)
                            else:
                                arrived = _perf_ns()
                                if self.take(item):
                                    self.first_ns = arrived
                        except Exception as exc:
                            report_internal_error("recording a stream chunk", exc)
                    if hide is None or not hide(item):
                        yield item
            else:
                for item in source:
                    try:  # this runs for every chunk
                        buffer.append(item)
                        if not self.first_ns:
                            arrivals.append(_perf_ns())
                        if len(buffer) >= batch:
                            self.drain()
                    except Exception as exc:
                        report_internal_error("recording a stream chunk", exc)
                    if hide is None or not hide(item):
                        yield item
        except GeneratorExit:  # the stream was garbage collected before its end
            self.finish("abandoned")
            raise
        except BaseException as exc:
            self.finish(_early_reason(exc), exc)
            raise
        self.finish(None)

    async def _awrap(self, source: AsyncIterator[Any], sends_request: bool = False) -> AsyncIterator[Any]:
        """``_wrap`` for an async *source*."""
        hide, buffer, arrivals, batch = self.hide, self.buffer, self.arrivals, self.BATCH
        try:
            yield None  # primed by chain()
            if sends_request:
                previous = self.call.enter()
                try:
                    first = await anext(source, _END)
                finally:
                    self.call.leave(previous)
                if first is not _END and self._passes(first):
                    yield first
            if buffer is None or arrivals is None:  # both None together (see __init__)
                async for item in source:
                    if not self.done:  # take_now(), inlined
                        try:
                            if self.first_ns:
                                self.take(item)
                            else:
                                arrived = _perf_ns()
                                if self.take(item):
                                    self.first_ns = arrived
                        except Exception as exc:
                            report_internal_error("recording a stream chunk", exc)
                    if hide is None or not hide(item):
                        yield item
            else:
                async for item in source:
                    try:  # this runs for every chunk
                        buffer.append(item)
                        if not self.first_ns:
                            arrivals.append(_perf_ns())
                        if len(buffer) >= batch:
                            self.drain()
                    except Exception as exc:
                        report_internal_error("recording a stream chunk", exc)
                    if hide is None or not hide(item):
                        yield item
        except GeneratorExit:
            self.finish("abandoned")
            raise
        except BaseException as exc:  # CancelledError included: "cancelled"
            self.finish(_early_reason(exc), exc)
            raise
        self.finish(None)

    def _passes(self, item: Any) -> bool:
        """Record one chunk; False for a chunk the user must not see (an injected usage chunk)."""
        if not self.done:
            buffer, arrivals = self.buffer, self.arrivals
            if buffer is None or arrivals is None:  # taken as it passes (see __init__)
                self.take_now(item)
                hide = self.hide
                return hide is None or not hide(item)
            try:  # this runs for every chunk of a stream read through read()/aread()
                buffer.append(item)
                if not self.first_ns:
                    arrivals.append(_perf_ns())
                if len(buffer) >= self.BATCH:
                    self.drain()
            except Exception as exc:
                report_internal_error("recording a stream chunk", exc)
        hide = self.hide
        return hide is None or not hide(item)

    def read(self) -> Any:
        """The next chunk of a synchronous stream (when ``chain()`` found no generator to chain)."""
        while True:
            try:
                item = self.pull()
            except StopIteration:
                self.finish(None)
                raise
            except BaseException as exc:
                self.finish(_early_reason(exc), exc)
                raise
            if self._passes(item):
                return item

    async def aread(self) -> Any:
        """The next chunk of an asynchronous stream (when ``chain()`` found no generator to chain)."""
        while True:
            try:
                item = await self.pull()
            except StopAsyncIteration:
                self.finish(None)
                raise
            except BaseException as exc:
                self.finish(_early_reason(exc), exc)
                raise
            if self._passes(item):
                return item

    def finish(self, reason: str | None, error: BaseException | None = None) -> None:
        """End the event; *reason* (closed, abandoned, error, cancelled…) marks an early end.

        What the chunks add up to is worked out by ``outcome()``, on the worker thread for our own
        event (the chunks still buffered go along), or now when enriching the user's model span.
        """
        if self.done:
            return
        self.done = True
        _lifecycle.untrack(self)
        try:
            self.ended()
        except Exception as exc:
            report_internal_error("recording a stream", exc)
        self.call.finish_stream(self, reason, error)
        self.pull = _nothing  # drop what the stream's objects no longer need to reach
        self.hide = None

    def ended(self) -> None:
        """On the caller's thread as the stream ends: let go of what the event no longer needs.

        The chunks still buffered stay: taking them here, between the SDK's work, measured slower
        than keeping them until the worker shapes the event (bench/llm_overhead.py).
        """

    def outcome(self, reason: str | None) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any] | None]:
        """(outputs, metadata, metrics) of the ended stream; *reason* as given to ``finish()``."""
        self._take_buffered()
        outputs, metadata = self.result()
        headers = self.headers
        request_id = headers.get(self.header) if headers is not None and self.header else None
        if isinstance(request_id, str) and request_id:
            metadata["request_id"] = request_id
        first = self.first_ns
        # Microsecond precision, without round() (slow on floats).
        metrics = {"time_to_first_token_ms": (first - self.call.start_ns) // 1000 / 1000} if first else None
        if reason is not None:
            metadata["ended_early"] = True
            metadata["end_reason"] = reason
        return outputs, metadata, metrics


def _prime(agen: AsyncIterator[Any]) -> None:
    """Run an async generator to its first ``yield`` without an event loop (it awaits nothing before it)."""
    step = agen.__anext__()
    try:
        step.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return
    step.close()  # type: ignore[attr-defined]
    raise RuntimeError("the stream wrapper awaited before its first yield")


def _nothing() -> Any:
    raise StopIteration


def _early_reason(error: BaseException) -> str:
    return "cancelled" if type(error).__name__ == "CancelledError" else "error"


class TracedStream(wrapt.BaseObjectProxy[Any]):
    """A synchronous SDK stream whose chunks are recorded on the call's model event (make it with
    ``traced_stream``). Iteration is the SDK's own, through our generator chained into it."""

    __slots__ = ("_self_gen", "_self_recorder")

    _self_recorder: StreamRecorder
    _self_gen: Any  # our generator chained into the SDK stream (None: pulling, or closed)

    def __iter__(self) -> Any:
        return self.__wrapped__.__iter__()

    def __next__(self) -> Any:
        return self.__wrapped__.__next__()

    def __enter__(self) -> TracedStream:
        self.__wrapped__.__enter__()
        return self  # never let the raw stream escape the proxy

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            _closed(self)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            _closed(self)


class _GeneratorStream(TracedStream):
    """For an SDK generator: iteration goes through ours, which reads the SDK's."""

    __slots__ = ()

    def __iter__(self) -> Any:
        return self._self_gen

    def __next__(self) -> Any:
        return self._self_gen.__next__()


class _PullingStream(TracedStream):
    """For a stream with no generator to chain: the proxy pulls each chunk, and ends an abandoned
    stream's event when it is collected."""

    __slots__ = ()

    def __iter__(self) -> _PullingStream:
        return self

    def __next__(self) -> Any:
        return self._self_recorder.read()

    def __del__(self) -> None:
        _abandoned(self)


def traced_stream(wrapped: Any, recorder: StreamRecorder, hide: Callable[[Any], bool] | None = None) -> TracedStream:
    """The proxy for a synchronous SDK stream; *hide*: chunks recorded but not passed on."""
    proxy: TracedStream = _proxy(wrapped, recorder, hide, aio=False)
    return proxy


class AsyncTracedStream(wrapt.BaseObjectProxy[Any]):
    """An asynchronous SDK stream whose chunks are recorded on the call's model event (make it with
    ``traced_async_stream``)."""

    __slots__ = ("_self_gen", "_self_recorder")

    _self_recorder: StreamRecorder
    _self_gen: Any

    def __aiter__(self) -> Any:
        return self.__wrapped__.__aiter__()

    def __anext__(self) -> Awaitable[Any]:
        return self.__wrapped__.__anext__()  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncTracedStream:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            await _aclosed(self)

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            await _aclosed(self)

    async def aclose(self) -> Any:
        wrapped = self.__wrapped__
        try:
            closer = getattr(wrapped, "aclose", None) or wrapped.close
            return await closer()
        finally:
            await _aclosed(self)


class _AsyncGeneratorStream(AsyncTracedStream):
    """For an SDK async generator: iteration goes through ours, which reads the SDK's."""

    __slots__ = ()

    def __aiter__(self) -> Any:
        return self._self_gen

    def __anext__(self) -> Awaitable[Any]:
        return self._self_gen.__anext__()  # type: ignore[no-any-return]


class _AsyncPullingStream(AsyncTracedStream):
    __slots__ = ()

    def __aiter__(self) -> _AsyncPullingStream:
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self._self_recorder.aread()

    def __del__(self) -> None:
        _abandoned(self)


def traced_async_stream(
    wrapped: Any, recorder: StreamRecorder, hide: Callable[[Any], bool] | None = None
) -> AsyncTracedStream:
    proxy: AsyncTracedStream = _proxy(wrapped, recorder, hide, aio=True)
    return proxy


def _proxy(wrapped: Any, recorder: StreamRecorder, hide: Callable[[Any], bool] | None, aio: bool) -> Any:
    """Our generator chained into the SDK stream, and the proxy in front of it (a pulling proxy
    when there is no generator to chain)."""
    recorder.hide = hide
    gen = recorder.chain(wrapped, aio)
    proxy: TracedStream | AsyncTracedStream
    if gen is None:
        recorder.pull = _puller(wrapped, aio)
        proxy = _AsyncPullingStream(wrapped) if aio else _PullingStream(wrapped)
    elif type(wrapped) in (GeneratorType, AsyncGeneratorType):
        proxy = _AsyncGeneratorStream(wrapped) if aio else _GeneratorStream(wrapped)
    else:
        proxy = AsyncTracedStream(wrapped) if aio else TracedStream(wrapped)
    # No __init__ of ours: wrapt's own (in C) and two slot stores are the cheapest construction.
    proxy._self_recorder = recorder
    proxy._self_gen = gen
    if gen is not None and not _passes_for(type(wrapped), proxy):
        # The SDK's own stream, with our generator chained in, so isinstance() holds; its close()
        # is patched to end the event (finish_bare_stream), collection ends it as abandoned.
        wrapped.__dict__[_BARE] = (recorder, gen)
        return wrapped
    return proxy


# Whether a proxy passes isinstance() for a stream class. Not for anthropic 0.x: its Stream's
# metaclass answers False for anything whose type is not exactly Stream.
_passes: dict[type, bool] = {}
_BARE = "_tracer_stream"  # on an SDK stream handed back without a proxy: (recorder, our generator)


def _passes_for(kind: type, proxy: Any) -> bool:
    passes = _passes.get(kind)
    if passes is None:
        try:
            passes = isinstance(proxy, kind)
        except Exception:
            passes = False
        _passes[kind] = passes
    return passes


def finish_bare_stream(stream: Any) -> None:
    """An SDK stream handed back without a proxy was closed: end its event (``close`` is patched)."""
    found = getattr(stream, "__dict__", {}).pop(_BARE, None)
    if found is not None:
        recorder, gen = found
        recorder.finish("closed")
        if gen.gi_frame is not None and not gen.gi_running:
            gen.close()  # GeneratorExit in _wrap: finish() is a no-op by now


async def afinish_bare_stream(stream: Any) -> None:
    """``finish_bare_stream`` for an asynchronous stream."""
    found = getattr(stream, "__dict__", {}).pop(_BARE, None)
    if found is not None:
        recorder, gen = found
        recorder.finish("closed")
        if gen.ag_frame is not None and not gen.ag_running:
            await gen.aclose()


def _puller(wrapped: Any, aio: bool) -> Callable[[], Any]:
    """The next-chunk function of a stream: its own ``__next__`` / ``__anext__``, or that of the
    iterator it hands out (botocore's ``EventStream`` is iterable, not an iterator)."""
    step: Callable[[], Any] | None = getattr(wrapped, "__anext__" if aio else "__next__", None)
    if step is None:
        step = aiter(wrapped).__anext__ if aio else iter(wrapped).__next__
    return step


def _closed(proxy: Any) -> None:
    """The stream was closed: end the event, then close our suspended generator so that nothing of
    ours stays reachable from the SDK stream (a reference cycle, freed only by the cyclic GC, whose
    collections every object left there makes more frequent)."""
    proxy._self_recorder.finish("closed")
    gen = proxy._self_gen
    if gen is not None and gen.gi_frame is not None and not gen.gi_running:
        proxy._self_gen = None
        gen.close()  # GeneratorExit in _wrap: finish() is a no-op by now


async def _aclosed(proxy: Any) -> None:
    proxy._self_recorder.finish("closed")
    gen = proxy._self_gen
    if gen is not None and gen.ag_frame is not None and not gen.ag_running:
        proxy._self_gen = None
        await gen.aclose()


def _abandoned(proxy: Any) -> None:
    """A pulling proxy collected before its stream ended. (With a chained generator, the generator
    ends the event when the SDK stream itself goes: the proxy may go first, ``iter(proxy)`` hands
    out the SDK's own iterator.)"""
    try:
        recorder = proxy._self_recorder
    except Exception:  # collected before it was set up
        return
    if isinstance(recorder, StreamRecorder) and not recorder.done:
        recorder.finish("abandoned")


def finish_helper_stream(helper: Any) -> None:
    """A stream helper (openai ``ChatCompletionStream``…) closed its response itself: end our event too.

    Those helpers close the HTTP response directly, never through the raw stream they iterate.
    """
    raw = getattr(helper, "_raw_stream", None)
    if isinstance(raw, TracedStream):
        _closed(raw)
        helper._raw_stream = raw.__wrapped__  # the helper is a reference cycle: leave it


async def afinish_helper_stream(helper: Any) -> None:
    """``finish_helper_stream`` for the async helpers."""
    raw = getattr(helper, "_raw_stream", None)
    if isinstance(raw, AsyncTracedStream):
        await _aclosed(raw)
        helper._raw_stream = raw.__wrapped__


Starter = Callable[[], "Call | None"]
# The recorder for a stream helper's raw stream, and whether it reads the helper itself. It gets
# the call *start* returned: typed Any here, where only the Call interface is known.
HelperRecorder = Callable[[Any, Any], tuple[StreamRecorder, bool]]
C = TypeVar("C", bound=Call)


class TracedStreamManager(wrapt.BaseObjectProxy[Any]):
    """A helper's stream manager: the event starts in ``__enter__``, where the request is sent (make
    it with ``traced_manager``).

    The helper (anthropic ``MessageStream``) reads every event through its own generator,
    ``_iterator`` (``text_stream``, ``get_final_message()`` and plain iteration alike): ours is
    chained there, as into an SDK stream, so no proxy stands between the helper and its raw stream.
    """

    __slots__ = ("_self_header", "_self_make_recorder", "_self_recorder", "_self_start", "_self_swap")

    _self_start: Starter
    _self_make_recorder: HelperRecorder
    _self_header: str  # where the streamed response's request id is
    _self_recorder: StreamRecorder | None  # set once entered
    # What we put into the helper, to take out at exit: (helper, attribute, ours, the original).
    _self_swap: tuple[Any, str, Any, Any] | None

    def __enter__(self) -> Any:
        call = self._self_start()
        if call is None:
            return self.__wrapped__.__enter__()
        previous = call.enter()
        try:
            stream = self.__wrapped__.__enter__()
        except BaseException as exc:
            call.leave(previous)
            call.fail(exc)
            raise
        call.leave(previous)
        _record_helper(self, call, stream, False)
        return stream

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            recorder = self._self_recorder
            if recorder is not None:
                recorder.finish("closed")
                ours = _unswap(self)
                if isinstance(ours, GeneratorType):
                    if ours.gi_frame is not None and not ours.gi_running:
                        ours.close()  # GeneratorExit in _wrap: finish() is a no-op by now
                elif ours is not None:
                    _closed(ours)


class AsyncTracedStreamManager(TracedStreamManager):
    """``async with`` form of ``TracedStreamManager``."""

    __slots__ = ()

    async def __aenter__(self) -> Any:
        call = self._self_start()
        if call is None:
            return await self.__wrapped__.__aenter__()
        previous = call.enter()
        try:
            stream = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            call.leave(previous)
            call.fail(exc)
            raise
        call.leave(previous)
        _record_helper(self, call, stream, True)
        return stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            recorder = self._self_recorder
            if recorder is not None:
                recorder.finish("closed")
                ours = _unswap(self)
                if isinstance(ours, AsyncGeneratorType):
                    if ours.ag_frame is not None and not ours.ag_running:
                        await ours.aclose()
                elif ours is not None:
                    await _aclosed(ours)


def traced_manager(
    wrapped: Any,
    start: Callable[[], C | None],
    make_recorder: Callable[[C, Any], tuple[StreamRecorder, bool]],
    request_id_header: str,
    aio: bool,
) -> TracedStreamManager:
    """The proxy for a helper's stream manager; *start* opens the event when it is entered (None: not traced)."""
    manager = AsyncTracedStreamManager(wrapped) if aio else TracedStreamManager(wrapped)
    manager._self_start = start
    manager._self_make_recorder = make_recorder
    manager._self_header = request_id_header
    manager._self_recorder = manager._self_swap = None
    return manager


def _record_helper(manager: TracedStreamManager, call: Call, stream: Any, aio: bool) -> None:
    """Start recording a helper's stream once its manager entered."""
    try:
        recorder, reads_helper = manager._self_make_recorder(call, stream)
        # A recorder that reads the helper holds it: not tracked for exit, or it would never be freed.
        recorder.start(getattr(stream, "response", None), manager._self_header, track=not reads_helper)
        manager._self_recorder = recorder
        source = getattr(stream, "_iterator", None)
        gen = recorder.chain(stream, aio)
        if gen is not None:
            manager._self_swap = (stream, "_iterator", gen, source)
            return
        # No generator of the helper's to chain (another SDK version): route the helper's reading
        # of its raw stream (``_raw_stream``, read lazily) through our proxy instead.
        raw = getattr(stream, "_raw_stream", None)
        if raw is not None and not isinstance(raw, (TracedStream, AsyncTracedStream)):
            proxy = traced_async_stream(raw, recorder) if aio else traced_stream(raw, recorder)
            stream._raw_stream = proxy
            manager._self_swap = (stream, "_raw_stream", proxy, raw)
    except Exception as exc:
        report_internal_error("tracing a stream helper", exc)


def _unswap(manager: TracedStreamManager) -> Any:
    """Give the helper back what we replaced (the helper is a reference cycle: leave nothing of ours
    in it); returns ours (our generator or proxy), None if nothing was swapped."""
    swap = manager._self_swap
    if swap is None:
        return None
    manager._self_swap = None
    stream, name, ours, original = swap
    if getattr(stream, name, None) is ours:
        setattr(stream, name, original)
    return ours
