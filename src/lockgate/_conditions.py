"""Threshold conditions as users write them in gates: ``">= 0.92"``, ``"< 3"``, ``0.8``."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
_PATTERN = re.compile(r"^\s*(>=|>|<=|<|==)?\s*(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_condition(text: str | float | int) -> tuple[str, float]:
    """``">= 0.92"`` → (">=", 0.92); a bare number means ``>=``.

    Raises:
        ValueError: the text is not an operator followed by a number.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a condition; write e.g. '>= 0.92'")
    if isinstance(text, int | float):
        return ">=", float(text)
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(
            f"'{text}' is not a condition; write an operator (>=, >, <=, <, ==) and a number, "
            "e.g. '>= 0.92'"
        )
    return match[1] or ">=", float(match[2])


def holds(value: float, condition: tuple[str, float]) -> bool:
    """Whether `value` meets `condition`; NaN never does."""
    if math.isnan(value):
        return False
    op, bound = condition
    return _OPERATORS[op](value, bound)


def describe(name: str, value: float, condition: tuple[str, float]) -> str:
    op, bound = condition
    return f"{name} {value:.4g} {op} {bound:g}"
