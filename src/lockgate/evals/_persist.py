"""Storing runs, attempts and human reviews; reading them back."""

from __future__ import annotations

import builtins
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from lockgate.errors import NotFound, UserError
from lockgate.evals._types import AttemptResult, Output, Score, ScoreRecord
from lockgate.governance import append_event
from lockgate.store import Store
from lockgate.store._tables import as_utc, eval_attempts, eval_runs, review_items


@dataclass(frozen=True)
class RunRow:
    """A run as listed: identity, status and headline numbers."""

    id: str
    suite: str
    suite_version: int
    target: str
    target_version: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    pass_rate: float | None
    gate_passed: bool | None
    baseline_run_id: str | None
    actor: str
    manifest: dict[str, Any]
    report: dict[str, Any] | None

    @property
    def suite_ref(self) -> str:
        return f"{self.suite}@{self.suite_version}"

    @property
    def target_ref(self) -> str:
        return f"{self.target}@{self.target_version}"


@dataclass(frozen=True)
class ReviewItem:
    id: int
    run_id: str
    case_id: str
    attempt: int
    input: str | None
    expected: str | None
    output: str
    instructions: str | None
    status: str
    score: float | None
    comment: str | None
    reviewer: str | None


class RunStore:
    """Run persistence on top of the lockgate store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- runs ------------------------------------------------------------------------

    def create(
        self,
        run_id: str,
        *,
        suite: tuple[str, int],
        target: tuple[str, int],
        manifest: dict[str, Any],
        actor: str,
    ) -> None:
        with self.store.write() as conn:
            conn.execute(
                sa.insert(eval_runs).values(
                    id=run_id,
                    suite=suite[0],
                    suite_version=suite[1],
                    target=target[0],
                    target_version=target[1],
                    status="running",
                    started_at=datetime.now(UTC),
                    actor=actor,
                    manifest=json.dumps(manifest, sort_keys=True, default=str),
                )
            )

    def save_attempts(self, run_id: str, attempts: list[AttemptResult]) -> None:
        """Insert attempts in one transaction (callers batch them)."""
        if not attempts:
            return
        with self.store.write() as conn:
            conn.execute(
                sa.insert(eval_attempts),
                [
                    {
                        "run_id": run_id,
                        "case_id": a.case_id,
                        "attempt": a.attempt,
                        "status": a.status,
                        # orjson serialises dataclasses natively (~10x asdict + json).
                        "output": orjson.dumps(a.output, default=_json_default).decode(),
                        "scores": orjson.dumps(
                            [
                                {
                                    "scorer": r.scorer,
                                    "weight": r.weight,
                                    "value": _finite_or_text(r.score.value),
                                    "passed": r.score.passed,
                                    "reason": r.score.reason,
                                    "details": r.score.details,
                                }
                                for r in a.scores
                            ],
                            default=_json_default,
                        ).decode(),
                    }
                    for a in attempts
                ],
            )

    def finish(
        self,
        run_id: str,
        *,
        status: str,
        report: dict[str, Any],
        pass_rate: float | None,
        gate_passed: bool | None,
        baseline_run_id: str | None,
        actor: str,
    ) -> None:
        """Record the outcome (audited: a gate result is what promotions will rely on)."""
        with self.store.write() as conn:
            conn.execute(
                sa.update(eval_runs)
                .where(eval_runs.c.id == run_id)
                .values(
                    status=status,
                    finished_at=datetime.now(UTC),
                    report=json.dumps(report, sort_keys=True, default=_json_default),
                    pass_rate=pass_rate,
                    gate_passed=gate_passed,
                    baseline_run_id=baseline_run_id,
                )
            )
            run = conn.execute(sa.select(eval_runs).where(eval_runs.c.id == run_id)).one()
            append_event(
                conn,
                actor=actor,
                action="eval.run",
                target=f"{run.suite}@{run.suite_version}",
                after={
                    "run_id": run_id,
                    "target": f"{run.target}@{run.target_version}",
                    "status": status,
                    "gate_passed": gate_passed,
                    "pass_rate": pass_rate,
                },
            )

    def get(self, run_id: str) -> RunRow:
        """A run by id or unique id prefix (at least 6 characters)."""
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(eval_runs).where(eval_runs.c.id.startswith(run_id, autoescape=True))
            ).all()
        if not rows or (len(run_id) < 6 and len(rows) != 1):
            raise NotFound(f"no run '{run_id}'; see: lockgate runs list")
        if len(rows) > 1:
            raise UserError(f"run id prefix '{run_id}' is ambiguous; give more characters")
        return _row(rows[0])

    def list(self, *, suite: str | None = None, limit: int = 20) -> list[RunRow]:
        query = sa.select(eval_runs).order_by(eval_runs.c.started_at.desc()).limit(limit)
        if suite:
            query = query.where(eval_runs.c.suite == suite)
        with self.store.read() as conn:
            return [_row(r) for r in conn.execute(query)]

    def latest_finished(
        self, *, suite: str, target: str, target_version: int, exclude: str | None = None
    ) -> RunRow | None:
        """The newest completed run of `suite` on that target version (a baseline)."""
        query = (
            sa.select(eval_runs)
            .where(
                eval_runs.c.suite == suite,
                eval_runs.c.target == target,
                eval_runs.c.target_version == target_version,
                eval_runs.c.status.in_(("passed", "failed", "awaiting_review")),
            )
            .order_by(eval_runs.c.started_at.desc())
            .limit(20)
        )
        if exclude:
            query = query.where(eval_runs.c.id != exclude)
        with self.store.read() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            run = _row(row)
            # A replay (reproduce, --replay) repeats a recorded run; it is not a new baseline.
            if run.manifest.get("cache_mode") != "replay":
                return run
        return None

    def attempts(self, run_id: str) -> builtins.list[AttemptResult]:
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(eval_attempts)
                .where(eval_attempts.c.run_id == run_id)
                .order_by(eval_attempts.c.case_id, eval_attempts.c.attempt)
            ).all()
        return [_attempt(r) for r in rows]

    # -- human review ------------------------------------------------------------------

    def add_reviews(self, run_id: str, items: builtins.list[dict[str, Any]]) -> None:
        if not items:
            return
        with self.store.write() as conn:
            conn.execute(
                sa.insert(review_items),
                [{"run_id": run_id, "status": "pending", **item} for item in items],
            )

    def reviews(
        self, *, run_id: str | None = None, status: str | None = None
    ) -> builtins.list[ReviewItem]:
        query = sa.select(review_items).order_by(review_items.c.id)
        if run_id:
            query = query.where(review_items.c.run_id == run_id)
        if status:
            query = query.where(review_items.c.status == status)
        with self.store.read() as conn:
            return [_review(r) for r in conn.execute(query)]

    def submit_review(
        self,
        item_id: int,
        *,
        passed: bool,
        score: float | None,
        comment: str | None,
        reviewer: str,
    ) -> ReviewItem:
        """Record a human verdict on one output (audited)."""
        with self.store.write() as conn:
            row = conn.execute(
                sa.select(review_items).where(review_items.c.id == item_id)
            ).one_or_none()
            if row is None:
                raise NotFound(f"no review item #{item_id}; see: lockgate review list")
            verdict = "passed" if passed else "failed"
            value = score if score is not None else (1.0 if passed else 0.0)
            conn.execute(
                sa.update(review_items)
                .where(review_items.c.id == item_id)
                .values(
                    status=verdict,
                    score=value,
                    comment=comment,
                    reviewer=reviewer,
                    reviewed_at=datetime.now(UTC),
                )
            )
            append_event(
                conn,
                actor=reviewer,
                action="review.submit",
                target=f"run:{row.run_id}/{row.case_id}#{row.attempt}",
                before={"status": row.status},
                after={"status": verdict, "score": value, "comment": comment},
            )
            updated = conn.execute(
                sa.select(review_items).where(review_items.c.id == item_id)
            ).one()
        return _review(updated)

    def mark(self, run_id: str, status: str) -> None:
        """Set a run's status alone (used when deciding it failed half-way)."""
        with self.store.write() as conn:
            conn.execute(
                sa.update(eval_runs)
                .where(eval_runs.c.id == run_id)
                .values(status=status, finished_at=datetime.now(UTC))
            )


def _finite_or_text(value: float) -> float | str:
    """JSON has no NaN; keep it as text so it reads back as NaN, not as null."""
    return value if math.isfinite(value) else str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _row(row: Any) -> RunRow:
    return RunRow(
        id=row.id,
        suite=row.suite,
        suite_version=row.suite_version,
        target=row.target,
        target_version=row.target_version,
        status=row.status,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        pass_rate=row.pass_rate,
        gate_passed=row.gate_passed,
        baseline_run_id=row.baseline_run_id,
        actor=row.actor,
        manifest=json.loads(row.manifest),
        report=json.loads(row.report) if row.report else None,
    )


def _attempt(row: Any) -> AttemptResult:
    out = json.loads(row.output)
    if out.get("cost_usd") is not None:
        out["cost_usd"] = Decimal(out["cost_usd"])
    scores = [
        ScoreRecord(
            scorer=s.pop("scorer"),
            weight=s.pop("weight"),
            score=Score(**{**s, "value": float(s["value"])}),
        )
        for s in json.loads(row.scores)
    ]
    return AttemptResult(row.case_id, row.attempt, Output(**out), scores, row.status)


def _review(row: Any) -> ReviewItem:
    return ReviewItem(
        id=row.id,
        run_id=row.run_id,
        case_id=row.case_id,
        attempt=row.attempt,
        input=row.input,
        expected=row.expected,
        output=row.output,
        instructions=row.instructions,
        status=row.status,
        score=row.score,
        comment=row.comment,
        reviewer=row.reviewer,
    )
