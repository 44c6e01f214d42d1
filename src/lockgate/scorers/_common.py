"""Helpers the built-in scorer families share: thresholds, text, references, JSON.

Kept free of heavy imports: every family imports this module when the registry loads it.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from lockgate.errors import MissingExtra
from lockgate.scorers._registry import ScorerContext
from lockgate.scorers._types import Case, Output, Score

__all__ = [
    "FoundJson",
    "check_limit",
    "check_threshold",
    "errored",
    "find_json",
    "load_module",
    "missing_expected",
    "normalise",
    "references",
    "references_or_failure",
    "resolve_threshold",
    "to_text",
]


def load_module(name: str, scorer: str) -> ModuleType:
    """Import the library a scorer computes with, when the scorer is built (not at import:
    sklearn or nltk cost seconds). Untyped libraries come back as `ModuleType`, whose
    attributes are `Any`; callers narrow what they read from them.

    Raises:
        MissingExtra: the library is not installed.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingExtra(f"the '{scorer}' scorer", "evals", name.split(".")[0]) from None


def check_threshold(value: float, name: str = "threshold") -> float:
    """`value` as a float in 0..1, or ValueError (which `build_scorer` shows as a UserError)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


def check_limit(value: float, name: str) -> float:
    """`value` as a finite, non-negative float (a latency, cost or token limit)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def resolve_threshold(ctx: ScorerContext, default: float) -> float:
    """The suite spec's `threshold` when it sets one, else the scorer's own argument."""
    return default if ctx.threshold is None else float(ctx.threshold)


def errored(output: Output) -> Score | None:
    """A failing Score for an errored output (the runner should not even call us)."""
    if output.error is None:
        return None
    return Score(0.0, False, f"the target errored: {output.error}")


def missing_expected() -> Score:
    return Score(0.0, False, "the case has no `expected` value to compare against")


def references_or_failure(output: Output, case: Case, value: Any = None) -> list[str] | Score:
    """What to compare `output` with (see `references`), or the failing Score when the
    target errored or the case has nothing to compare against."""
    if (failed := errored(output)) is not None:
        return failed
    answers = references(case, value)
    return missing_expected() if answers is None else answers


def to_text(value: Any) -> str:
    """A reference value as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def references(case: Case, value: Any = None) -> list[str] | None:
    """The acceptable answers: `value` when given, else ``case.expected``.

    A list is a set of alternatives; None means there is nothing to compare against.
    """
    source = case.expected if value is None else value
    if source is None:
        return None
    if isinstance(source, list | tuple):
        return [to_text(item) for item in source if item is not None] or None
    return [to_text(source)]


def normalise(text: str, *, ignore_case: bool = False, strip: bool = False) -> str:
    if strip:
        text = text.strip()
    if ignore_case:
        text = text.casefold()
    return text


@dataclass(frozen=True)
class FoundJson:
    """A JSON value found in a text, and where: ``whole``, ``fenced`` or ``embedded``."""

    value: Any
    where: str


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)
_START = re.compile(r"[{\[]")
_DECODER_ATTEMPTS = 64  # bounds the scan of prose full of brackets


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(text: str) -> Any:
    return _decoder.decode(text)


def find_json(text: str, *, extract: bool = True) -> FoundJson | None:
    """Parse `text` as strict JSON (``NaN``/``Infinity`` rejected).

    With `extract`, a text that is not JSON as a whole may still hold it: the first
    fenced block (`````json … `````) that parses wins, else the first object or array
    embedded in the prose (``Sure! {"a": 1} Hope it helps`` gives ``{"a": 1}``).
    """
    stripped = text.strip()
    try:
        return FoundJson(_loads(stripped), "whole")
    except ValueError:
        if not extract:
            return None
    for block in _FENCE.finditer(text):
        try:
            return FoundJson(_loads(block.group(1).strip()), "fenced")
        except ValueError:
            continue
    for attempt, start in enumerate(_START.finditer(text)):
        if attempt >= _DECODER_ATTEMPTS:
            break
        try:
            value, _ = _decoder.raw_decode(text, start.start())
        except ValueError:
            continue
        return FoundJson(value, "embedded")
    return None
