"""Gateway: tenants, API keys (hashed), the config version row, and traces.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_USD = sa.Numeric(18, 6)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("requests_per_minute", sa.Integer),
        sa.Column("tokens_per_minute", sa.Integer),
        sa.Column("usd_per_day", _USD),
        sa.Column("usd_per_month", _USD),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_tenants"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("requests_per_minute", sa.Integer),
        sa.Column("tokens_per_minute", sa.Integer),
        sa.Column("usd_per_day", _USD),
        sa.Column("usd_per_month", _USD),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", _TS),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], name="fk_api_keys_tenant_tenants"),
        sa.UniqueConstraint("secret_sha256", name="uq_api_keys_secret_sha256"),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    version = op.create_table(
        "config_version",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_config_version"),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])
    op.create_table(
        "traces",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("tenant", sa.String(100)),
        sa.Column("key_id", sa.String(32)),
        sa.Column("endpoint", sa.String(50), nullable=False),
        sa.Column("route", sa.String(100)),
        sa.Column("prompt_ref", sa.String(250)),
        sa.Column("requested_model", sa.String(300)),
        sa.Column("resolved_model", sa.String(300)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("tokens_estimated", sa.Boolean, nullable=False),
        sa.Column("cost_usd", sa.Numeric(18, 9)),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("overhead_ms", sa.Float),
        sa.Column("cache", sa.String(20)),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("user", sa.String(200)),
        sa.Column("details", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_traces"),
    )
    op.create_index("ix_traces_at", "traces", ["at"])
    op.create_index("ix_traces_tenant", "traces", ["tenant"])
    op.create_index("ix_traces_tenant_at", "traces", ["tenant", "at"])


def downgrade() -> None:
    op.drop_index("ix_traces_tenant_at", table_name="traces")
    op.drop_index("ix_traces_tenant", table_name="traces")
    op.drop_index("ix_traces_at", table_name="traces")
    op.drop_table("traces")
    op.drop_table("config_version")
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
