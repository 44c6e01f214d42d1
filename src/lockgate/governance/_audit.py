"""The tamper-evident audit log: an append-only hash chain in the database.

Each event stores the hash of the event before it, and its own hash over its fields
(``event_id, at, actor, action, target, before, after, prev_hash``). The single row of
``audit_head`` records the newest event's seq and hash. Appends lock that row
(``SELECT … FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` already serialises writers on
SQLite), so concurrent writers queue and the chain cannot fork. An append joins the
caller's transaction: the mutation and its audit event commit together or not at all.

`AuditLog.verify` walks the chain and names the first event that was edited, deleted,
inserted or reordered. Anyone holding the database can rewrite the whole chain
consistently; to rule that out, keep the head hash that ``lockgate audit verify`` prints
somewhere else (a ticket, a commit) and compare later.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from lockgate._canonical import canonical_hash, canonical_json
from lockgate.store import Store
from lockgate.store._tables import GENESIS_HASH, audit_events, audit_head


@dataclass(frozen=True)
class AuditEvent:
    """One recorded mutation."""

    seq: int
    event_id: str
    at: str
    actor: str
    action: str
    target: str
    before: str | None
    after: str | None
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        return event_hash(
            event_id=self.event_id,
            at=self.at,
            actor=self.actor,
            action=self.action,
            target=self.target,
            before=self.before,
            after=self.after,
            prev_hash=self.prev_hash,
        )


@dataclass(frozen=True)
class Verification:
    """The outcome of walking the chain."""

    ok: bool
    checked: int
    head_hash: str
    problem: str | None = None
    seq: int | None = None


def event_hash(**fields: str | None) -> str:
    """sha256 over an event's fields (everything but seq and its own hash)."""
    return canonical_hash(fields)


def append_event(
    conn: sa.Connection,
    *,
    actor: str,
    action: str,
    target: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event inside the caller's write transaction and return it."""
    head = conn.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).one()
    fields: dict[str, str | None] = {
        "event_id": str(uuid.uuid4()),
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "before": canonical_json(before) if before is not None else None,
        "after": canonical_json(after) if after is not None else None,
        "prev_hash": head.hash,
    }
    digest = event_hash(**fields)
    seq = head.seq + 1
    conn.execute(sa.insert(audit_events).values(seq=seq, hash=digest, **fields))
    conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
    return AuditEvent(seq=seq, hash=digest, **fields)  # type: ignore[arg-type]


class AuditLog:
    """Read and verify the audit chain of a store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def events(
        self,
        *,
        target: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Events, newest first, optionally filtered by target prefix or action."""
        query = sa.select(audit_events).order_by(audit_events.c.seq.desc())
        if target:
            query = query.where(audit_events.c.target.startswith(target, autoescape=True))
        if action:
            query = query.where(audit_events.c.action == action)
        if limit:
            query = query.limit(limit)
        with self._store.read() as conn:
            return [AuditEvent(**row._mapping) for row in conn.execute(query)]

    def verify(self) -> Verification:
        """Walk the whole chain in order; report the first inconsistency found."""
        with self._store.read() as conn:
            rows = [
                AuditEvent(**row._mapping)
                for row in conn.execute(sa.select(audit_events).order_by(audit_events.c.seq))
            ]
            head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
        return walk_chain(rows, head_seq=head.seq, head_hash=head.hash)


def walk_chain(rows: list[AuditEvent], *, head_seq: int, head_hash: str) -> Verification:
    """Check `rows` (ordered by seq) against each other and the recorded head."""
    position_of = {row.hash: index for index, row in enumerate(rows)}
    prev_hash = GENESIS_HASH
    expected_seq = 1
    for index, row in enumerate(rows):

        def broken(problem: str, seq: int = row.seq, checked: int = index) -> Verification:
            return Verification(False, checked, head_hash, problem, seq)

        if row.computed_hash() != row.hash:
            return broken(f"event #{row.seq} was edited: its fields no longer match its hash")
        if row.prev_hash != prev_hash:
            later = position_of.get(row.prev_hash)
            if later is not None and later > index:
                return broken(
                    f"events reordered: event #{row.seq} was written after event "
                    f"#{rows[later].seq} but now comes before it"
                )
            if row.seq > expected_seq:
                missing = _span(expected_seq, row.seq - 1)
                return broken(
                    f"{missing} deleted: the chain skips from #{expected_seq - 1} to #{row.seq}"
                )
            if index >= 2 and row.prev_hash == rows[index - 2].hash:
                return broken(
                    f"event #{rows[index - 1].seq} was inserted: event #{row.seq} was chained "
                    f"directly to event #{rows[index - 2].seq}",
                    seq=rows[index - 1].seq,
                )
            return broken(
                f"chain broken before event #{row.seq}: an event was deleted or inserted "
                f"here, or event #{row.seq - 1} was edited and re-hashed"
            )
        if row.seq != expected_seq:
            return broken(
                f"event #{row.seq} carries the wrong sequence number "
                f"(expected #{expected_seq}): events were renumbered"
            )
        prev_hash = row.hash
        expected_seq += 1

    last_seq = rows[-1].seq if rows else 0
    if head_seq > last_seq:
        return Verification(
            False,
            len(rows),
            head_hash,
            f"{_span(last_seq + 1, head_seq)} deleted from the end of the chain "
            f"(the head records #{head_seq})",
            last_seq + 1,
        )
    if head_seq < last_seq or head_hash != prev_hash:
        return Verification(
            False,
            len(rows),
            head_hash,
            f"event #{head_seq + 1} was inserted after the recorded head (#{head_seq})"
            if head_seq < last_seq
            else f"the recorded head does not match event #{last_seq}",
            head_seq + 1 if head_seq < last_seq else last_seq,
        )
    return Verification(True, len(rows), head_hash)


def _span(first: int, last: int) -> str:
    return f"event #{first} was" if first == last else f"events #{first} to #{last} were"
