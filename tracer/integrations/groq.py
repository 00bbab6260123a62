"""Groq (``groq``, range in ``tracer._registry``): chat completions (streams included) and embeddings.

Groq's SDK has the OpenAI shape (same Stainless generator: ``chat.completions.create`` with
``stream=True``, ``AsyncGroq``, ``with_raw_response``), so the OpenAI integration's chat and
embeddings readers are reused; only what differs is here: the provider is ``groq`` whatever the
base URL (a native Groq client talks to Groq, or to a stand-in of it), and a stream's usage comes in
the last chunk's ``x_groq.usage`` (or ``usage`` when the request asks for it).
"""

from __future__ import annotations

from typing import Any, Final

from .._registry import min_version
from ._llm import Api, async_wrapper, clean_params, given, skipping, sync_wrapper
from ._patch import Library, Target, loaded
from .openai import ChatStream, _chat_result, _embeddings_result

__all__ = ["LIBRARY"]

_CHAT: Final = "groq.resources.chat.completions"
_EMBEDDINGS: Final = "groq.resources.embeddings"

_CHAT_SKIP: Final = skipping("messages")
_EMBEDDINGS_SKIP: Final = skipping("input")


def _chat_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = clean_params(kwargs, _CHAT_SKIP, {"provider": "groq", "model": kwargs.get("model")})
    messages = kwargs.get("messages")
    return config, {"chat_history": list(messages)} if messages is not None and given(messages) else None


def _embeddings_request(instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    config = clean_params(kwargs, _EMBEDDINGS_SKIP, {"provider": "groq", "model": kwargs.get("model")})
    value = kwargs.get("input")
    return config, {"input": value} if given(value) else None


class GroqChatStream(ChatStream):
    """OpenAI-shaped chunks, plus Groq's ``x_groq`` (its ``usage`` on the last chunk)."""

    __slots__ = ()

    def take(self, chunk: Any) -> bool:
        extra = chunk.__dict__.get("x_groq")
        if extra is not None:
            usage = getattr(extra, "usage", None)
            if usage is not None:
                self.usage = usage
        return super().take(chunk)


_stream_types: tuple[type, ...] = ()


def _streams() -> tuple[type, ...]:
    global _stream_types
    if not _stream_types:
        module = loaded("groq._streaming")
        if module is not None:
            _stream_types = (module.Stream, module.AsyncStream)
    return _stream_types


def _targets() -> tuple[Target, ...]:
    saved = ("messages", "tools")  # see _llm.save_request
    chat = Api(
        "groq.chat.completions.create", LIBRARY, _chat_request, _chat_result, GroqChatStream, _streams, saved=saved
    )
    embeddings = Api(
        "groq.embeddings.create",
        LIBRARY,
        _embeddings_request,
        _embeddings_result,
        GroqChatStream,
        _streams,
        saved=("input",),
    )
    return (
        Target(_CHAT, "Completions.create", sync_wrapper(chat)),
        Target(_CHAT, "AsyncCompletions.create", async_wrapper(chat)),
        Target(_EMBEDDINGS, "Embeddings.create", sync_wrapper(embeddings), optional=True),
        Target(_EMBEDDINGS, "AsyncEmbeddings.create", async_wrapper(embeddings), optional=True),
    )


LIBRARY: Final = Library("groq", min_version("groq"), _targets)
