"""Structure scorers: JSON found in model output, schema validation, field values."""

from __future__ import annotations

import json
from typing import Any, cast

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.errors import UserError
from lockgate.evals._types import Case, Output, Score
from lockgate.scorers import CaseScorer, ScorerContext, build_scorer
from lockgate.scorers._common import find_json
from lockgate.scorers._structure import parse_path


async def run(name: str, args: dict[str, Any], text: str, expected: Any = None) -> Score:
    info, score = build_scorer(name, args)
    assert info.kind == "case"
    case = Case(id="c1", expected=expected)
    return await cast(CaseScorer, score)(Output(text=text), case, ScorerContext())


TRIAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "technical", "account", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["category"],
    "additionalProperties": False,
}


# -- json_valid ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"category": "billing"}', "whole"),
        ("  [1, 2, 3]\n", "whole"),
        ('"just a string"', "whole"),
        ('Here you go:\n```json\n{"category": "billing"}\n```\nAnything else?', "fenced"),
        ('```\n{"a": 1}\n```', "fenced"),
        ('Sure! {"category": "billing"} Hope this helps.', "embedded"),
        ('The list [x] is not JSON but {"a": [1, 2]} is', "embedded"),
    ],
)
async def test_json_valid_finds_json(text: str, where: str) -> None:
    score = await run("json_valid", {}, text)
    assert score.passed and score.details["where"] == where


@pytest.mark.parametrize(
    "text", ["", "billing", "{'single': 'quotes'}", '{"a": NaN}', "```json\n{broken\n```"]
)
async def test_json_valid_rejects_non_json(text: str) -> None:
    score = await run("json_valid", {}, text)
    assert not score.passed and "is not JSON" in (score.reason or "")


async def test_json_valid_without_extract_demands_the_whole_text() -> None:
    assert not (await run("json_valid", {"extract": False}, 'Sure! {"a": 1}')).passed
    assert (await run("json_valid", {"extract": False}, ' {"a": 1}\n')).passed


# Backticks inside a string would end the fence early; that is the one case not covered.
_TEXT = st.text(st.characters(exclude_characters="`"))


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | _TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
        max_leaves=8,
    )
)
def test_find_json_round_trips_any_json_value(value: Any) -> None:
    text = json.dumps(value)
    found = find_json(f"```json\n{text}\n```")
    assert found is not None and found.value == value


# -- json_schema --------------------------------------------------------------------------


async def test_json_schema_passes_and_fails_like_jsonschema() -> None:
    ok = await run("json_schema", {"schema": TRIAGE_SCHEMA}, '{"category": "billing"}')
    assert ok.passed and ok.value == 1.0
    bad = '{"category": "refunds", "confidence": 2}'
    score = await run("json_schema", {"schema": TRIAGE_SCHEMA}, bad)
    reference = list(
        jsonschema.Draft202012Validator(TRIAGE_SCHEMA).iter_errors(
            {"category": "refunds", "confidence": 2}
        )
    )
    assert not score.passed
    assert len(score.details["errors"]) == len(reference) == 2
    assert {e["path"] for e in score.details["errors"]} == {"$.category", "$.confidence"}
    assert (score.reason or "").startswith("schema violation at $.")
    assert "(and 1 more)" in (score.reason or "")


async def test_json_schema_reason_names_the_path_of_a_nested_error() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
    }
    score = await run("json_schema", {"schema": schema}, '{"items": [1, "two", 3]}')
    assert score.reason == "schema violation at $.items[1]: 'two' is not of type 'integer'"


async def test_json_schema_checks_formats_and_extracts() -> None:
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    assert not (await run("json_schema", {"schema": schema}, '{"email": "nope"}')).passed
    fenced = 'Result:\n```json\n{"email": "ana@example.com"}\n```'
    assert (await run("json_schema", {"schema": schema}, fenced)).passed


async def test_json_schema_on_non_json_output_fails() -> None:
    score = await run("json_schema", {"schema": TRIAGE_SCHEMA}, "billing")
    assert not score.passed and "not JSON" in (score.reason or "")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({}, "schema"),
        ({"schema": "object"}, "JSON schema object"),
        ({"schema": {"type": "objekt"}}, "invalid JSON schema"),
        ({"schema": {}, "schema_file": "x.json"}, "schema_file"),
    ],
)
def test_json_schema_bad_arguments(args: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError, match="scorer 'json_schema'") as caught:
        build_scorer("json_schema", args)
    assert fragment in str(caught.value)


# -- json_field ---------------------------------------------------------------------------


async def test_json_field_triage_example() -> None:
    # The support-triage suite: the model answers JSON, the case expects a category.
    score = await run("json_field", {"path": "category"}, '{"category": "billing"}', "billing")
    assert score.passed and score.details == {
        "path": "category",
        "actual": "billing",
        "expected": "billing",
    }
    wrong = await run("json_field", {"path": "category"}, '{"category": "account"}', "billing")
    assert not wrong.passed
    assert wrong.reason == "category: expected billing, got account"


async def test_json_field_paths_and_expected_objects() -> None:
    text = '```json\n{"a": {"b": [{"c": 1}, {"c": "x"}]}}\n```'
    assert (await run("json_field", {"path": "a.b[1].c"}, text, "x")).passed
    assert (await run("json_field", {"path": "a.b[0].c", "value": 1}, text)).passed
    assert (
        await run("json_field", {"path": "a.b[1].c"}, text, {"a": {"b": [{}, {"c": "x"}]}})
    ).passed
    flat = {"category": "billing", "priority": "high"}
    assert (await run("json_field", {"path": "category"}, '{"category": "billing"}', flat)).passed
    dotted = {"a.b": 2}
    assert (await run("json_field", {"path": "a.b"}, '{"a": {"b": 2}}', dotted)).passed


async def test_json_field_comparisons() -> None:
    assert (await run("json_field", {"path": "n"}, '{"n": 3}', "3")).passed
    assert (await run("json_field", {"path": "n"}, '{"n": 3.0}', 3)).passed
    assert not (await run("json_field", {"path": "n"}, '{"n": true}', 1)).passed
    assert not (await run("json_field", {"path": "c"}, '{"c": "Billing"}', "billing")).passed
    assert (
        await run("json_field", {"path": "c", "ignore_case": True}, '{"c": "Billing"}', "billing")
    ).passed
    assert (await run("json_field", {"path": "c", "value": None}, '{"c": null}', "x")).passed
    assert (await run("json_field", {"path": "c"}, '{"c": ["a", "b"]}', ["a", "b"])).passed


async def test_json_field_failures() -> None:
    missing = await run("json_field", {"path": "a.b"}, '{"a": {}}', "x")
    assert not missing.passed and "has no field 'a.b'" in (missing.reason or "")
    index = await run("json_field", {"path": "a[3]"}, '{"a": [1]}', 1)
    assert not index.passed
    no_expected = await run("json_field", {"path": "a"}, '{"a": 1}')
    assert not no_expected.passed and "no `expected`" in (no_expected.reason or "")
    not_in_expected = await run("json_field", {"path": "a"}, '{"a": 1}', {"b": 1})
    assert not not_in_expected.passed and "`expected` has no field" in (
        not_in_expected.reason or ""
    )
    not_json = await run("json_field", {"path": "a"}, "no json here", 1)
    assert not not_json.passed


def test_parse_path() -> None:
    assert parse_path("category") == ["category"]
    assert parse_path("a.b[0].c") == ["a", "b", 0, "c"]
    assert parse_path("items[2][0]") == ["items", 2, 0]
    for bad in ["", "a..b", "a[x]", ".a", "a.", "a[-1]"]:
        with pytest.raises(ValueError, match="path must look like"):
            parse_path(bad)


def test_json_field_bad_path_is_a_user_error() -> None:
    with pytest.raises(UserError, match="scorer 'json_field': path must look like"):
        build_scorer("json_field", {"path": "a..b"})
