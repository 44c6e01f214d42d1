"""Tenants, hashed API keys, the config version and the gateway's key cache (both backends)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from lockgate.errors import NotFound, StoreError, UserError
from lockgate.governance import AuditLog
from lockgate.governance._tenants import KeyCache, Limits, TenantStore, hash_secret
from lockgate.store import Store, metadata
from lockgate.store._tables import api_keys


@pytest.fixture
def tenants(store: Store) -> TenantStore:
    return TenantStore(store, actor="alice")


def dump(store: Store) -> str:
    """Every row of every table, as text."""
    with store.read() as conn:
        return "\n".join(
            repr(tuple(row))
            for table in metadata.sorted_tables
            for row in conn.execute(sa.select(table))
        )


def test_create_get_list_and_update_tenants(tenants: TenantStore) -> None:
    created = tenants.create_tenant(
        "acme", Limits(requests_per_minute=60, usd_per_day=Decimal("0.50"))
    )
    tenants.create_tenant("beta-co_2")
    assert tenants.get_tenant("acme") == created
    assert [t.name for t in tenants.list_tenants()] == ["acme", "beta-co_2"]
    assert tenants.get_tenant("acme").limits.usd_per_day == Decimal("0.50")

    updated = tenants.update_tenant("acme", tokens_per_minute=10_000, requests_per_minute=None)
    assert updated.limits == Limits(tokens_per_minute=10_000, usd_per_day=Decimal("0.5"))
    assert tenants.get_tenant("acme") == updated
    assert updated.updated_at > created.updated_at
    assert updated.created_at == created.created_at


def test_tenant_errors_say_what_is_wrong(tenants: TenantStore) -> None:
    tenants.create_tenant("acme")
    with pytest.raises(UserError, match="tenant 'acme' already exists"):
        tenants.create_tenant("acme")
    with pytest.raises(UserError, match="tenant name 'Acme Corp' is not valid"):
        tenants.create_tenant("Acme Corp")
    with pytest.raises(
        NotFound, match="no tenant named 'nope'; see the tenants with: lockgate tenants list"
    ):
        tenants.update_tenant("nope", requests_per_minute=1)
    with pytest.raises(UserError, match="cannot change colour of a tenant"):
        tenants.update_tenant("acme", colour="red")
    with pytest.raises(UserError, match="usd_per_day has more than 6 decimal places"):
        tenants.update_tenant("acme", usd_per_day=Decimal("0.0000001"))
    with pytest.raises(UserError, match="requests_per_minute must be 0 or more"):
        Limits(requests_per_minute=-1)
    with pytest.raises(NotFound, match="no tenant named 'ghost'"):
        tenants.create_key("ghost")


def test_keys_are_stored_hashed_and_the_secret_is_never_recorded(
    tenants: TenantStore, store: Store
) -> None:
    tenants.create_tenant("acme")
    key, secret = tenants.create_key("acme", label="backend", limits=Limits(requests_per_minute=5))
    match = re.fullmatch(rf"lg-{key.id}-([A-Za-z0-9_-]{{32,}})", secret)
    assert match, secret
    rows = dump(store)
    assert hash_secret(secret) in rows
    assert secret not in rows and match.group(1) not in rows
    with store.read() as conn:
        stored = conn.execute(sa.select(api_keys.c.secret_sha256)).scalar_one()
    assert stored == hash_secret(secret)
    (listed,) = tenants.list_keys("acme")
    assert listed == key
    assert (listed.label, listed.created_by, listed.limits.requests_per_minute) == (
        "backend",
        "alice",
        5,
    )
    _, other_secret = tenants.create_key("acme")
    assert other_secret != secret


def test_revoke_removes_a_key_from_the_active_set(tenants: TenantStore) -> None:
    tenants.create_tenant("acme")
    tenants.create_tenant("beta")
    kept, kept_secret = tenants.create_key("acme")
    gone, gone_secret = tenants.create_key("beta")
    assert set(tenants.active_keys()) == {hash_secret(kept_secret), hash_secret(gone_secret)}

    revoked = tenants.revoke_key(gone.id)
    assert revoked.revoked_at is not None
    active = tenants.active_keys()
    assert list(active) == [hash_secret(kept_secret)]
    key, tenant = active[hash_secret(kept_secret)]
    assert (key.id, tenant.name) == (kept.id, "acme")
    assert [k.id for k in tenants.list_keys()] == [kept.id, gone.id]
    assert tenants.list_keys("beta")[0].revoked_at == revoked.revoked_at

    with pytest.raises(UserError, match=f"API key '{gone.id}' was already revoked at"):
        tenants.revoke_key(gone.id)
    with pytest.raises(
        NotFound, match="no API key with id 'nope'; see the keys with: lockgate keys list"
    ):
        tenants.revoke_key("nope")


def test_every_change_bumps_the_config_version_and_is_audited(
    tenants: TenantStore, store: Store
) -> None:
    assert tenants.config_version() == 0
    tenants.create_tenant("acme", Limits(usd_per_day=Decimal("5")))
    tenants.update_tenant("acme", usd_per_day=Decimal("7.5"))
    tenants.update_tenant("acme", usd_per_day=Decimal("7.50"))  # no change: no event
    key, secret = tenants.create_key("acme", label="ci")
    tenants.revoke_key(key.id)
    assert tenants.config_version() == 4

    log = AuditLog(store)
    events = list(reversed(log.events()))
    assert [(e.action, e.target, e.actor) for e in events] == [
        ("tenant.create", "tenant:acme", "alice"),
        ("tenant.update", "tenant:acme", "alice"),
        ("key.create", f"key:{key.id}", "alice"),
        ("key.revoke", f"key:{key.id}", "alice"),
    ]
    assert '"usd_per_day":"5"' in (events[1].before or "")
    assert '"usd_per_day":"7.5"' in (events[1].after or "")
    assert all(secret not in f"{e.before}{e.after}" for e in events)
    assert log.verify().ok


def test_a_failed_change_leaves_no_event_and_no_bump(tenants: TenantStore, store: Store) -> None:
    tenants.create_tenant("acme")
    with pytest.raises(UserError):
        tenants.create_tenant("acme")
    assert tenants.config_version() == 1
    assert len(AuditLog(store).events()) == 1


def count_queries(store: Store) -> tuple[list[str], Callable[[], None]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    return seen, lambda: sa.event.remove(store.engine, "before_cursor_execute", record)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_key_cache_serves_lookups_from_memory(tenants: TenantStore, store: Store) -> None:
    tenants.create_tenant("acme", Limits(requests_per_minute=10))
    key, secret = tenants.create_key("acme")
    cache = KeyCache(tenants, poll_s=60)
    cache.refresh()
    queries, stop_counting = count_queries(store)
    try:
        for _ in range(1000):
            found = cache.lookup(secret)
        assert cache.lookup(secret + "x") is None
        assert cache.lookup("") is None
    finally:
        stop_counting()
    assert queries == []
    assert found is not None
    assert (found[0].id, found[1].name, found[1].limits.requests_per_minute) == (key.id, "acme", 10)
    store.close()  # no database behind the cache any more
    assert cache.lookup(secret) == found


async def test_key_cache_reloads_when_the_config_version_changes(
    tenants: TenantStore, store: Store
) -> None:
    tenants.create_tenant("acme")
    key, secret = tenants.create_key("acme")
    cache = KeyCache(tenants, poll_s=0.02)
    stop = asyncio.Event()
    poller = asyncio.create_task(cache.run(stop))
    try:
        await wait_for(lambda: cache.lookup(secret) is not None)
        # Another process (another replica's admin, the CLI) revokes and adds keys.
        other = TenantStore(store, actor="bob")
        other.revoke_key(key.id)
        _, new_secret = other.create_key("acme")
        other.update_tenant("acme", usd_per_day=Decimal("2"))
        await wait_for(lambda: cache.lookup(secret) is None)
        await wait_for(lambda: cache.version == other.config_version())
        found = cache.lookup(new_secret)
        assert found is not None and found[1].limits.usd_per_day == Decimal("2")
        # Between changes, each poll is one tiny query and no reload.
        queries, stop_counting = count_queries(store)
        try:
            await asyncio.sleep(0.2)
        finally:
            stop_counting()
        selects = [q for q in queries if q != "BEGIN"]  # SQLite's explicit BEGIN
        assert selects and all("FROM config_version" in q for q in selects)
    finally:
        stop.set()
        await asyncio.wait_for(poller, 5)


async def test_key_cache_poll_survives_database_errors(
    tenants: TenantStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tenants.create_tenant("acme")
    _, secret = tenants.create_key("acme")
    cache = KeyCache(tenants, poll_s=0.02)
    cache.refresh()
    real = tenants.config_version
    failures = 3

    def flaky() -> int:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreError("database error: connection refused")
        return real()

    monkeypatch.setattr(tenants, "config_version", flaky)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="lockgate.gateway"):
        poller = asyncio.create_task(cache.run(stop))
        tenants.create_key("acme")
        await wait_for(lambda: len(cache) == 2)
        stop.set()
        await asyncio.wait_for(poller, 5)
    assert cache.lookup(secret) is not None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("config poll failed" in m for m in messages) == 3
    assert any("connection refused" in m for m in messages)
    assert any("config poll recovered" in m for m in messages)


async def test_invalidate_wakes_the_poller_at_once(tenants: TenantStore) -> None:
    tenants.create_tenant("acme")
    cache = KeyCache(tenants, poll_s=3600)
    stop = asyncio.Event()
    poller = asyncio.create_task(cache.run(stop))
    try:
        await wait_for(lambda: cache.version == 1)
        _, secret = tenants.create_key("acme")
        cache.invalidate()
        await wait_for(lambda: cache.lookup(secret) is not None, timeout=2)
    finally:
        stop.set()
        await asyncio.wait_for(poller, 5)
