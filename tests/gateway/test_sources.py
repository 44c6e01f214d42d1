"""Retrieved sources sent with a request, read through a prompt's retrieval settings."""

from __future__ import annotations

from typing import Any

import pytest

from lockgate.gateway._openai_io import GatewayError
from lockgate.gateway._sources import Document, parse_documents, select, sources_message
from lockgate.registry._prompt import Retrieval


def test_strings_and_objects_are_documents() -> None:
    assert parse_documents(["plain", {"text": "scored", "score": 1, "id": 7}]) == [
        Document("plain"),
        Document("scored", 1.0, "7"),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("text", "'documents' must be a list"),
        ([3], r"documents\[0\] must be a string or an object"),
        ([{"text": " "}], r"documents\[0\]\.text must be a non-empty string"),
        (["ok", {"text": "a", "score": "high"}], r"documents\[1\]\.score must be a finite"),
        ([{"text": "a", "score": True}], r"documents\[0\]\.score must be a finite"),
        ([{"text": "a", "id": [1]}], r"documents\[0\]\.id must be a string"),
        (["a"] * 1001, "holds 1001 items; at most 1000"),
    ],
)
def test_bad_documents_name_the_item(value: Any, message: str) -> None:
    with pytest.raises(GatewayError, match=message) as raised:
        parse_documents(value)
    assert raised.value.status == 400
    assert raised.value.param is not None and raised.value.param.startswith("documents")


def test_min_score_then_top_k_with_unscored_last_in_sent_order() -> None:
    documents = [
        Document("u1"),
        Document("low", 0.1),
        Document("mid", 0.5),
        Document("u2"),
        Document("top", 0.9),
    ]
    chosen = select(documents, Retrieval(index="kb", top_k=3, min_score=0.3))
    assert [d.text for d in chosen.kept] == ["top", "mid", "u1"]
    assert (chosen.offered, chosen.below_min_score, chosen.beyond_top_k) == (5, 1, 1)


def test_sources_are_numbered_with_their_ids() -> None:
    message = sources_message("kb", [Document("alpha", id="a-1"), Document("beta")])
    assert message == {
        "role": "system",
        "content": "Sources retrieved from 'kb' (cite them by number):\n\n"
        "[1] (a-1) alpha\n\n[2] beta",
    }
