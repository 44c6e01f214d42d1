"""The data an evaluation works on: cases, the target's outputs, scores, results.

A *case* is one row of a suite's dataset. The *target* (a prompt or a model) is run on
each case `repeats` times; each run is an *attempt* producing an `Output`. Every scorer
turns an (output, case) pair into a `Score`; an attempt passes when every scorer passed.
Dataset-level scorers (accuracy, F1, ROC AUC…) score all outputs at once instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lockgate.scorers._types import Case, Output, Score

__all__ = [
    "AttemptResult",
    "Case",
    "CaseSummary",
    "Comparison",
    "GateCheck",
    "Output",
    "RunReport",
    "Score",
    "ScoreRecord",
]


@dataclass(frozen=True)
class ScoreRecord:
    """A `Score` as stored: which scorer produced it, with its weight."""

    scorer: str
    score: Score
    weight: float = 1.0


def verdict(scores: list[ScoreRecord]) -> str:
    """An attempt's status from its scores: ``failed`` if any decided score failed, else
    ``pending_review`` if a person still has to decide, else ``passed``."""
    pending = False
    for record in scores:
        if record.score.details.get("pending_review"):
            pending = True
        elif not record.score.passed:
            return "failed"
    return "pending_review" if pending else "passed"


@dataclass(frozen=True)
class AttemptResult:
    """One attempt of one case: the output, every score, and whether it passed."""

    case_id: str
    attempt: int
    output: Output
    scores: list[ScoreRecord]
    status: str  # "passed" | "failed" | "errored" | "pending_review"

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def weighted_score(self) -> float:
        total = sum(r.weight for r in self.scores)
        if not total:
            return 0.0
        return (
            sum(r.weight * r.score.value for r in self.scores if not math.isnan(r.score.value))
            / total
        )


@dataclass(frozen=True)
class CaseSummary:
    """One case over all its attempts."""

    case_id: str
    attempts: list[AttemptResult]
    pass_rate: float
    mean_score: float
    flaky: bool
    status: str  # "passed" | "failed" | "flaky" | "errored" | "pending_review"
    input_preview: str = ""
    expected_preview: str = ""


@dataclass(frozen=True)
class GateCheck:
    """One condition of the gate and how it came out, e.g. ``pass_rate 0.93 >= 0.92``."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Comparison:
    """This run against a baseline run, paired on the cases both ran.

    `discordant_worse` (b) counts cases that passed in the baseline and fail now;
    `discordant_better` (c) the reverse. `p_value` is McNemar's exact test on (b, c).
    `mean_diff` is the mean per-case score change with a paired-bootstrap 95% interval.
    """

    baseline_run_id: str
    baseline_label: str
    paired_cases: int
    newly_failing: list[str]
    newly_passing: list[str]
    discordant_worse: int
    discordant_better: int
    p_value: float
    mean_diff: float
    mean_diff_interval: tuple[float, float]
    significant_regression: bool


@dataclass(frozen=True)
class RunReport:
    """Everything a report renders (terminal, JSON, JUnit, HTML) about one run."""

    run_id: str
    suite: str
    target: str
    status: str  # "passed" | "failed" | "incomplete" | "awaiting_review" | "errored"
    started_at: str
    finished_at: str | None
    duration_s: float
    repeats: int
    cases: list[CaseSummary]
    pass_rate: float
    pass_rate_interval: tuple[float, float]
    attempts: int
    errored: int
    metrics: dict[str, float]
    gate: list[GateCheck]
    gate_passed: bool
    comparison: Comparison | None
    warnings: list[str]
    manifest: dict[str, Any]
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_cost_usd: Decimal | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
