"""Turning a run's attempts into a `RunReport`: summaries, metrics, comparison, gate."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import NotFound
from lockgate.evals._stats import (
    case_pass_rates,
    check,
    cohen_kappa,
    compare,
    latency_percentiles,
    parse_condition,
    pearson,
    sample_size_warning,
    suite_pass_rate,
)
from lockgate.evals._types import (
    AttemptResult,
    CaseSummary,
    Comparison,
    GateCheck,
    RunReport,
    ScoreRecord,
)

if TYPE_CHECKING:
    from lockgate.evals._persist import RunRow, RunStore
    from lockgate.evals._suite import ResolvedSuite
    from lockgate.registry import Registry


def build_report(
    *,
    run_id: str,
    suite: ResolvedSuite,
    attempts: list[AttemptResult],
    dataset_scores: list[ScoreRecord],
    warnings: list[str],
    manifest: dict[str, Any],
    started: float,
    interrupted: bool,
    runs: RunStore,
    registry: Registry,
    baseline_run: str | None = None,
) -> RunReport:
    """Summarise, measure, compare and gate one run."""
    warnings = list(warnings)
    cases = case_pass_rates(attempts, suite.cases)
    rate, interval, _passed, _n = suite_pass_rate(cases)
    # A suite of dataset metrics only (a classical model) has no per-case verdicts: its
    # pass rate would be a vacuous 100%, so it is reported as n/a and the metrics gate.
    case_scored = any(a.scores for a in attempts) or not dataset_scores
    has_verdicts = case_scored and any(c.status != "pending_review" for c in cases)
    metrics = _metrics(cases, attempts, dataset_scores)
    comparison, regression_check = _comparison(
        run_id, suite, cases, runs, registry, baseline_run, warnings
    )
    gate = _gate(
        suite, rate if has_verdicts else math.nan, interval, metrics, dataset_scores, warnings
    )
    if regression_check is not None:
        gate.append(regression_check)
    errored = sum(1 for a in attempts if a.status == "errored")
    pending = any(c.status == "pending_review" for c in cases)
    gate_passed = bool(gate) and all(g.passed for g in gate) and not interrupted
    if interrupted:
        status = "incomplete"
        warnings.append(f"the run was interrupted after {len(attempts)} attempts")
    elif attempts and errored == len(attempts):
        status = "errored"
    elif pending and not suite.spec.gate.ignore_unreviewed:
        status = "awaiting_review"
        gate_passed = False
    else:
        status = "passed" if gate_passed else "failed"
    # Cache hits answer in microseconds; they would hide the model's real latency.
    latencies = [
        a.output.latency_ms for a in attempts if a.status != "errored" and not a.output.cached
    ]
    p50, p95 = latency_percentiles(latencies)
    costs = [a.output.cost_usd for a in attempts]
    known_costs = [c for c in costs if c is not None]
    return RunReport(
        run_id=run_id,
        suite=suite.suite.ref,
        target=suite.target.ref,
        status=status,
        started_at=datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=time.time() - started,
        repeats=int(manifest.get("repeats", 1)),
        cases=cases,
        pass_rate=rate if has_verdicts else math.nan,
        pass_rate_interval=interval,
        attempts=len(attempts),
        errored=errored,
        metrics=metrics,
        gate=gate,
        gate_passed=gate_passed,
        comparison=comparison,
        warnings=warnings,
        manifest=manifest,
        total_input_tokens=sum(a.output.input_tokens for a in attempts),
        total_output_tokens=sum(a.output.output_tokens for a in attempts),
        total_cost_usd=sum(known_costs, Decimal(0)) if len(known_costs) == len(costs) else None,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
    )


def _metrics(
    cases: list[CaseSummary], attempts: list[AttemptResult], dataset_scores: list[ScoreRecord]
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if cases:
        metrics["mean_score"] = float(np.mean([c.mean_score for c in cases]))
    scored = [a for a in attempts if a.status != "errored"]
    by_scorer: dict[str, list[float]] = {}
    for attempt in scored:
        for record in attempt.scores:
            if not math.isnan(record.score.value):
                by_scorer.setdefault(record.scorer, []).append(record.score.value)
    for name, values in by_scorer.items():
        metrics[name] = float(np.mean(values))
    for record in dataset_scores:
        measured = _measured(record)
        metrics[record.scorer] = float(measured) if measured is not None else math.nan
    if attempts:
        metrics["error_rate"] = (len(attempts) - len(scored)) / len(attempts)
    metrics.update(_judge_human_agreement(scored))
    return metrics


def _measured(record: ScoreRecord) -> Any:
    """A dataset metric's raw value (F1, RMSE…), which its 0..1 `value` may not be."""
    return record.score.details.get("measured", record.score.value)


def _judge_human_agreement(attempts: list[AttemptResult]) -> dict[str, float]:
    """Cohen's kappa (pass/fail) and Pearson r (scores) between llm_judge and reviewers."""
    judge_passed, human_passed, judge_scores, human_scores = [], [], [], []
    for attempt in attempts:
        by_name = {r.scorer: r.score for r in attempt.scores}
        judge, human = by_name.get("llm_judge"), by_name.get("human")
        if judge is None or human is None or human.details.get("pending_review"):
            continue
        judge_passed.append(judge.passed)
        human_passed.append(human.passed)
        judge_scores.append(judge.value)
        human_scores.append(human.value)
    if len(judge_passed) < 2:
        return {}
    agreement = {"judge_human_kappa": cohen_kappa(judge_passed, human_passed)}
    r = pearson(judge_scores, human_scores)
    if r is not None:
        agreement["judge_human_pearson"] = r
    return agreement


def _gate(
    suite: ResolvedSuite,
    rate: float,
    interval: tuple[float, float],
    metrics: dict[str, float],
    dataset_scores: list[ScoreRecord],
    warnings: list[str],
) -> list[GateCheck]:
    spec = suite.spec.gate
    checks: list[GateCheck] = []
    n_cases = len(suite.cases)
    if spec.pass_rate is not None:
        condition = parse_condition(spec.pass_rate)
        checks.append(check("pass_rate", rate, condition))
        if not math.isnan(rate):
            warning = sample_size_warning(rate, interval, n_cases, condition[1])
            if warning:
                warnings.append(warning)
    if spec.pass_rate_lower_bound is not None:
        checks.append(check("pass_rate_lower_bound", interval[0], spec.pass_rate_lower_bound))
    for name, metric_condition in spec.metrics.items():
        result = check(name, metrics.get(name), metric_condition)
        if name not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            result = GateCheck(name, False, f"no metric '{name}' in this run (metrics: {known})")
        checks.append(result)
    for record in dataset_scores:
        detail = record.score.reason or f"{record.scorer} {_measured(record)}"
        checks.append(GateCheck(record.scorer, record.score.passed, detail))
    if not checks:
        warnings.append("the suite sets no gate: requiring every case to pass (pass_rate >= 1)")
        checks.append(check("pass_rate", rate, ">= 1"))
    return checks


def _comparison(
    run_id: str,
    suite: ResolvedSuite,
    cases: list[CaseSummary],
    runs: RunStore,
    registry: Registry,
    baseline_run: str | None,
    warnings: list[str],
) -> tuple[Comparison | None, GateCheck | None]:
    label = suite.spec.gate.no_regression_vs
    baseline: RunRow | None = None
    description = ""
    if baseline_run is not None:
        baseline = runs.get(baseline_run)
        description = f"run {baseline.id[:8]}"
    elif label is not None:
        try:
            version = registry.get(f"{suite.target.name}@{label}")
        except NotFound:
            warnings.append(
                f"no_regression_vs {label}: {suite.target.name} has no '{label}' label yet; "
                "nothing to compare against"
            )
            return None, GateCheck(f"no_regression_vs {label}", True, "no baseline (skipped)")
        baseline = runs.latest_finished(
            suite=suite.suite.name,
            target=version.name,
            target_version=version.version,
            exclude=run_id,
        )
        description = f"{label} ({version.ref})"
        if baseline is None:
            warnings.append(
                f"no_regression_vs {label}: no finished run of {suite.suite.name} on "
                f"{version.ref} to compare against; run the suite on it once"
            )
            return None, GateCheck(f"no_regression_vs {label}", True, "no baseline run (skipped)")
    if baseline is None:
        return None, None
    before = case_pass_rates(runs.attempts(baseline.id))
    comparison = compare(cases, before, baseline_run_id=baseline.id, baseline_label=description)
    if label is None:
        return comparison, None
    detail = (
        f"vs {description}: {len(comparison.newly_failing)} newly failing, "
        f"{len(comparison.newly_passing)} newly passing, McNemar p={comparison.p_value:.3g}, "
        f"mean score change {comparison.mean_diff:+.3f}"
    )
    return comparison, GateCheck(
        f"no_regression_vs {label}", not comparison.significant_regression, detail
    )


def report_to_dict(report: RunReport) -> dict[str, Any]:
    from lockgate.evals._reports import to_json

    return to_json(report)
