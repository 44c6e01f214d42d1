"""Governance: the tamper-evident audit log (roles and approvals arrive later)."""

from lockgate.governance._audit import (
    AuditEvent,
    AuditLog,
    Verification,
    append_event,
    walk_chain,
)

__all__ = ["AuditEvent", "AuditLog", "Verification", "append_event", "walk_chain"]
