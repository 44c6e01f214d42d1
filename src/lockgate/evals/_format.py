"""Numbers and text as reports show them: short, and never misleading.

A rate shows three decimals without trailing zeros (``0.933``, ``0.92``); when two
numbers being compared would look equal at that precision, they get more digits, so a
gate never reads ``0.92 >= 0.92 ✗``.
"""

from __future__ import annotations

import math
from typing import Any

from lockgate.evals._types import AttemptResult

__all__ = ["distinct", "failed_reasons", "format_number", "preview", "round_up", "signed"]


def preview(value: Any, limit: int = 200) -> str:
    """A one-line rendering of a case field for reports, cut at `limit` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def round_up(n: int) -> int:
    """Round up to two significant digits: 2828 → 2900 (an estimate, not a count)."""
    if n < 100:
        return n
    step = int(10 ** (len(str(n)) - 2))
    return -(-n // step) * step


def format_number(value: float | None, digits: int = 3) -> str:
    """``0.93333`` → ``"0.933"``, ``12.5`` → ``"12.5"``; NaN and None → ``"n/a"``."""
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def distinct(value: float, bound: float, digits: int = 3) -> tuple[str, str]:
    """Format two numbers with enough digits that different numbers look different."""
    for places in range(digits, 16):
        shown, limit = format_number(value, places), format_number(bound, places)
        if shown != limit or value == bound or math.isnan(value):
            return shown, limit
    return repr(value), repr(bound)


def signed(value: float) -> str:
    """``0.1`` → ``"+0.1"``, ``-0.1`` → ``"-0.1"``, 0 and NaN unsigned."""
    text = format_number(value)
    return text if text.startswith("-") or text in ("0", "n/a") else f"+{text}"


def failed_reasons(attempt: AttemptResult) -> list[str]:
    """``scorer: reason`` for each scorer that did not pass `attempt` (or its error)."""
    if attempt.status == "errored":
        return [f"error: {attempt.output.error or 'unknown error'}"]
    return [
        f"{r.scorer}: {r.score.reason or 'failed'}" for r in attempt.scores if not r.score.passed
    ]
