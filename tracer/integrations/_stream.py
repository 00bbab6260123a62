"""Stream proxies: one model event covers a whole streamed response, however the stream ends.

``TracedStream`` / ``AsyncTracedStream`` wrap the SDK's ``Stream`` / ``AsyncStream`` (wrapt proxies,
so ``isinstance(stream, openai.Stream)`` stays true and every other attribute is the SDK's). Each
chunk goes to an accumulator; the event ends exactly once: on exhaustion, on an error, on ``with``
exit, ``close()`` / ``aclose()``, or when an abandoned stream is garbage collected (then
``metadata.ended_early`` is true and the partial output is kept).

``TracedStreamManager`` / ``AsyncTracedStreamManager`` wrap a stream helper's manager (anthropic
``messages.stream(...)``): the request is sent in ``__enter__``, where the event starts, and the
helper's raw stream is swapped for a ``TracedStream`` so that ``text_stream``,
``get_final_message()`` and plain iteration all flow through it.

No context variable is held across a ``yield``: the event is current only while the request is sent.
"""

from __future__ import annotations

import atexit
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import wrapt

from .._errors import report_internal_error

if TYPE_CHECKING:
    from ._llm import Call

__all__ = [
    "Accumulator",
    "AsyncTracedStream",
    "AsyncTracedStreamManager",
    "Batched",
    "StreamRecorder",
    "TracedStream",
    "TracedStreamManager",
    "afinish_helper_stream",
    "finish_helper_stream",
    "traced_async_stream",
    "traced_stream",
]

_perf_ns = time.perf_counter_ns


class Batched:
    """Base of the accumulators: chunks after the first output are buffered and taken in batches.

    Until the first output chunk, each chunk is taken at once (so time-to-first-token is exact);
    after it a chunk costs one list append, and every ``BATCH`` chunks (and at the end) the batch
    is taken in one tight loop, while its code and data are warm. Same result, a fraction of the
    per-chunk cost while the SDK's own parsing churns the CPU caches between chunks. An
    accumulator with ``buffer = None`` needs nothing after the first output chunk.
    """

    __slots__ = ("buffer", "first_ns")

    BATCH = 64

    def __init__(self) -> None:
        self.first_ns = 0  # perf_counter_ns of the first chunk carrying output (0: none yet)
        self.buffer: list[Any] | None = []

    def add(self, item: Any) -> None:
        if not self.first_ns:
            self.take(item)
            return
        buffer = self.buffer
        if buffer is not None:
            buffer.append(item)
            if len(buffer) >= self.BATCH:
                self.drain()

    def drain(self) -> None:
        buffer = self.buffer
        if buffer:
            try:
                take = self.take
                for item in buffer:
                    take(item)
            finally:
                buffer.clear()

    def take(self, item: Any) -> None:
        """Record one chunk (set ``first_ns`` at the first one carrying output)."""
        raise NotImplementedError

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(outputs, metadata) from everything taken so far (call ``drain()`` first)."""
        raise NotImplementedError


Accumulator = Batched


class StreamRecorder:
    """The event of one stream: sees every chunk on its way to the caller, ends the event once."""

    __slots__ = ("acc", "call", "done", "feed", "hide", "pull", "seed")

    def __init__(
        self, call: Call, acc: Accumulator, response: Any = None, request_id_header: str = "", track: bool = True
    ) -> None:
        self.call = call
        self.acc = acc
        self.feed = acc.add
        self.done = False
        self.seed = _request_id(response, request_id_header) if request_id_header else None
        self.pull: Callable[[], Any] = _nothing
        self.hide: Callable[[Any], bool] | None = None
        if track and call.owned:
            _track(self)

    def chain(self, stream: Any, aio: bool) -> Any:
        """Put our generator between the SDK stream and its chunk generator; returns it (None: no chaining).

        The SDK streams read chunks from ``self._iterator`` (a generator) in ``__iter__``, ``__next__``
        and their ``async`` forms. With ours chained there, the SDK's own iteration code runs
        unchanged and each chunk costs one generator step. Ours is primed at once: closing it (when
        the stream is garbage collected) ends the event as abandoned. Without a generator to chain
        (another SDK version), the proxy pulls chunks through ``read``/``aread``.
        """
        chained: Any = None
        try:
            source = getattr(stream, "_iterator", None)
            if aio and inspect.isasyncgen(source):
                chained = self._awrap(source)
                stream._iterator = chained
                _prime(chained)
            elif not aio and inspect.isgenerator(source):
                chained = self._wrap(source)
                stream._iterator = chained
                next(chained)
        except AttributeError:  # a read-only _iterator: pull chunks ourselves
            chained = None
        if chained is None:
            self.pull = stream.__anext__ if aio else stream.__next__
        return chained

    def _wrap(self, source: Iterator[Any]) -> Iterator[Any]:
        acc, hide = self.acc, self.hide
        take, buffer, batch = acc.take, acc.buffer, acc.BATCH
        try:
            yield None  # primed by chain()
            for item in source:
                try:  # Batched.add(), inlined: this runs for every chunk
                    if not acc.first_ns:
                        take(item)
                    elif buffer is not None:
                        buffer.append(item)
                        if len(buffer) >= batch:
                            acc.drain()
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

    async def _awrap(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        acc, hide = self.acc, self.hide
        take, buffer, batch = acc.take, acc.buffer, acc.BATCH
        try:
            yield None  # primed by chain()
            async for item in source:
                try:  # Batched.add(), inlined: this runs for every chunk
                    if not acc.first_ns:
                        take(item)
                    elif buffer is not None:
                        buffer.append(item)
                        if len(buffer) >= batch:
                            acc.drain()
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
        try:
            self.feed(item)
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
        """End the event; *reason* (closed, abandoned, error, cancelled…) marks an early end."""
        if self.done:
            return
        self.done = True
        _open.discard(self)
        try:
            acc = self.acc
            acc.drain()
            outputs, metadata = acc.result()
            if self.seed:
                metadata.update(self.seed)
            first = acc.first_ns
            # Microsecond precision, without round() (slow on floats).
            metrics = {"time_to_first_token_ms": (first - self.call.start_ns) // 1000 / 1000} if first else None
            if reason is not None:
                metadata["ended_early"] = True
                metadata["end_reason"] = reason
        except Exception as exc:
            report_internal_error("recording a stream", exc)
            outputs, metadata, metrics = None, {}, None
        self.call.finish(outputs, metadata, metrics, error)
        self.feed = _ignore  # drop what the stream's objects no longer need to reach
        self.pull = _nothing
        self.hide = None


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


def _ignore(item: Any) -> None:
    pass


def _request_id(response: Any, header: str) -> dict[str, Any] | None:
    """The request id from a streamed HTTP response's headers (openai: x-request-id, anthropic: request-id)."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get(header)
    except Exception:
        return None
    return {"request_id": value} if isinstance(value, str) and value else None


# Streams still open, ended at interpreter exit ("process_exit") with what they received so far.
# A plain set (a recorder references neither its stream nor its proxy, so garbage collection of an
# abandoned stream still ends its event); the exit handler is registered on first use, after the
# tracer's own, so it runs first (atexit is last-in, first-out) while the pipeline still delivers.
_open: set[StreamRecorder] = set()
_exit_handler_registered = False


def _track(recorder: StreamRecorder) -> None:
    global _exit_handler_registered
    _open.add(recorder)
    if not _exit_handler_registered:
        _exit_handler_registered = True
        atexit.register(_finish_open_streams)


def _finish_open_streams() -> None:
    for recorder in list(_open):
        try:
            recorder.finish("process_exit")
        except Exception as exc:
            report_internal_error("ending open streams at exit", exc)


def _early_reason(error: BaseException) -> str:
    return "cancelled" if type(error).__name__ == "CancelledError" else "error"


class TracedStream(wrapt.BaseObjectProxy[Any]):
    """A synchronous SDK stream whose chunks are recorded on the call's model event (make it with
    ``traced_stream``). Iteration is the SDK's own, through our generator chained into it."""

    def __init__(self, wrapped: Any, recorder: StreamRecorder, gen: Any) -> None:
        super().__init__(wrapped)
        self._self_recorder = recorder
        self._self_gen = gen

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


class _PullingStream(TracedStream):
    """For a stream with no generator to chain: the proxy pulls each chunk, and ends an abandoned
    stream's event when it is collected."""

    def __iter__(self) -> _PullingStream:
        return self

    def __next__(self) -> Any:
        return self._self_recorder.read()

    def __del__(self) -> None:
        _abandoned(self)


def traced_stream(wrapped: Any, recorder: StreamRecorder, hide: Callable[[Any], bool] | None = None) -> TracedStream:
    """The proxy for a synchronous SDK stream; *hide*: chunks recorded but not passed on."""
    recorder.hide = hide
    gen = recorder.chain(wrapped, aio=False)
    return TracedStream(wrapped, recorder, gen) if gen is not None else _PullingStream(wrapped, recorder, None)


class AsyncTracedStream(wrapt.BaseObjectProxy[Any]):
    """An asynchronous SDK stream whose chunks are recorded on the call's model event (make it with
    ``traced_async_stream``)."""

    def __init__(self, wrapped: Any, recorder: StreamRecorder, gen: Any) -> None:
        super().__init__(wrapped)
        self._self_recorder = recorder
        self._self_gen = gen

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


class _AsyncPullingStream(AsyncTracedStream):
    def __aiter__(self) -> _AsyncPullingStream:
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self._self_recorder.aread()

    def __del__(self) -> None:
        _abandoned(self)


def traced_async_stream(
    wrapped: Any, recorder: StreamRecorder, hide: Callable[[Any], bool] | None = None
) -> AsyncTracedStream:
    recorder.hide = hide
    gen = recorder.chain(wrapped, aio=True)
    if gen is not None:
        return AsyncTracedStream(wrapped, recorder, gen)
    return _AsyncPullingStream(wrapped, recorder, None)


def _closed(proxy: Any) -> None:
    """The stream was closed: end the event, then close our suspended generator so that nothing of
    ours stays reachable from the SDK stream (a reference cycle, freed only by the cyclic GC, whose
    collections every object left there makes more frequent)."""
    proxy._self_recorder.finish("closed")
    gen = proxy._self_gen
    if gen is not None and inspect.getgeneratorstate(gen) == "GEN_SUSPENDED":
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
    except Exception:  # __init__ did not complete
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
HelperAccumulator = Callable[[Any], tuple[Batched, bool]]
"""The accumulator for a stream helper's raw stream, and whether it reads the helper itself."""


def _swap_raw_stream(stream: Any, recorder: StreamRecorder, aio: bool) -> None:
    """Route the helper's reading through our proxy (the helper reads ``_raw_stream`` lazily)."""
    raw = getattr(stream, "_raw_stream", None)
    if raw is not None and not isinstance(raw, (TracedStream, AsyncTracedStream)):
        stream._raw_stream = traced_async_stream(raw, recorder) if aio else traced_stream(raw, recorder)


def _swapped(stream: Any) -> Any:
    """Our proxy in a helper's ``_raw_stream``, or None."""
    raw = getattr(stream, "_raw_stream", None)
    return raw if isinstance(raw, (TracedStream, AsyncTracedStream)) else None


def _record_helper(
    manager: Any, call: Call, stream: Any, accumulator: HelperAccumulator, request_id_header: str, aio: bool
) -> None:
    """Start recording a helper's stream once its manager entered (shared by the sync and async managers)."""
    try:
        acc, reads_helper = accumulator(stream)
        # An accumulator that reads the helper holds it: not tracked for exit, or it would never be freed.
        response = getattr(stream, "response", None)
        recorder = StreamRecorder(call, acc, response, request_id_header, track=not reads_helper)
        manager._self_recorder = recorder
        manager._self_stream = stream
        _swap_raw_stream(stream, recorder, aio)
    except Exception as exc:
        report_internal_error("tracing a stream helper", exc)


class TracedStreamManager(wrapt.BaseObjectProxy[Any]):
    """A helper's stream manager: the event starts in ``__enter__``, where the request is sent."""

    def __init__(self, wrapped: Any, start: Starter, accumulator: HelperAccumulator, request_id_header: str) -> None:
        super().__init__(wrapped)
        self._self_spec = (start, accumulator, request_id_header)
        self._self_recorder: StreamRecorder | None = None
        self._self_stream: Any = None

    def __enter__(self) -> Any:
        start, accumulator, request_id_header = self._self_spec
        call = start()
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
        _record_helper(self, call, stream, accumulator, request_id_header, False)
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
                stream, self._self_stream = self._self_stream, None
                proxy = _swapped(stream)
                if proxy is not None:
                    _closed(proxy)
                    stream._raw_stream = proxy.__wrapped__  # the helper is a reference cycle: leave it


class AsyncTracedStreamManager(wrapt.BaseObjectProxy[Any]):
    """``async with`` form of ``TracedStreamManager``."""

    def __init__(self, wrapped: Any, start: Starter, accumulator: HelperAccumulator, request_id_header: str) -> None:
        super().__init__(wrapped)
        self._self_spec = (start, accumulator, request_id_header)
        self._self_recorder: StreamRecorder | None = None
        self._self_stream: Any = None

    async def __aenter__(self) -> Any:
        start, accumulator, request_id_header = self._self_spec
        call = start()
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
        _record_helper(self, call, stream, accumulator, request_id_header, True)
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
                stream, self._self_stream = self._self_stream, None
                proxy = _swapped(stream)
                if proxy is not None:
                    await _aclosed(proxy)
                    stream._raw_stream = proxy.__wrapped__
