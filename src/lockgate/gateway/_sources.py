"""Retrieved sources for prompts with a ``retrieval`` section.

lockgate has no vector index of its own yet, so the caller runs the search and sends its
hits with the request, next to the prompt's variables::

    {"model": "prompt:support-triage@production",
     "variables": {"input": "I was charged twice"},
     "documents": [{"id": "kb-12", "text": "Refunds take 5 days.", "score": 0.83},
                   "a document may also be plain text"]}

The prompt's ``retrieval`` settings decide what is used: documents scored under
``min_score`` are dropped, the best ``top_k`` by score are kept (unscored documents rank
after scored ones, in the order sent), and of those, the best-ranked that fit the room
the conversation leaves in the context window are used (a long source may give way to
shorter, lower-ranked ones). With no known window, all ``top_k`` are used. The kept
documents go into one system message after the prompt's system text, numbered so the
model can cite them. The trace records how many were offered, used and dropped, and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lockgate.gateway._context import fit_chunks
from lockgate.gateway._openai_io import GatewayError
from lockgate.registry._prompt import Retrieval

__all__ = [
    "Document",
    "Selection",
    "lay_sources",
    "parse_documents",
    "select",
    "source_line",
    "sources_message",
]

MAX_DOCUMENTS = 1000
# The sources message's heading and each chunk's separator and number, with margin.
SOURCES_HEADER_TOKENS = 32

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class Document:
    """One retrieved chunk as the caller sent it."""

    text: str
    score: float | None = None
    id: str | None = None


@dataclass(frozen=True)
class Selection:
    """The documents a prompt's retrieval settings kept, best first, and the counts of
    those it left out."""

    kept: list[Document]
    offered: int
    below_min_score: int
    beyond_top_k: int


def parse_documents(value: Any) -> list[Document]:
    """``documents`` from a request body; every problem names ``documents[i].field``."""
    if not isinstance(value, list):
        raise GatewayError(400, "'documents' must be a list", param="documents")
    if len(value) > MAX_DOCUMENTS:
        raise GatewayError(
            400, f"'documents' holds {len(value)} items; at most {MAX_DOCUMENTS}", param="documents"
        )
    documents = []
    for index, item in enumerate(value):
        where = f"documents[{index}]"
        if isinstance(item, str):
            documents.append(Document(item))
            continue
        if not isinstance(item, dict):
            raise GatewayError(
                400, f"{where} must be a string or an object with 'text'", param=where
            )
        text, score, doc_id = item.get("text"), item.get("score"), item.get("id")
        if not isinstance(text, str) or not text.strip():
            raise GatewayError(400, f"{where}.text must be a non-empty string", param=where)
        if score is not None and (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise GatewayError(400, f"{where}.score must be a finite number", param=where)
        if doc_id is not None and not isinstance(doc_id, str | int):
            raise GatewayError(400, f"{where}.id must be a string or an integer", param=where)
        documents.append(
            Document(
                text,
                None if score is None else float(score),
                None if doc_id is None else str(doc_id),
            )
        )
    return documents


def select(documents: list[Document], retrieval: Retrieval) -> Selection:
    """Apply ``min_score`` then ``top_k``; the result is ranked best first."""
    eligible = [
        d
        for d in documents
        if retrieval.min_score is None or d.score is None or d.score >= retrieval.min_score
    ]
    # Stable sort: unscored documents after scored ones, each group in the order sent.
    ranked = sorted(eligible, key=lambda d: (d.score is None, -(d.score or 0.0)))
    return Selection(
        kept=ranked[: retrieval.top_k],
        offered=len(documents),
        below_min_score=len(documents) - len(eligible),
        beyond_top_k=max(0, len(ranked) - retrieval.top_k),
    )


def source_line(number: int, document: Document) -> str:
    """How one document is laid out in the sources message."""
    label = f"[{number}]" if document.id is None else f"[{number}] ({document.id})"
    return f"{label} {document.text}"


def sources_message(index: str, documents: list[Document]) -> dict[str, Any]:
    """The system message that lays `documents` out, numbered from 1."""
    parts = [f"Sources retrieved from '{index}' (cite them by number):"]
    parts += [source_line(number, d) for number, d in enumerate(documents, 1)]
    return {"role": "system", "content": "\n\n".join(parts)}


def lay_sources(
    messages: Messages,
    retrieval: Retrieval,
    selection: Selection | None,
    *,
    count: Callable[[Messages], int],
    budget: int | None,
    used_tokens: int,
) -> tuple[Messages, int | None, dict[str, Any]]:
    """`messages` with the selected sources after their system text, the conversation's
    input tokens (None when nothing was added), and what the trace records.

    Args:
        count: input tokens of a conversation for the target model.
        budget: input tokens the whole may take; None when the window is unknown (then
            every selected source is used).
        used_tokens: what `messages` already take.
    """
    details: dict[str, Any] = {"index": retrieval.index, "top_k": retrieval.top_k}
    if selection is None:
        details["offered"] = 0
        details["note"] = "no documents in the request; lockgate has no index to search"
        return messages, None, details

    def laid_out(documents: list[Document]) -> Messages:
        if not documents:
            return messages
        head = 0
        while head < len(messages) and messages[head].get("role") == "system":
            head += 1
        return [*messages[:head], sources_message(retrieval.index, documents), *messages[head:]]

    kept = selection.kept
    if budget is not None:
        # Each source counted as laid out, label included; rank stands in for score.
        lines = [(source_line(rank + 1, d), -float(rank)) for rank, d in enumerate(kept)]
        chosen = fit_chunks(
            lines,
            count_text=lambda text: count([{"role": "system", "content": text}]),
            budget=max(0, budget - used_tokens - SOURCES_HEADER_TOKENS),
        )
        kept = [kept[i] for i in chosen]
    with_sources = laid_out(kept)
    tokens = count(with_sources)
    while budget is not None and kept and tokens > budget:  # estimates ran short
        kept = kept[:-1]
        with_sources = laid_out(kept)
        tokens = count(with_sources)
    details.update(
        offered=selection.offered,
        used=len(kept),
        below_min_score=selection.below_min_score,
        beyond_top_k=selection.beyond_top_k,
        over_budget=len(selection.kept) - len(kept),
        ids=[d.id for d in kept if d.id is not None],
    )
    return with_sources, tokens, details
