"""Parsing of ids (``name-vN``) and references (``name@…``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.errors import BadReference
from lockgate.registry import Ref
from lockgate.registry._refs import split_id

names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,30}", fullmatch=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("support-triage@4", Ref("support-triage", version=4)),
        ("support-triage@v4", Ref("support-triage", version=4)),
        ("support-triage@production", Ref("support-triage", label="production")),
        ("support-triage@latest", Ref("support-triage", label="latest")),
        ("support-triage", Ref("support-triage", label="latest")),
    ],
)
def test_parse(text: str, expected: Ref) -> None:
    assert Ref.parse(text) == expected


@pytest.mark.parametrize("text", ["", "@4", "a b@1", "x@", "x@0", "x@-1", "x@pro duction"])
def test_bad_references(text: str) -> None:
    with pytest.raises(BadReference):
        Ref.parse(text)


@given(name=names, version=st.integers(1, 10**6))
def test_id_and_reference_round_trip(name: str, version: int) -> None:
    assert split_id(f"{name}-v{version}") == (name, version)
    assert Ref.parse(str(Ref(name, version=version))) == Ref(name, version=version)


@pytest.mark.parametrize("bad", ["triage", "triage-v0", "triage-v", "-v3", "triage-vX"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="-vN"):
        split_id(bad)


def test_names_with_v_inside_split_on_the_last_suffix() -> None:
    assert split_id("rag-v2-eval-v3") == ("rag-v2-eval", 3)
