"""The database schema, as SQLAlchemy Core tables.

Migrations in ``migrations/versions`` create exactly these; a test compares the two.
Timestamps are timezone-aware UTC. Audit events keep their time as ISO-8601 text because
the text is what their hash covers, and it must read back byte-for-byte on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("artifact_id", sa.ForeignKey("artifacts.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, index=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source_path", sa.Text),
    sa.Column("git_commit", sa.String(40)),
    sa.Column("git_dirty", sa.Boolean),
    sa.UniqueConstraint("artifact_id", "version", name="uq_versions_artifact_version"),
)

labels = sa.Table(
    "labels",
    metadata,
    sa.Column("artifact_id", sa.ForeignKey("artifacts.id"), primary_key=True),
    sa.Column("label", sa.String(100), primary_key=True),
    sa.Column("version_id", sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)

label_events = sa.Table(
    "label_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("artifact_id", sa.ForeignKey("artifacts.id"), nullable=False),
    sa.Column("label", sa.String(100), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("from_version_id", sa.ForeignKey("versions.id")),
    sa.Column("to_version_id", sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_label_events_artifact_label", "artifact_id", "label", "id"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(50), nullable=False, index=True),
    sa.Column("target", sa.String(300), nullable=False, index=True),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# One row (id=1): the newest event's seq and hash. Locking it serialises appends on every
# backend, and it lets `verify` notice events deleted from, or added to, the end.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Model responses keyed by sha256 of (provider, pinned model, messages, parameters, seed).
# Only successful responses are stored. Replay mode reads entries regardless of expiry.
response_cache = sa.Table(
    "response_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(100), nullable=False),
    sa.Column("model", sa.String(300), nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), index=True),
)

# One evaluation run of a suite version against a target version. `report` holds the
# final RunReport as JSON (what `runs show` and the HTML report render); `manifest` what
# is needed to reproduce it.
eval_runs = sa.Table(
    "eval_runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("suite", sa.String(200), nullable=False, index=True),
    sa.Column("suite_version", sa.Integer, nullable=False),
    sa.Column("target", sa.String(200), nullable=False, index=True),
    sa.Column("target_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("pass_rate", sa.Float),
    sa.Column("gate_passed", sa.Boolean),
    sa.Column("baseline_run_id", sa.String(32)),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("report", sa.Text),
)

# Every attempt of every case, written as the run goes so an interrupted run keeps them.
eval_attempts = sa.Table(
    "eval_attempts",
    metadata,
    sa.Column("run_id", sa.ForeignKey("eval_runs.id"), primary_key=True),
    sa.Column("case_id", sa.String(200), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("scores", sa.Text, nullable=False),
)

# Outputs waiting for (or given) a human verdict, from the `human` scorer.
review_items = sa.Table(
    "review_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.ForeignKey("eval_runs.id"), nullable=False, index=True),
    sa.Column("case_id", sa.String(200), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("input", sa.Text),
    sa.Column("expected", sa.Text),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("instructions", sa.Text),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("score", sa.Float),
    sa.Column("comment", sa.Text),
    sa.Column("reviewer", sa.String(200)),
    sa.Column("reviewed_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("run_id", "case_id", "attempt", name="uq_review_items_attempt"),
)

# Gateway tenants and their limits (NULL = unlimited). USD amounts are exact decimals.
tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("requests_per_minute", sa.Integer),
    sa.Column("tokens_per_minute", sa.Integer),
    sa.Column("usd_per_day", sa.Numeric(18, 6)),
    sa.Column("usd_per_month", sa.Numeric(18, 6)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# API keys: only the sha256 of the secret is stored; `id` is the public part shown in
# listings and traces. Per-key limits narrow the tenant's.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.ForeignKey("tenants.name"), nullable=False, index=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(200)),
    sa.Column("requests_per_minute", sa.Integer),
    sa.Column("tokens_per_minute", sa.Integer),
    sa.Column("usd_per_day", sa.Numeric(18, 6)),
    sa.Column("usd_per_month", sa.Numeric(18, 6)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

# One row (id=1) bumped by every tenant/key change: gateway replicas poll it and reload
# their in-memory key cache, so the hot path never reads the database.
config_version = sa.Table(
    "config_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
)

# One row per gateway request, written in batches off the request path.
traces = sa.Table(
    "traces",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("tenant", sa.String(100), index=True),
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
)
sa.Index("ix_traces_tenant_at", traces.c.tenant, traces.c.at)

GENESIS_HASH = "0" * 64


def as_utc(value: datetime) -> datetime:
    """A timestamp read back from the database as aware UTC (SQLite drops the zone)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
