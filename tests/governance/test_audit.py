"""The audit hash chain: tampering of every kind is detected and named."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockgate.governance import AuditLog, append_event
from lockgate.registry import Registry
from lockgate.store import Store
from lockgate.store._tables import audit_events, audit_head
from tests.helpers import DESIGN_PROMPT, write


@pytest.fixture
def chain(store: Store) -> AuditLog:
    """Five events appended through the public path."""
    for n in range(1, 6):
        with store.write() as conn:
            append_event(
                conn,
                actor="alice",
                action="label.set",
                target=f"thing@{n}",
                before={"version": n - 1},
                after={"version": n},
            )
    return AuditLog(store)


def sql(store: Store, statement: sa.Executable) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement)


def test_intact_chain_verifies(chain: AuditLog) -> None:
    result = chain.verify()
    assert result.ok
    assert result.checked == 5
    assert result.head_hash == chain.events(limit=1)[0].hash


def test_empty_chain_verifies(store: Store) -> None:
    result = AuditLog(store).verify()
    assert (result.ok, result.checked) == (True, 0)


def test_edited_row_is_named(chain: AuditLog, store: Store) -> None:
    sql(store, sa.update(audit_events).where(audit_events.c.seq == 3).values(actor="mallory"))
    result = chain.verify()
    assert not result.ok
    assert result.seq == 3
    assert "event #3 was edited" in (result.problem or "")


def test_edited_and_rehashed_row_breaks_the_next_link(chain: AuditLog, store: Store) -> None:
    row = next(e for e in chain.events() if e.seq == 3)
    from lockgate.governance._audit import event_hash

    forged = event_hash(
        event_id=row.event_id,
        at=row.at,
        actor="mallory",
        action=row.action,
        target=row.target,
        before=row.before,
        after=row.after,
        prev_hash=row.prev_hash,
    )
    sql(
        store,
        sa.update(audit_events).where(audit_events.c.seq == 3).values(actor="mallory", hash=forged),
    )
    result = chain.verify()
    assert (result.ok, result.seq) == (False, 4)
    assert "edited and re-hashed" in (result.problem or "")


def test_deleted_row_is_named(chain: AuditLog, store: Store) -> None:
    sql(store, sa.delete(audit_events).where(audit_events.c.seq == 2))
    result = chain.verify()
    assert not result.ok
    assert "event #2 was deleted" in (result.problem or "")


def test_deleted_last_row_is_caught_by_the_head(chain: AuditLog, store: Store) -> None:
    sql(store, sa.delete(audit_events).where(audit_events.c.seq == 5))
    result = chain.verify()
    assert not result.ok
    assert "event #5 was deleted from the end" in (result.problem or "")


def test_reordered_rows_are_named(chain: AuditLog, store: Store) -> None:
    # Swap the positions of events 2 and 3 (via a free seq number, the primary key).
    sql(store, sa.update(audit_events).where(audit_events.c.seq == 2).values(seq=-2))
    sql(store, sa.update(audit_events).where(audit_events.c.seq == 3).values(seq=2))
    sql(store, sa.update(audit_events).where(audit_events.c.seq == -2).values(seq=3))
    result = chain.verify()
    assert not result.ok
    assert "reordered" in (result.problem or "")


def test_inserted_row_in_the_middle_is_named(chain: AuditLog, store: Store) -> None:
    # A careful forger: shifts later rows, computes a valid hash chained to event #2.
    from lockgate.governance._audit import event_hash

    events = {e.seq: e for e in chain.events()}
    for seq in (5, 4, 3):
        sql(store, sa.update(audit_events).where(audit_events.c.seq == seq).values(seq=seq + 1))
    fields = {
        "event_id": "00000000-0000-0000-0000-000000000000",
        "at": events[2].at,
        "actor": "mallory",
        "action": "label.set",
        "target": "thing@99",
        "before": None,
        "after": '{"version":99}',
        "prev_hash": events[2].hash,
    }
    sql(store, sa.insert(audit_events).values(seq=3, hash=event_hash(**fields), **fields))
    result = chain.verify()
    assert not result.ok
    assert "event #3 was inserted" in (result.problem or "")


def test_row_appended_behind_the_head_is_named(chain: AuditLog, store: Store) -> None:
    from lockgate.governance._audit import event_hash

    last = chain.events(limit=1)[0]
    fields = {
        "event_id": "11111111-1111-1111-1111-111111111111",
        "at": last.at,
        "actor": "mallory",
        "action": "push",
        "target": "x@1",
        "before": None,
        "after": None,
        "prev_hash": last.hash,
    }
    sql(store, sa.insert(audit_events).values(seq=6, hash=event_hash(**fields), **fields))
    result = chain.verify()
    assert not result.ok
    assert "event #6 was inserted after the recorded head" in (result.problem or "")


def test_a_failed_mutation_leaves_no_audit_event(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as conn:
        append_event(conn, actor="a", action="push", target="t@1")
        raise RuntimeError("the mutation failed after the event was appended")
    assert AuditLog(store).events() == []
    with store.read() as conn:
        assert conn.execute(sa.select(audit_head.c.seq)).scalar_one() == 0


def test_concurrent_writers_cannot_fork_the_chain(store: Store, tmp_path: Path) -> None:
    registry = Registry(store, actor="alice")
    files = [
        write(tmp_path, f"p{n}.yaml", DESIGN_PROMPT.replace("support-triage-v4", f"p{n}-v1"))
        for n in range(8)
    ]
    registry.push(files)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for _ in range(5):
                registry.set_label(f"p{n}@1", f"env{_}")
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = AuditLog(store).verify()
    assert result.ok, result.problem
    assert result.checked == 8 + 8 * 5
    assert sorted(e.seq for e in AuditLog(store).events(limit=1000)) == list(range(1, 49))
