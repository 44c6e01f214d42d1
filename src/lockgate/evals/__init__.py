"""The evaluation engine: suites, runs, statistics, gates and reports.

Example:
    >>> report = run_suite("support-triage-eval@4")
    >>> report.gate_passed
    True
"""

from lockgate.evals._api import Reproduction, arun_suite, reproduce, run_suite
from lockgate.evals._persist import ReviewItem, RunRow, RunStore
from lockgate.evals._runner import EvalRunner, Progress, RunOptions
from lockgate.evals._suite import ResolvedSuite, resolve
from lockgate.evals._types import (
    AttemptResult,
    Case,
    CaseSummary,
    Comparison,
    GateCheck,
    Output,
    RunReport,
    Score,
    ScoreRecord,
)

__all__ = [
    "AttemptResult",
    "Case",
    "CaseSummary",
    "Comparison",
    "EvalRunner",
    "GateCheck",
    "Output",
    "Progress",
    "Reproduction",
    "ResolvedSuite",
    "ReviewItem",
    "RunOptions",
    "RunReport",
    "RunRow",
    "RunStore",
    "Score",
    "ScoreRecord",
    "arun_suite",
    "reproduce",
    "resolve",
    "run_suite",
]
