"""Prompt token counts of chat messages, including each model family's chat overhead.

Chat models do not see the message list: they see it laid out by a chat format, with
special tokens around each message. The overhead differs by family:

OpenAI (cl100k, o200k)
    OpenAI does not publish its internal format. We use the rule of OpenAI's cookbook
    ("How to count tokens with tiktoken"), which matches the API's ``prompt_tokens``
    for the models it lists: 3 tokens per message, the tokens of every string value
    (role, content, name), 1 more per ``name``, and 3 for the reply's priming
    (``<|start|>assistant<|message|>``). Keys the rule does not cover (``tool_calls``,
    ``tool_call_id``) are counted as their JSON text and make the count an estimate.

Llama 3 / 3.1+ and Qwen 2 / 2.5 / 3
    Their chat templates are public, so we lay the messages out exactly as the
    template does and count each special token as one token and each text run between
    special tokens with the vocabulary (which is how the model's tokenizer splits the
    rendered prompt). Llama 3.1 and later always insert a system block with a
    "Cutting Knowledge Date / Today Date" preamble (3.2 renders today's date; every
    ``DD Mon YYYY`` date has the same token count, so a fixed one is used). Qwen 2 and
    2.5 insert a default system prompt when there is none. Tool calls and tool
    results are laid out differently by each template and make the count an estimate.

Content given as parts (``[{"type": "text", "text": …}, {"type": "image_url", …}]``):
text parts are counted exactly; an image counts as OpenAI's price for one
1024x1024 high-detail image (765 tokens; 85 with ``detail: low``) and makes the count
an estimate, since its real cost depends on its size.

Everything else (Anthropic, unknown models) is estimated: ``ceil(characters / 4)`` per
message, plus the same 3 + 3 overhead as OpenAI's rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lockgate.accounting._tokens import (
    ESTIMATE,
    ModelFamily,
    Tokenizer,
    bundled_tokenizer,
    estimate_tokens,
    family_for,
    token_count,
)

if TYPE_CHECKING:
    # Not at run time: lockgate.providers imports this package (see _tokens.token_count).
    from lockgate.providers._types import Message, TokenCount

__all__ = ["count_message_tokens"]

_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3
_IMAGE_HIGH = 765  # 85 base + 4 tiles x 170: a 1024x1024 image at detail "high"/"auto"
_IMAGE_LOW = 85
# Keys OpenAI's cookbook rule accounts for; anything else makes the count an estimate.
_OPENAI_KEYS = frozenset({"role", "content", "name"})
_TEMPLATE_ROLES = frozenset({"system", "user", "assistant"})
_LLAMA_DATE_PREAMBLE = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"


@dataclass
class _Tally:
    """Tokens found so far, and whether every one of them was counted exactly."""

    tokenizer: Tokenizer
    tokens: int = 0
    exact: bool = True

    def special(self, n: int = 1) -> None:
        self.tokens += n

    def text(self, text: str) -> None:
        self.tokens += self.tokenizer.count(text)

    def estimate(self, tokens: int) -> None:
        self.tokens += tokens
        self.exact = False


def count_message_tokens(provider_type: str, model: str, messages: Sequence[Message]) -> TokenCount:
    """Prompt tokens that `messages` take for `model`, chat overhead included.

    Args:
        provider_type: the provider implementation (``openai``, ``anthropic``, ``local``).
        model: the provider's model id.
        messages: OpenAI-shaped messages; ``content`` is a string, None or a list of parts.

    Example:
        >>> count_message_tokens("openai", "gpt-4o", [{"role": "user", "content": "hi"}])
        TokenCount(tokens=8, exact=True, tokenizer='o200k_base')
    """
    family = family_for(provider_type, model)
    if family is None:
        return token_count(_estimate(messages), exact=False, tokenizer=ESTIMATE)
    tally = _Tally(bundled_tokenizer(family.encoding))
    if family.chat in ("openai", "harmony"):
        _openai_layout(tally, messages)
    elif family.chat in ("llama3", "llama3.1"):
        _llama3_layout(tally, messages, preamble=family.chat == "llama3.1")
    else:
        _chatml_layout(tally, messages, family)
    exact = tally.exact and family.chat_exact
    return token_count(tally.tokens, exact=exact, tokenizer=tally.tokenizer.name)


def _openai_layout(tally: _Tally, messages: Sequence[Message]) -> None:
    for message in messages:
        tally.special(_PER_MESSAGE)
        for key, value in message.items():
            if key not in _OPENAI_KEYS and value is not None:
                tally.exact = False
            if key == "content":
                _content(tally, value, join=None)
            elif isinstance(value, str):
                tally.text(value)
                if key == "name":
                    tally.special(_PER_NAME)
            elif value is not None:
                tally.text(_json(value))
    tally.special(_REPLY_PRIMING)


def _llama3_layout(tally: _Tally, messages: Sequence[Message], *, preamble: bool) -> None:
    # <|begin_of_text|>, then per message:
    # <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT|trim<|eot_id|>
    tally.special()
    rest = list(messages)
    if preamble:
        system = ""
        if rest and rest[0].get("role") == "system":
            system = _text_of(tally, rest.pop(0)).strip()
        tally.special(3)
        tally.text("system")
        tally.text("\n\n" + _LLAMA_DATE_PREAMBLE + system)
    for message in rest:
        role = _role(tally, message)
        tally.special(3)
        tally.text(role)
        tally.text("\n\n" + _text_of(tally, message).strip())
    tally.special(2)
    tally.text("assistant")
    tally.text("\n\n")


def _chatml_layout(tally: _Tally, messages: Sequence[Message], family: ModelFamily) -> None:
    # Per message: <|im_start|>ROLE\nCONTENT<|im_end|>\n
    if family.default_system is not None and (not messages or messages[0].get("role") != "system"):
        tally.special(2)
        tally.text(f"system\n{family.default_system}")
        tally.text("\n")
    for message in messages:
        role = _role(tally, message)
        tally.special(2)
        tally.text(f"{role}\n{_text_of(tally, message)}")
        tally.text("\n")
    tally.special()
    tally.text("assistant\n")
    if family.opens_think:
        tally.special()
        tally.text("\n")


def _role(tally: _Tally, message: Message) -> str:
    role = message.get("role")
    if role not in _TEMPLATE_ROLES or message.get("tool_calls"):
        # Tool results and calls have template-specific layouts not reproduced here.
        tally.exact = False
    return role if isinstance(role, str) else "user"


def _text_of(tally: _Tally, message: Message) -> str:
    """The message as the template renders it: its text, with parts joined by newlines
    (as vLLM does); tool calls are appended as JSON and estimated."""
    text = _content(tally, message.get("content"), join="\n") or ""
    if message.get("tool_calls"):
        text += _json(message["tool_calls"])
    return text


def _content(tally: _Tally, content: Any, *, join: str | None) -> str | None:
    """Count non-text parts into `tally`; count text parts too when `join` is None,
    otherwise return them joined for the caller to lay out."""
    if content is None:
        return None
    if isinstance(content, str):
        parts: list[Any] = [content]
    elif isinstance(content, list):
        parts = content
    else:
        tally.estimate(estimate_tokens(_json(content)))
        return None
    texts: list[str] = []
    for part in parts:
        text = _part_text(part)
        if text is not None:
            texts.append(text)
        else:
            tally.estimate(_part_estimate(part))
    if join is None:
        for text in texts:
            tally.text(text)
        return None
    if len(texts) > 1:
        tally.exact = False  # how a server joins parts for a text-only template varies
    return join.join(texts)


def _part_text(part: Any) -> str | None:
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        text: str = part["text"]
        return text
    return None


def _part_estimate(part: Any) -> int:
    if isinstance(part, dict) and part.get("type") in ("image_url", "image", "input_image"):
        image = part.get("image_url")
        detail = image.get("detail") if isinstance(image, dict) else part.get("detail")
        return _IMAGE_LOW if detail == "low" else _IMAGE_HIGH
    return estimate_tokens(_json(part))


def _estimate(messages: Sequence[Message]) -> int:
    total = _REPLY_PRIMING
    for message in messages:
        total += _PER_MESSAGE
        for key, value in message.items():
            if key == "content" and isinstance(value, list):
                for part in value:
                    text = _part_text(part)
                    total += estimate_tokens(text) if text is not None else _part_estimate(part)
            elif isinstance(value, str):
                total += estimate_tokens(value)
            elif value is not None:
                total += estimate_tokens(_json(value))
    return total


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
