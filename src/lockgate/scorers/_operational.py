"""Operational scorers: the attempt stayed within a latency, cost or token limit.

They measure a raw quantity, so their value is 1.0 (within the limit) or 0.0 and the
measurement goes in ``details["measured"]``. The limit is the required `max` argument, in
the quantity's own unit; the suite spec's 0..1 ``threshold`` does not apply to them.

Example suite entries:

    scorers:
      - {name: latency_ms, args: {max: 2000}}
      - {name: cost_usd, args: {max: 0.002}}
      - {name: tokens, args: {max: 800, which: output}}
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from lockgate.scorers._common import check_limit, errored
from lockgate.scorers._registry import CaseScorer, ScorerContext, scorer
from lockgate.scorers._types import Case, Output, Score

__all__ = ["cost_usd", "latency_ms", "tokens"]

TOKEN_COUNTS = ("total", "input", "output")


def _within(measured: float, limit: float, unit: str, **details: Any) -> Score:
    ok = measured <= limit  # False for NaN
    verdict = "<=" if ok else ">"
    if math.isnan(measured):
        verdict = "is not comparable with"
    reason = f"{measured:g} {unit} {verdict} max {limit:g} {unit}"
    return Score(1.0 if ok else 0.0, ok, reason, {"measured": measured, "max": limit, **details})


@scorer("latency_ms", description="The attempt answered within `max` milliseconds.")
def latency_ms(max: float) -> CaseScorer:
    """Passes when the output's latency is at most `max` ms (a cache hit is near 0 ms;
    `details.cached` says so)."""
    limit = check_limit(max, "max")

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        if (failed := errored(output)) is not None:
            return failed
        return _within(float(output.latency_ms), limit, "ms", cached=output.cached)

    return score


@scorer("cost_usd", description="The attempt cost at most `max` US dollars.")
def cost_usd(max: float) -> CaseScorer:
    """Passes when the output's cost is known and at most `max` USD; an unknown cost (a
    model missing from the price table) fails, because it cannot be shown to be within."""
    limit = check_limit(max, "max")
    exact_limit = Decimal(str(limit))

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        if (failed := errored(output)) is not None:
            return failed
        cost = output.cost_usd
        if cost is None or not cost.is_finite():
            return Score(0.0, False, "cost unknown", {"measured": None, "max": limit})
        ok = cost <= exact_limit
        verdict = "<=" if ok else ">"
        details = {"measured": float(cost), "max": limit, "cached": output.cached}
        return Score(1.0 if ok else 0.0, ok, f"${cost} {verdict} max ${limit:g}", details)

    return score


@scorer("tokens", description="The attempt used at most `max` tokens (total, input or output).")
def tokens(max: int, which: str = "total") -> CaseScorer:
    """Passes when the chosen token count is at most `max`. Counts the provider did not
    report are estimates; `details.estimated` says so.

    Args:
        max: the token limit.
        which: ``total`` (default), ``input`` or ``output``.
    """
    limit = check_limit(max, "max")
    if which not in TOKEN_COUNTS:
        raise ValueError(f"which must be one of {', '.join(TOKEN_COUNTS)}; got {which!r}")

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        if (failed := errored(output)) is not None:
            return failed
        counts = {
            "input": output.input_tokens,
            "output": output.output_tokens,
            "total": output.input_tokens + output.output_tokens,
        }
        return _within(
            counts[which],
            limit,
            f"{which} tokens",
            which=which,
            estimated=output.tokens_estimated,
        )

    return score
