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

import functools
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import wrapt

from .._errors import report_internal_error

if TYPE_CHECKING:
    from .._span import Span
    from ._llm import Call

__all__ = [
    "Accumulator",
    "AsyncTracedStream",
    "AsyncTracedStreamManager",
    "StreamRecorder",
    "TracedStream",
    "TracedStreamManager",
    "finish_helper_stream",
]

_perf_ns = time.perf_counter_ns


class Accumulator(Protocol):
    """Collects a provider's stream chunks into the event's outputs and metadata."""

    first_ns: int  # perf_counter_ns of the first chunk carrying output (0: none yet)

    def add(self, item: Any) -> None: ...

    def result(self) -> tuple[dict[str, Any] | None, dict[str, Any]]: ...


class StreamRecorder:
    """The event of one stream: feeds chunks to the accumulator and ends the event once."""

    __slots__ = ("__weakref__", "acc", "call", "done", "seed")

    def __init__(self, call: Call, acc: Accumulator, response: Any = None) -> None:
        self.call = call
        self.acc = acc
        self.done = False
        self.seed = _request_id(response)
        if call.owned:
            # Ended at interpreter exit if the stream is still open then (the callback holds no span).
            call.span.tracer._track_open(call.span, functools.partial(_finish_at_exit, weakref.ref(self)))

    def add(self, item: Any) -> None:
        try:
            self.acc.add(item)
        except Exception as exc:
            report_internal_error("recording a stream chunk", exc)

    def finish(self, reason: str | None, error: BaseException | None = None) -> None:
        """End the event; *reason* (closed, abandoned, error, cancelled…) marks an early end."""
        if self.done:
            return
        self.done = True
        try:
            outputs, metadata = self.acc.result()
            if self.seed:
                metadata = {**self.seed, **metadata}
            first = self.acc.first_ns
            metrics = {"time_to_first_token_ms": round((first - self.call.start_ns) / 1e6, 3)} if first else None
            if reason is not None:
                metadata["ended_early"] = True
                metadata["end_reason"] = reason
        except Exception as exc:
            report_internal_error("recording a stream", exc)
            outputs, metadata, metrics = None, {}, None
        self.call.finish(outputs, metadata, metrics, error)


def _request_id(response: Any) -> dict[str, Any] | None:
    """The request id from a streamed HTTP response's headers (openai: x-request-id, anthropic: request-id)."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("x-request-id") or headers.get("request-id")
    except Exception:
        return None
    return {"request_id": value} if isinstance(value, str) and value else None


def _finish_at_exit(ref: weakref.ref[StreamRecorder], span: Span, reason: str) -> None:
    recorder = ref()
    if recorder is not None:
        recorder.finish(reason)
    elif not span.ended:
        span.end()


def _early_reason(error: BaseException) -> str:
    return "cancelled" if type(error).__name__ == "CancelledError" else "error"


class TracedStream(wrapt.BaseObjectProxy[Any]):
    """A synchronous SDK stream whose chunks are recorded on the call's model event."""

    def __init__(self, wrapped: Any, recorder: StreamRecorder, hide: Callable[[Any], bool] | None = None) -> None:
        super().__init__(wrapped)
        self._self_recorder = recorder
        self._self_hide = hide  # chunks recorded but not shown (a usage chunk the user did not ask for)

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> Any:
        recorder: StreamRecorder = self._self_recorder
        while True:
            try:
                item = self.__wrapped__.__next__()
            except StopIteration:
                recorder.finish(None)
                raise
            except BaseException as exc:
                recorder.finish(_early_reason(exc), exc)
                raise
            recorder.add(item)
            hide = self._self_hide
            if hide is None or not hide(item):
                return item

    def __enter__(self) -> TracedStream:
        self.__wrapped__.__enter__()
        return self  # never let the raw stream escape the proxy

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_recorder.finish("closed")

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_recorder.finish("closed")

    def __del__(self) -> None:
        _abandoned(self)


class AsyncTracedStream(wrapt.BaseObjectProxy[Any]):
    """An asynchronous SDK stream whose chunks are recorded on the call's model event."""

    def __init__(self, wrapped: Any, recorder: StreamRecorder, hide: Callable[[Any], bool] | None = None) -> None:
        super().__init__(wrapped)
        self._self_recorder = recorder
        self._self_hide = hide

    def __aiter__(self) -> AsyncTracedStream:
        return self

    async def __anext__(self) -> Any:
        recorder: StreamRecorder = self._self_recorder
        while True:
            try:
                item = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                recorder.finish(None)
                raise
            except BaseException as exc:
                recorder.finish(_early_reason(exc), exc)
                raise
            recorder.add(item)
            hide = self._self_hide
            if hide is None or not hide(item):
                return item

    async def __aenter__(self) -> AsyncTracedStream:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_recorder.finish("closed")

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_recorder.finish("closed")

    async def aclose(self) -> Any:
        wrapped = self.__wrapped__
        try:
            closer = getattr(wrapped, "aclose", None) or wrapped.close
            return await closer()
        finally:
            self._self_recorder.finish("closed")

    def __del__(self) -> None:
        _abandoned(self)


def _abandoned(proxy: Any) -> None:
    """Garbage collection of a stream nobody finished: end its event with what arrived so far."""
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
    if isinstance(raw, (TracedStream, AsyncTracedStream)):
        raw._self_recorder.finish("closed")


Starter = Callable[[], "Call | None"]


def _swap_raw_stream(stream: Any, recorder: StreamRecorder, proxy_type: type[Any]) -> None:
    """Route the helper's reading through our proxy (the helper reads ``_raw_stream`` lazily)."""
    raw = getattr(stream, "_raw_stream", None)
    if raw is not None and not isinstance(raw, (TracedStream, AsyncTracedStream)):
        stream._raw_stream = proxy_type(raw, recorder)


class TracedStreamManager(wrapt.BaseObjectProxy[Any]):
    """A helper's stream manager: the event starts in ``__enter__``, where the request is sent."""

    def __init__(self, wrapped: Any, start: Starter, accumulator: Callable[[], Accumulator]) -> None:
        super().__init__(wrapped)
        self._self_start = start
        self._self_accumulator = accumulator
        self._self_recorder: StreamRecorder | None = None

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
        try:
            recorder = StreamRecorder(call, self._self_accumulator(), getattr(stream, "response", None))
            self._self_recorder = recorder
            _swap_raw_stream(stream, recorder, TracedStream)
        except Exception as exc:
            report_internal_error("tracing a stream helper", exc)
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


class AsyncTracedStreamManager(wrapt.BaseObjectProxy[Any]):
    """``async with`` form of ``TracedStreamManager``."""

    def __init__(self, wrapped: Any, start: Starter, accumulator: Callable[[], Accumulator]) -> None:
        super().__init__(wrapped)
        self._self_start = start
        self._self_accumulator = accumulator
        self._self_recorder: StreamRecorder | None = None

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
        try:
            recorder = StreamRecorder(call, self._self_accumulator(), getattr(stream, "response", None))
            self._self_recorder = recorder
            _swap_raw_stream(stream, recorder, AsyncTracedStream)
        except Exception as exc:
            report_internal_error("tracing a stream helper", exc)
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
