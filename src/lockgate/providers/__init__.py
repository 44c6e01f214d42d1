"""Model providers behind one async contract, and the `Client` that calls them.

Built-in provider types: ``openai`` (any OpenAI-compatible server), ``anthropic``
(the Messages API, translated to the OpenAI chat shape) and ``local`` (llama.cpp on GGUF
models shipped in PyPI packages). Plugins register more through the
``lockgate.providers`` entry-point group.
"""

from lockgate.providers._cache import CACHE_MODES, CacheMode, ResponseCache, cache_key
from lockgate.providers._client import ChatResult, Client, ResolvedModel, StreamResult
from lockgate.providers._registry import (
    BUILTIN_PROVIDERS,
    ENTRY_POINT_GROUP,
    ProviderFactory,
    factory_for,
    provider_types,
    register,
)
from lockgate.providers._retry import RetryPolicy, stream_with_retries, with_retries
from lockgate.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    Message,
    ModelInfo,
    Provider,
    TokenCount,
    Usage,
)

__all__ = [
    "BUILTIN_PROVIDERS",
    "CACHE_MODES",
    "ENTRY_POINT_GROUP",
    "CacheMode",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatResult",
    "Client",
    "EmbeddingResponse",
    "Message",
    "ModelInfo",
    "Provider",
    "ProviderFactory",
    "ResolvedModel",
    "ResponseCache",
    "RetryPolicy",
    "StreamResult",
    "TokenCount",
    "Usage",
    "cache_key",
    "factory_for",
    "provider_types",
    "register",
    "stream_with_retries",
    "with_retries",
]
