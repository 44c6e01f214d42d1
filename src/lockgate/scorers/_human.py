"""The ``human`` scorer: put the output in a review queue instead of deciding.

An attempt scored by ``human`` is *pending review* until someone runs
``lockgate review submit``; the run shows as awaiting review until every such attempt
has a verdict (or the suite's gate says ``ignore_unreviewed: true``). Where a judge and a
person scored the same attempts, the run report gives their agreement (Cohen's kappa on
pass/fail, Pearson on scores), which tells a team whether to trust its judge.
"""

from __future__ import annotations

import math

from lockgate.scorers._registry import CaseScorer, ScorerContext, scorer
from lockgate.scorers._types import Case, Output, Score

PENDING_REASON = "awaiting human review"


@scorer("human", description="Queue the output for a person to pass or fail.")
def human(instructions: str = "") -> CaseScorer:
    """Queue every attempt for review, with optional `instructions` for the reviewer."""

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        return Score(
            math.nan,
            False,
            PENDING_REASON,
            {"pending_review": True, "instructions": instructions},
        )

    return score
