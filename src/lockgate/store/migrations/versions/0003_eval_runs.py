"""Evaluation runs, their attempts, and the human review queue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("suite_version", sa.Integer, nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("target_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS),
        sa.Column("pass_rate", sa.Float),
        sa.Column("gate_passed", sa.Boolean),
        sa.Column("baseline_run_id", sa.String(32)),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("report", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_eval_runs"),
    )
    op.create_index("ix_eval_runs_suite", "eval_runs", ["suite"])
    op.create_index("ix_eval_runs_target", "eval_runs", ["target"])
    op.create_table(
        "eval_attempts",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("scores", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "case_id", "attempt", name="pk_eval_attempts"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["eval_runs.id"], name="fk_eval_attempts_run_id_eval_runs"
        ),
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("input", sa.Text),
        sa.Column("expected", sa.Text),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("instructions", sa.Text),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("comment", sa.Text),
        sa.Column("reviewer", sa.String(200)),
        sa.Column("reviewed_at", _TS),
        sa.PrimaryKeyConstraint("id", name="pk_review_items"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["eval_runs.id"], name="fk_review_items_run_id_eval_runs"
        ),
        sa.UniqueConstraint("run_id", "case_id", "attempt", name="uq_review_items_attempt"),
    )
    op.create_index("ix_review_items_run_id", "review_items", ["run_id"])
    op.create_index("ix_review_items_status", "review_items", ["status"])


def downgrade() -> None:
    op.drop_index("ix_review_items_status", table_name="review_items")
    op.drop_index("ix_review_items_run_id", table_name="review_items")
    op.drop_table("review_items")
    op.drop_table("eval_attempts")
    op.drop_index("ix_eval_runs_target", table_name="eval_runs")
    op.drop_index("ix_eval_runs_suite", table_name="eval_runs")
    op.drop_table("eval_runs")
