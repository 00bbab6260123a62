"""LiteLLM (``litellm``): ``completion`` / ``acompletion`` (streams included) and ``embedding`` / ``aembedding``.

litellm's public functions hand every call to a dispatcher, ``PublicDispatch.run`` / ``.arun``
(``litellm.rust_bridge.dispatch``), which serves it in Python or in litellm's native code. That
method is wrapped, so a call is recorded whichever path serves it and however the function was
imported (``from litellm import completion`` before ``tracer.init()`` included); the dispatcher's
``route`` says which API it is (chat completions and embeddings are recorded, the others pass
through).

One event per call, named after the function called, with the provider and model litellm resolves
from the model string (``custom_llm_provider``, ``"openai/gpt-4o"`` -> ``openai``, ``gpt-4o``):
the provider SDK litellm calls underneath (the openai client for OpenAI-compatible providers)
records nothing more, since the call runs inside ours (``_llm.dispatch_wrapper``). Responses and
stream chunks are litellm's OpenAI-shaped objects, recorded by the OpenAI integration's shaping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

from .._registry import min_version
from ._llm import Api, clean_params, dispatch_wrapper, given, skipping
from ._patch import Library, Target, loaded
from .openai import ChatStream, _chat_result, _response_metadata

__all__ = ["LIBRARY"]

_DISPATCH: Final = "litellm.rust_bridge.dispatch"
_STREAMING: Final = "litellm.litellm_core_utils.streaming_handler"

# Never recorded: credentials and client objects (the base URL is, as ``base_url``).
_SECRETS: Final = (
    "api_key",
    "api_base",
    "base_url",
    "azure_ad_token",
    "azure_ad_token_provider",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "vertex_credentials",
    "client",
    "litellm_logging_obj",
    "logger_fn",
)
_CHAT_SKIP: Final = skipping("model", "messages", *_SECRETS)
_EMBEDDING_SKIP: Final = skipping("model", "input", *_SECRETS)


def _config(params: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """Provider and model as litellm resolves them (``openai/gpt-4o`` -> ``openai``, ``gpt-4o``)."""
    given_model = params.get("model")
    provider, model = params.get("custom_llm_provider"), given_model
    module = loaded("litellm")
    if module is not None and isinstance(given_model, str):
        # litellm cannot tell? It says so to the caller; the event keeps the model string.
        with contextlib.suppress(Exception):
            model, provider, _key, _base = module.get_llm_provider(
                model=given_model, custom_llm_provider=provider, api_base=params.get("api_base")
            )
    config = clean_params(params, skip, {"provider": provider, "model": model})
    if model != given_model:
        config["litellm_model"] = given_model
    base = params.get("api_base") or params.get("base_url")
    if isinstance(base, str):
        config["base_url"] = base
    return config


def _chat_request(instance: Any, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    messages = params.get("messages")
    history = {"chat_history": list(messages)} if messages is not None and given(messages) else None
    return _config(params, _CHAT_SKIP), history


def _embedding_request(instance: Any, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    value = params.get("input")
    return _config(params, _EMBEDDING_SKIP), {"input": value} if value is not None else None


def _cost(response: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """litellm's own price of the call (``response_cost``), when it knows the model's prices."""
    hidden = getattr(response, "_hidden_params", None)
    cost = hidden.get("response_cost") if isinstance(hidden, Mapping) else None
    if isinstance(cost, (int, float)):
        metadata["cost"] = cost
    return metadata


def _completion_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    outputs, metadata = _chat_result(response)
    return outputs, _cost(response, metadata)


def _embedding_result(response: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    data = getattr(response, "data", None) or []
    outputs: dict[str, Any] = {"embeddings": len(data)}
    if data:
        first = data[0]
        vector = first.get("embedding") if isinstance(first, Mapping) else getattr(first, "embedding", None)
        if isinstance(vector, list):
            outputs["dimensions"] = len(vector)
    metadata = _response_metadata(response, {})
    usage = getattr(response, "usage", None)
    if usage is not None:
        for name in ("prompt_tokens", "total_tokens"):
            value = getattr(usage, name, None)
            if value is not None:
                metadata[name] = value
    return outputs, _cost(response, metadata)


def _fields(model: Any) -> dict[str, Any]:
    """A litellm model's fields as one dict: litellm keeps most of them in pydantic's
    ``__pydantic_extra__``, the others in ``__dict__``. Attribute access would cost 0.8 µs per field
    (2.3 µs for a missing one) through pydantic's ``__getattr__``; a dict lookup 0.03 µs (measured
    on litellm 1.110.2's ``Delta`` and ``StreamingChoices``)."""
    fields = model.__dict__
    extra = getattr(model, "__pydantic_extra__", None)
    return {**fields, **extra} if extra else fields


class ChunkStream(ChatStream):
    """litellm's ``ModelResponseStream`` chunks: OpenAI's shape, with the fields where litellm keeps
    them (see ``_fields``), not in ``__dict__`` alone as the openai SDK's models (``ChatStream``)."""

    __slots__ = ()
    FIELDS = staticmethod(_fields)


_stream_types: tuple[type, ...] = ()


def _streams() -> tuple[type, ...]:
    global _stream_types
    if not _stream_types:
        module = loaded(_STREAMING)
        if module is not None:
            _stream_types = (module.CustomStreamWrapper,)
    return _stream_types


# Leading positional parameters of the public functions, to record a call made positionally.
_POSITIONAL: Final = {"CHAT_COMPLETIONS": ("model", "messages"), "EMBEDDINGS": ("model", "input")}


def _apis(aio: bool) -> dict[str, Api]:
    prefix = "litellm.a" if aio else "litellm."
    chat = Api(
        f"{prefix}completion", LIBRARY, _chat_request, _completion_result, ChunkStream, _streams, saved=("messages",)
    )
    embedding = Api(
        f"{prefix}embedding", LIBRARY, _embedding_request, _embedding_result, ChunkStream, _streams, saved=("input",)
    )
    return {"CHAT_COMPLETIONS": chat, "EMBEDDINGS": embedding}


def _selector(aio: bool) -> Any:
    apis = _apis(aio)

    def select(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Api, dict[str, Any]] | None:
        """``run(args, kwargs, python=…, …)``: the user's own arguments are the first two."""
        if len(args) < 2:
            return None
        route = getattr(getattr(instance, "route", None), "name", None)
        api = apis.get(route) if isinstance(route, str) else None
        if api is None or not isinstance(route, str):
            return None
        call_args, call_kwargs = args[0], args[1]
        if not isinstance(call_kwargs, dict):
            call_kwargs = dict(call_kwargs)
        if call_args:
            names = _POSITIONAL[route]
            return api, {**dict(zip(names, call_args, strict=False)), **call_kwargs}
        return api, call_kwargs

    return select


def _targets() -> tuple[Target, ...]:
    return (
        Target(_DISPATCH, "PublicDispatch.run", dispatch_wrapper(LIBRARY, _selector(False), False)),
        Target(_DISPATCH, "PublicDispatch.arun", dispatch_wrapper(LIBRARY, _selector(True), True)),
    )


LIBRARY: Final = Library("litellm", min_version("litellm"), _targets)
