"""Human review: applying reviewers' verdicts to a run and re-deciding its gate."""

from __future__ import annotations

from dataclasses import replace

from lockgate.evals._persist import ReviewItem, RunStore
from lockgate.evals._types import AttemptResult, RunReport, Score, ScoreRecord, verdict
from lockgate.registry import Registry


def apply_reviews(attempts: list[AttemptResult], reviews: list[ReviewItem]) -> list[AttemptResult]:
    """Replace pending ``human`` scores with the reviewers' verdicts where given."""
    verdicts = {(r.case_id, r.attempt): r for r in reviews if r.status != "pending"}
    patched = []
    for attempt in attempts:
        review = verdicts.get((attempt.case_id, attempt.attempt))
        if review is None or attempt.status != "pending_review":
            patched.append(attempt)
            continue
        scores = [
            ScoreRecord(
                record.scorer,
                Score(
                    review.score if review.score is not None else float(review.status == "passed"),
                    review.status == "passed",
                    review.comment or f"reviewed by {review.reviewer}",
                    {"reviewer": review.reviewer},
                ),
                record.weight,
            )
            if record.score.details.get("pending_review")
            else record
            for record in attempt.scores
        ]
        patched.append(replace(attempt, scores=scores, status=verdict(scores)))
    return patched


def refresh_run(registry: Registry, run_id: str) -> RunReport:
    """Rebuild a finished run's report with the reviews given so far, and store it."""
    from lockgate.evals._runner import rebuild_report

    runs = RunStore(registry.store)
    row = runs.get(run_id)
    attempts = apply_reviews(runs.attempts(row.id), runs.reviews(run_id=row.id))
    return rebuild_report(registry, row, attempts)
