"""Registry (artifacts, versions, labels) and the audit hash chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_NOW = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("created_at", _NOW, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.UniqueConstraint("name", name="uq_artifacts_name"),
    )
    op.create_index("ix_artifacts_kind", "artifacts", ["kind"])
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("artifact_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("created_at", _NOW, nullable=False),
        sa.Column("source_path", sa.Text),
        sa.Column("git_commit", sa.String(40)),
        sa.Column("git_dirty", sa.Boolean),
        sa.PrimaryKeyConstraint("id", name="pk_versions"),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name="fk_versions_artifact_id_artifacts"
        ),
        sa.UniqueConstraint("artifact_id", "version", name="uq_versions_artifact_version"),
    )
    op.create_index("ix_versions_digest", "versions", ["digest"])
    op.create_table(
        "labels",
        sa.Column("artifact_id", sa.Integer, nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("updated_at", _NOW, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", "label", name="pk_labels"),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name="fk_labels_artifact_id_artifacts"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name="fk_labels_version_id_versions"
        ),
    )
    op.create_table(
        "label_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("artifact_id", sa.Integer, nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("from_version_id", sa.Integer),
        sa.Column("to_version_id", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", _NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_label_events"),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name="fk_label_events_artifact_id_artifacts"
        ),
        sa.ForeignKeyConstraint(
            ["from_version_id"], ["versions.id"], name="fk_label_events_from_version_id_versions"
        ),
        sa.ForeignKeyConstraint(
            ["to_version_id"], ["versions.id"], name="fk_label_events_to_version_id_versions"
        ),
    )
    op.create_index(
        "ix_label_events_artifact_label", "label_events", ["artifact_id", "label", "id"]
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("before", sa.Text),
        sa.Column("after", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
        sa.UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    )
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_target", "audit_events", ["target"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_index("ix_audit_events_target", table_name="audit_events")
    op.drop_index("ix_audit_events_action", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_label_events_artifact_label", table_name="label_events")
    op.drop_table("label_events")
    op.drop_table("labels")
    op.drop_index("ix_versions_digest", table_name="versions")
    op.drop_table("versions")
    op.drop_index("ix_artifacts_kind", table_name="artifacts")
    op.drop_table("artifacts")
