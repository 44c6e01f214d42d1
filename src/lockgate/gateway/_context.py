"""Context-window management: trim a conversation (and retrieved chunks) to fit.

A request's input must fit ``min(window - max_tokens, input_budget)`` tokens: the model's
window less the room reserved for the answer, and the route's input budget when it has
one. `fit_messages` keeps every system message and the latest turns, dropping the oldest
turns whole; `fit_chunks` keeps the best-scored retrieved chunks that fit a budget.

A *turn* is a user message and everything after it up to the next user message: the
assistant's answer, its tool calls and the tool results answering them. Dropping whole
turns keeps the conversation well formed: a tool result never loses its call, and an
answer never loses its question.

Counting is done once per message (with the count of an empty conversation as the
constant overhead), so trimming costs about two counts of the conversation whatever the
number of turns dropped; the kept conversation is then counted as a whole, and trimmed
further in the rare case where chat-format interactions make it larger than estimated.

Example:
    >>> from lockgate.accounting import count_message_tokens
    >>> def count(messages):
    ...     return count_message_tokens("openai", "gpt-4o-mini-2024-07-18", messages).tokens
    >>> history = [
    ...     {"role": "system", "content": "Be brief."},
    ...     {"role": "user", "content": "word " * 50},
    ...     {"role": "assistant", "content": "word " * 50},
    ...     {"role": "user", "content": "And now?"},
    ... ]
    >>> result = fit_messages(history, count=count, window=100, max_tokens=50)
    >>> result.dropped, result.tokens_before, result.tokens_after, result.budget
    ([1, 2], 127, 17, 50)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lockgate.errors import ContextTooLarge
from lockgate.providers._types import Message

__all__ = ["TrimResult", "fit_chunks", "fit_messages"]


@dataclass(frozen=True)
class TrimResult:
    """What `fit_messages` kept, and what it left out.

    Attributes:
        messages: the conversation to send, in its original order.
        dropped: original indices of the messages left out, ascending.
        tokens_before: input tokens of the whole conversation.
        tokens_after: input tokens of `messages` (never above `budget`).
        budget: the input tokens allowed.
    """

    messages: list[Message]
    dropped: list[int]
    tokens_before: int
    tokens_after: int
    budget: int

    @property
    def trimmed(self) -> bool:
        return bool(self.dropped)

    def to_trace(self) -> dict[str, Any]:
        """The JSON-ready record the gateway stores in the request's trace."""
        return {
            "dropped": list(self.dropped),
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "budget": self.budget,
        }


def fit_messages(
    messages: Sequence[Message],
    *,
    count: Callable[[list[Message]], int],
    window: int,
    max_tokens: int,
    input_budget: int | None = None,
) -> TrimResult:
    """Drop the oldest turns of `messages` until the input fits.

    Args:
        messages: the conversation, OpenAI-shaped.
        count: input tokens of a list of messages, chat overhead included.
        window: the model's context window.
        max_tokens: tokens reserved for the answer.
        input_budget: the route's cap on input tokens, if any.

    Raises:
        ContextTooLarge: the system messages and the last turn alone do not fit.
    """
    budget = window - max_tokens
    if input_budget is not None:
        budget = min(budget, input_budget)
    original = list(messages)
    total = count(original)
    if total <= budget:
        return TrimResult(original, [], total, total, budget)

    groups = _turns(original)
    # The last turn is the question being asked: it is never dropped.
    droppable = groups[:-1]
    required = groups[-1] if groups else []
    if budget <= 0:
        raise _too_large(original, required, count, window, max_tokens, input_budget, budget)

    overhead = count([])
    cost = [count([message]) - overhead for message in original]
    # Starting from the whole conversation's real count (not the sum of the parts) keeps
    # whatever the chat format does not add up (a default system prompt, a merged
    # preamble) in the estimate of what is left.
    estimate = total
    dropped: list[int] = []
    next_group = 0
    while estimate > budget and next_group < len(droppable):
        group = droppable[next_group]
        dropped.extend(group)
        estimate -= sum(cost[i] for i in group)
        next_group += 1

    kept, actual = _count_kept(original, dropped, count)
    while actual > budget and next_group < len(droppable):
        dropped.extend(droppable[next_group])
        next_group += 1
        kept, actual = _count_kept(original, dropped, count)
    if actual > budget:
        raise _too_large(original, required, count, window, max_tokens, input_budget, budget)
    return TrimResult(kept, sorted(dropped), total, actual, budget)


def fit_chunks(
    chunks: Sequence[tuple[str, float]],
    *,
    count_text: Callable[[str], int],
    budget: int,
    per_chunk_overhead: int = 0,
) -> list[int]:
    """The positions of the highest-scored retrieved chunks whose tokens fit `budget`.

    Chunks are taken best score first (ties in retrieval order); one that does not fit
    is skipped and smaller, lower-scored ones may still be taken. The positions are
    ascending (the chunks' original order); positions, not texts, so that two equal
    chunks are told apart.

    Args:
        chunks: ``(text, score)`` pairs, higher scores better.
        count_text: tokens of one text.
        budget: tokens the chunks may take together.
        per_chunk_overhead: tokens added by laying out each chunk (separators, headers).
    """
    order = sorted(range(len(chunks)), key=lambda i: -chunks[i][1])
    used = 0
    chosen: set[int] = set()
    for i in order:
        tokens = count_text(chunks[i][0]) + per_chunk_overhead
        if used + tokens <= budget:
            used += tokens
            chosen.add(i)
    return sorted(chosen)


def _turns(messages: list[Message]) -> list[list[int]]:
    """Indices of the non-system messages grouped into turns, oldest first."""
    groups: list[list[int]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "system":
            continue
        if role == "user" or not groups:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def _count_kept(
    messages: list[Message], dropped: list[int], count: Callable[[list[Message]], int]
) -> tuple[list[Message], int]:
    gone = set(dropped)
    kept = [m for i, m in enumerate(messages) if i not in gone]
    return kept, count(kept)


def _too_large(
    messages: list[Message],
    required: list[int],
    count: Callable[[list[Message]], int],
    window: int,
    max_tokens: int,
    input_budget: int | None,
    budget: int,
) -> ContextTooLarge:
    keep = set(required)
    minimal = [m for i, m in enumerate(messages) if m.get("role") == "system" or i in keep]
    need = count(minimal)
    has_system = any(m.get("role") == "system" for m in minimal)
    what = "the system prompt and the last message" if has_system else "the last message"
    limit = f"the model's window is {window:,} minus max_tokens {max_tokens:,}"
    if input_budget is not None and input_budget < window - max_tokens:
        limit = f"the route's input budget is {input_budget:,} tokens ({limit})"
    return ContextTooLarge(
        f"{what} need {need:,} tokens but only {max(budget, 0):,} are available: {limit}"
    )
