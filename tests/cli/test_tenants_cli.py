"""`lockgate tenants` and `lockgate keys`, through `lockgate.cli.main` (exit codes, errors)."""

from __future__ import annotations

import json
import re

import pytest

from lockgate.config import Settings
from lockgate.governance import AuditLog
from lockgate.governance._tenants import TenantStore, hash_secret
from lockgate.store import Store
from tests.helpers import run_cli

Capsys = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def cli(cli_env: Settings) -> Settings:
    """The CLI reads LOCKGATE_* variables; point them at the test store."""
    return cli_env


def tenant_store(settings: Settings) -> tuple[Store, TenantStore]:
    store = Store.open(settings)
    return store, TenantStore(store, actor="test")


def test_create_update_and_list_tenants(capsys: Capsys, cli: Settings) -> None:
    created = run_cli(
        capsys, "tenants", "create", "acme", "--requests-per-minute", "60", "--usd-per-day", "0.5"
    )
    assert created.code == 0, created.err
    assert created.out.splitlines()[0] == (
        "created tenant acme: requests/min 60, tokens/min unlimited, USD/day $0.50, "
        "USD/month unlimited"
    )
    updated = run_cli(
        capsys,
        "tenants",
        "update",
        "acme",
        "--requests-per-minute",
        "none",
        "--usd-per-month",
        "$12.25",
    )
    assert updated.code == 0, updated.err
    assert updated.out.strip() == (
        "updated tenant acme: requests/min unlimited, tokens/min unlimited, USD/day $0.50, "
        "USD/month $12.25"
    )
    listed = run_cli(capsys, "tenants", "list", "--json")
    assert listed.code == 0, listed.err
    (row,) = json.loads(listed.out)
    assert row["name"] == "acme"
    assert (row["requests_per_minute"], row["usd_per_day"], row["usd_per_month"]) == (
        None,
        "0.5",
        "12.25",
    )
    table = run_cli(capsys, "tenants", "list")
    assert re.search(r"acme\s.*unlimited\s.*\$0\.50\s.*\$12\.25", table.out), table.out

    store, tenants = tenant_store(cli)
    try:
        actions = [(e.action, e.actor) for e in AuditLog(store).events()]
        assert actions == [("tenant.update", "alice"), ("tenant.create", "alice")]
        assert tenants.config_version() == 2
    finally:
        store.close()


def test_tenant_errors_exit_2_with_one_clear_line(capsys: Capsys) -> None:
    assert run_cli(capsys, "tenants", "create", "acme").code == 0
    duplicate = run_cli(capsys, "tenants", "create", "acme")
    assert (duplicate.code, duplicate.err.strip()) == (
        2,
        "error: tenant 'acme' already exists; change its limits with: lockgate tenants update "
        "acme …",
    )
    missing = run_cli(capsys, "tenants", "update", "ghost", "--usd-per-day", "1")
    assert missing.code == 2
    assert "no tenant named 'ghost'; see the tenants with: lockgate tenants list" in missing.err
    bad_number = run_cli(capsys, "tenants", "update", "acme", "--tokens-per-minute", "lots")
    assert bad_number.code == 2
    assert "--tokens-per-minute: 'lots' is not a whole number" in bad_number.err
    bad_money = run_cli(capsys, "tenants", "create", "beta", "--usd-per-day", "five")
    assert (bad_money.code, "'five' is not an amount of USD" in bad_money.err) == (2, True)
    nothing = run_cli(capsys, "tenants", "update", "acme")
    assert (nothing.code, "nothing to change" in nothing.err) == (2, True)
    empty = run_cli(capsys, "keys", "list", "--tenant", "acme")
    assert (empty.code, "No API keys yet" in empty.out) == (0, True)


def test_keys_create_shows_the_secret_once_then_list_and_revoke(
    capsys: Capsys, cli: Settings
) -> None:
    assert run_cli(capsys, "tenants", "create", "acme").code == 0
    created = run_cli(
        capsys,
        "keys",
        "create",
        "--tenant",
        "acme",
        "--label",
        "[ci]",
        "--requests-per-minute",
        "5",
    )
    assert created.code == 0, created.err
    headline, secret = created.out.splitlines()
    key_id = re.fullmatch(r"created API key (\w+) \(\[ci\]\) for tenant acme", headline)
    assert key_id, headline
    assert secret.startswith(f"lg-{key_id.group(1)}-")
    assert "cannot be shown again" in created.err

    listed = run_cli(capsys, "keys", "list", "--tenant", "acme", "--json")
    (row,) = json.loads(listed.out)
    assert (row["id"], row["label"], row["requests_per_minute"], row["revoked_at"]) == (
        key_id.group(1),
        "[ci]",
        5,
        None,
    )
    assert secret not in listed.out
    table = run_cli(capsys, "keys", "list")
    assert "[ci]" in table.out and "active" in table.out and secret not in table.out

    store, tenants = tenant_store(cli)
    try:
        assert hash_secret(secret) in tenants.active_keys()
        revoked = run_cli(capsys, "keys", "revoke", key_id.group(1))
        assert revoked.code == 0, revoked.err
        assert revoked.out.strip() == f"revoked API key {key_id.group(1)} of tenant acme"
        assert tenants.active_keys() == {}
    finally:
        store.close()
    again = run_cli(capsys, "keys", "revoke", key_id.group(1))
    assert again.code == 2 and "was already revoked" in again.err
    assert "revoked " in run_cli(capsys, "keys", "list").out
    unknown_tenant = run_cli(capsys, "keys", "create", "--tenant", "ghost")
    assert unknown_tenant.code == 2 and "no tenant named 'ghost'" in unknown_tenant.err
