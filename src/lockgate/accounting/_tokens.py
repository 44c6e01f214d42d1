"""Exact, offline tokenizers chosen by model name, and plain-text token counts.

The vocabularies (cl100k, o200k, o200k-harmony, Llama 3, Qwen 2/2.5/3) ship inside the
``quicktok`` wheel, so nothing is downloaded. Each vocabulary is loaded the first time
it is used (0.1 to 0.5 s), once per process, never at import time.

Which vocabulary a model uses is decided by its *name*, not by the provider type: the
``openai`` provider type also serves vLLM, Ollama and every other OpenAI-compatible
server, so ``openai/meta-llama/Llama-3.1-8B-Instruct`` is a Llama 3 model.

Models without a public tokenizer (Anthropic's, and anything not recognised) get an
estimate of ``ceil(characters / 4)``: OpenAI's published rule of thumb for English
text. It is returned with ``exact=False`` and ``tokenizer="estimate"`` so that callers
show it as an estimate.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lockgate.providers._types import TokenCount

__all__ = [
    "ESTIMATE",
    "ChatFormat",
    "ModelFamily",
    "Tokenizer",
    "bundled_tokenizer",
    "count_text_tokens",
    "estimate_tokens",
    "family_for",
    "model_family",
    "token_count",
    "tokenizer_for",
]

ESTIMATE = "estimate"
"""The `TokenCount.tokenizer` of every estimate."""

_CHARS_PER_TOKEN = 4

ChatFormat = Literal["openai", "harmony", "llama3", "llama3.1", "chatml"]


@runtime_checkable
class Tokenizer(Protocol):
    """A vocabulary that turns text into token ids.

    `tokenizer_for` returns the bundled ones; other vocabularies (a local GGUF model's
    own) can implement the same protocol.
    """

    @property
    def name(self) -> str:
        """The encoding's name, e.g. ``o200k_base``."""
        ...

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`."""
        ...


class _BundledTokenizer:
    """A quicktok vocabulary, loaded on first use and shared by every thread.

    Special-token strings in the text (``<|endoftext|>``) are counted as plain text, the
    way hosted APIs treat them in user content; encoding never raises on them.
    """

    __slots__ = ("_encoding", "_lock", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._encoding: _QuicktokEncoding | None = None

    @property
    def name(self) -> str:
        return self._name

    def count(self, text: str) -> int:
        return int(self._loaded().count(text))

    def encode(self, text: str) -> list[int]:
        return list(self._loaded().encode_ordinary(text))

    def _loaded(self) -> _QuicktokEncoding:
        encoding = self._encoding
        if encoding is None:
            # Double-checked: the common path takes no lock; loading happens once.
            with self._lock:
                encoding = self._encoding
                if encoding is None:
                    encoding = self._encoding = _load_quicktok(self._name)
        return encoding

    def __repr__(self) -> str:
        state = "loaded" if self._encoding is not None else "not loaded"
        return f"<Tokenizer {self._name} ({state})>"


class _QuicktokEncoding(Protocol):
    """The part of ``quicktok.Tokenizer`` used here (the wheel ships no type hints)."""

    def count(self, text: str) -> int: ...

    def encode_ordinary(self, text: str) -> list[int]: ...


def _load_quicktok(name: str) -> _QuicktokEncoding:
    # Imported here so `import lockgate` stays fast and the vocabulary loads on demand.
    import quicktok

    # The constructor reads only the bundled data; quicktok.get_encoding() would also
    # look in ~/.cache/quicktok for user-imported vocabularies, which we never want.
    encoding: _QuicktokEncoding = quicktok.Tokenizer(name, "")
    return encoding


_TOKENIZERS: Mapping[str, _BundledTokenizer] = MappingProxyType(
    {
        name: _BundledTokenizer(name)
        for name in ("cl100k_base", "o200k_base", "o200k_harmony", "llama3", "qwen3")
    }
)


@dataclass(frozen=True)
class ModelFamily:
    """How a model tokenizes and how its chat messages are laid out.

    Attributes:
        encoding: the bundled vocabulary's name.
        chat: the chat layout that `count_message_tokens` applies.
        chat_exact: whether that layout is the model's own chat template (true) or a
            near guess for a variant whose template is not reproduced (false).
        default_system: the system prompt the template inserts when the messages have
            none (Qwen 2 and 2.5 do this).
        opens_think: the generation prompt opens a ``<think>`` block (Qwen3 "Thinking").
    """

    encoding: str
    chat: ChatFormat
    chat_exact: bool = True
    default_system: str | None = None
    opens_think: bool = False


_O200K = ModelFamily("o200k_base", "openai")
_CL100K = ModelFamily("cl100k_base", "openai")
_HARMONY = ModelFamily("o200k_harmony", "harmony", chat_exact=False)

# Prefixes of the base name (after any "org/" path and "ft:" wrapper).
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o")
_CL100K_PREFIXES = ("gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002")
_O_SERIES = re.compile(r"o[134](?:-|$)")
_GPT4 = re.compile(r"gpt-4(?:-|$)")
# "llama-3", "llama3", "Meta-Llama-3.1" -- but not LLaMA-1 "llama-30b" or "codellama-34b".
_LLAMA3 = re.compile(r"llama-?3(?!\d)")
_LLAMA31_PLUS = re.compile(r"llama-?3\.[1-9]")
_QWEN = re.compile(r"qwen|qwq")
_QWEN3 = re.compile(r"qwen-?3")
_QWEN25 = re.compile(r"qwen-?2\.5")
_QWEN2 = re.compile(r"qwen-?2(?![.\d])")
# Qwen variants whose templates differ from the base chat ones (vision, maths, audio).
_QWEN_OTHER_TEMPLATE = re.compile(r"[-_.](?:vl|math|omni|audio)|qwq")

_QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
_QWEN2_SYSTEM = "You are a helpful assistant."


def _base_name(model: str) -> str:
    """``ft:gpt-4o-mini-2024-07-18:org::id`` or ``openai/gpt-4o`` -> ``gpt-4o...``."""
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    return name.rsplit("/", 1)[-1]


def model_family(model: str) -> ModelFamily | None:
    """The vocabulary and chat layout of `model`, from its name; None when unknown.

    Example:
        >>> model_family("gpt-4o-mini-2024-07-18").encoding
        'o200k_base'
        >>> model_family("meta-llama/Llama-3.1-8B-Instruct").chat
        'llama3.1'
    """
    full = model.strip().lower()
    base = _base_name(model)
    if base.startswith(_O200K_PREFIXES) or _O_SERIES.match(base):
        return _O200K
    if base.startswith(_CL100K_PREFIXES) or _GPT4.match(base):
        return _CL100K
    if base.startswith("gpt-oss"):
        # Text counts are exact; the harmony chat template adds a generated system
        # preamble that is not reproduced here, so message counts are estimates.
        return _HARMONY
    if _LLAMA3.search(full):
        return ModelFamily("llama3", "llama3.1" if _LLAMA31_PLUS.search(full) else "llama3")
    if _QWEN.search(full):
        return _qwen_family(full)
    return None


def _qwen_family(name: str) -> ModelFamily:
    # Qwen 2, 2.5 and 3 share one byte-level BPE vocabulary (Qwen3 only adds specials).
    if _QWEN_OTHER_TEMPLATE.search(name):
        return ModelFamily("qwen3", "chatml", chat_exact=False)
    if _QWEN3.search(name):
        return ModelFamily("qwen3", "chatml", opens_think="thinking" in name)
    if _QWEN25.search(name):
        return ModelFamily("qwen3", "chatml", default_system=_QWEN25_SYSTEM)
    if _QWEN2.search(name):
        return ModelFamily("qwen3", "chatml", default_system=_QWEN2_SYSTEM)
    # Hosted names (qwen-max, qwen-plus): same vocabulary, server-side layout unknown.
    return ModelFamily("qwen3", "chatml", chat_exact=False)


def family_for(provider_type: str, model: str) -> ModelFamily | None:
    """`model_family`, except that Anthropic models never get a guessed vocabulary."""
    if provider_type.strip().lower() == "anthropic":
        # Anthropic's tokenizer is not public; never guess one from the name.
        return None
    return model_family(model)


def tokenizer_for(provider_type: str, model: str) -> Tokenizer | None:
    """The exact tokenizer of `model`, or None when it is not known.

    Cheap to call per request: the vocabulary loads on the first count, once.

    Args:
        provider_type: the provider implementation (``openai``, ``anthropic``, ``local``).
        model: the provider's model id, with or without an ``org/`` path or date.

    Example:
        >>> tokenizer_for("openai", "gpt-4o-mini-2024-07-18").name
        'o200k_base'
        >>> tokenizer_for("anthropic", "claude-3-5-sonnet-20241022") is None
        True
    """
    family = family_for(provider_type, model)
    return None if family is None else _TOKENIZERS[family.encoding]


def estimate_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: the estimate used where no tokenizer is known."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


def count_text_tokens(provider_type: str, model: str, text: str) -> TokenCount:
    """Tokens in a plain string (a completion, an embedding input) for `model`.

    Example:
        >>> count_text_tokens("openai", "gpt-4", "hello world")
        TokenCount(tokens=2, exact=True, tokenizer='cl100k_base')
    """
    tokenizer = tokenizer_for(provider_type, model)
    if tokenizer is None:
        return token_count(estimate_tokens(text), exact=False, tokenizer=ESTIMATE)
    return token_count(tokenizer.count(text), exact=True, tokenizer=tokenizer.name)


def token_count(tokens: int, *, exact: bool, tokenizer: str) -> TokenCount:
    """A `TokenCount` (imported here, not at module level: ``lockgate.providers``
    imports this package, so a module-level import back into it would be circular)."""
    from lockgate.providers._types import TokenCount

    return TokenCount(tokens, exact=exact, tokenizer=tokenizer)


def bundled_tokenizer(encoding: str) -> Tokenizer:
    """The shared tokenizer of a bundled vocabulary name (``llama3``)."""
    return _TOKENIZERS[encoding]
