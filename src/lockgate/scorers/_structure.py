"""Structure scorers: the output is JSON, fits a JSON schema, has the right field value.

Models wrap JSON in prose or Markdown fences more often than not. With ``extract: true``
(the default) the scorers take the JSON the text holds: the whole text if it parses,
else the first fenced block (`````json … `````) that parses, else the first object or
array embedded in the prose. ``extract: false`` demands that the whole output be JSON.
Non-standard constants (``NaN``, ``Infinity``) are never accepted as JSON.

Example suite entries (the support-triage suite):

    scorers:
      - {name: json_schema, args: {schema: {type: object, required: [category]}}}
      - {name: json_field, args: {path: category}}      # compared with `expected`
"""

from __future__ import annotations

import re
from typing import Any

from lockgate.scorers._common import FoundJson, errored, find_json, missing_expected, to_text
from lockgate.scorers._registry import CaseScorer, ScorerContext, scorer
from lockgate.scorers._types import Case, Output, Score

__all__ = ["json_field", "json_schema", "json_valid", "parse_path"]

_MAX_ERRORS = 10
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH = re.compile(r"(?:[^.\[\]]+|\[\d+\])(?:\.[^.\[\]]+|\[\d+\])*")
_UNSET: Any = object()


def _json_or_fail(output: Output, extract: bool) -> FoundJson | Score:
    if (failed := errored(output)) is not None:
        return failed
    found = find_json(output.text, extract=extract)
    if found is None:
        where = "the output" if extract else "the whole output"
        preview = output.text[:80] + ("…" if len(output.text) > 80 else "")
        return Score(0.0, False, f"{where} is not JSON: {preview!r}", {"extract": extract})
    return found


@scorer("json_valid", description="The output is (or contains) valid JSON.")
def json_valid(extract: bool = True) -> CaseScorer:
    """Passes when the output parses as JSON; `details.where` says how it was found
    (``whole``, ``fenced`` or ``embedded``; see the module docs for `extract`)."""

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        found = _json_or_fail(output, extract)
        if isinstance(found, Score):
            return found
        return Score(1.0, True, f"valid JSON ({found.where})", {"where": found.where})

    return score


@scorer("json_schema", description="The output's JSON validates against a JSON schema.")
def json_schema(schema: dict[str, Any], extract: bool = True) -> CaseScorer:
    """Validate with jsonschema (the draft the schema's ``$schema`` names, else 2020-12;
    ``format`` keywords are checked). The reason names the most relevant error's path;
    `details.errors` lists up to ten.

    Args:
        schema: the JSON schema, inline in the suite.
        extract: take the JSON out of surrounding prose or fences (see the module docs).
    """
    from jsonschema import exceptions as schema_errors  # ~0.1 s: only when used
    from jsonschema import validators

    if not isinstance(schema, dict):
        raise ValueError(f"schema must be a JSON schema object, got {type(schema).__name__}")
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except schema_errors.SchemaError as exc:
        raise ValueError(f"invalid JSON schema at {exc.json_path}: {exc.message}") from None
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        found = _json_or_fail(output, extract)
        if isinstance(found, Score):
            return found
        errors = list(validator.iter_errors(found.value))
        if not errors:
            return Score(1.0, True, "the JSON matches the schema", {"where": found.where})
        best = schema_errors.best_match(errors)
        listed = [{"path": e.json_path, "message": e.message} for e in errors[:_MAX_ERRORS]]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        reason = f"schema violation at {best.json_path}: {best.message}{more}"
        return Score(0.0, False, reason, {"errors": listed, "where": found.where})

    return score


def parse_path(path: str) -> list[str | int]:
    """``a.b[0].c`` → ``["a", "b", 0, "c"]``.

    Raises:
        ValueError: the path is empty or malformed.
    """
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ValueError(f"path must look like `category` or `a.b[0].c`, got {path!r}")
    return [key if key else int(index) for key, index in _SEGMENT.findall(path)]


def _lookup(value: Any, segments: list[str | int]) -> Any:
    """The value at `segments`, or `_UNSET` when any step is missing."""
    for segment in segments:
        if isinstance(segment, int):
            if not isinstance(value, list) or segment >= len(value):
                return _UNSET
        elif not isinstance(value, dict) or segment not in value:
            return _UNSET
        value = value[segment]
    return value


def _same(actual: Any, wanted: Any, ignore_case: bool) -> bool:
    """Equal JSON values; strings after stripping (and case-folding with `ignore_case`).
    A string against a non-string compares their texts, so ``"3"`` matches ``3``."""
    if isinstance(actual, str) or isinstance(wanted, str):
        a, w = to_text(actual).strip(), to_text(wanted).strip()
        return a.casefold() == w.casefold() if ignore_case else a == w
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return actual is wanted
    return bool(actual == wanted)


@scorer("json_field", description="A field of the output's JSON has the expected value.")
def json_field(
    path: str, value: Any = _UNSET, ignore_case: bool = False, extract: bool = True
) -> CaseScorer:
    """Compare the field at `path` (``category``, ``a.b[0].c``) with `value`.

    Without `value` the case's `expected` is used; when `expected` is an object, the
    field at the same path in it (or its key `path`) is the expected value.

    Args:
        path: dotted keys and ``[index]`` steps into the output's JSON.
        value: the required value (any JSON value, null included).
        ignore_case: compare strings case-insensitively.
        extract: take the JSON out of surrounding prose or fences (see the module docs).
    """
    segments = parse_path(path)

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        found = _json_or_fail(output, extract)
        if isinstance(found, Score):
            return found
        wanted = value
        if wanted is _UNSET:
            if case.expected is None:
                return missing_expected()
            wanted = case.expected
            if isinstance(wanted, dict):
                wanted = _lookup(wanted, segments)
                if wanted is _UNSET:
                    wanted = case.expected.get(path, _UNSET)
                if wanted is _UNSET:
                    return Score(0.0, False, f"the case's `expected` has no field {path!r}")
        actual = _lookup(found.value, segments)
        if actual is _UNSET:
            return Score(0.0, False, f"the output's JSON has no field {path!r}", {"path": path})
        details = {"path": path, "actual": actual, "expected": wanted}
        if _same(actual, wanted, ignore_case):
            return Score(1.0, True, f"{path} = {to_text(actual)}", details)
        return Score(
            0.0, False, f"{path}: expected {to_text(wanted)}, got {to_text(actual)}", details
        )

    return score
