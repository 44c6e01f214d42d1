"""`lockgate tenants` and `lockgate keys`: who may call the gateway, and how much."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from lockgate.cli._common import JSON_OPTION, err, out, print_json, state, when
from lockgate.errors import UserError
from lockgate.governance._tenants import ApiKey, Limits, Tenant, TenantStore, parse_usd

tenants_app = typer.Typer(
    help="Gateway tenants and their rate limits and budgets.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Gateway API keys: shown once at creation, stored hashed.", no_args_is_help=True
)

_CLEAR = "none"


def _option(flag: str, what: str) -> Any:
    return typer.Option(
        None, flag, help=f"{what} ('{_CLEAR}': unlimited).", show_default=False, metavar="N"
    )


RPM_OPTION = _option("--requests-per-minute", "Requests per minute")
TPM_OPTION = _option("--tokens-per-minute", "Tokens (input + output) per minute")
USD_DAY_OPTION = _option("--usd-per-day", "USD per calendar day (UTC), e.g. 5 or 0.50")
USD_MONTH_OPTION = _option("--usd-per-month", "USD per calendar month (UTC)")


def _store(ctx: typer.Context) -> TenantStore:
    registry = state(ctx).registry
    return TenantStore(registry.store, registry.actor)


def _limit_changes(
    rpm: str | None, tpm: str | None, usd_day: str | None, usd_month: str | None
) -> dict[str, int | Decimal | None]:
    """The limits given on the command line; 'none' clears one (None: unlimited)."""
    changes: dict[str, int | Decimal | None] = {}
    for field, text in (("requests_per_minute", rpm), ("tokens_per_minute", tpm)):
        if text is not None:
            changes[field] = _count(text, field)
    for field, text in (("usd_per_day", usd_day), ("usd_per_month", usd_month)):
        if text is not None:
            cleared = text.strip().lower() == _CLEAR
            changes[field] = None if cleared else parse_usd(text, field=_flag(field))
    return changes


def _count(text: str, field: str) -> int | None:
    if text.strip().lower() == _CLEAR:
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(
            f"{_flag(field)}: {text!r} is not a whole number (or '{_CLEAR}' for no limit)"
        ) from None


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _money(value: Decimal | None) -> str:
    if value is None:
        return "unlimited"
    whole, _, fraction = format(value, "f").partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def _number(value: int | None) -> str:
    return "unlimited" if value is None else f"{value:,}"


def _describe(limits: Limits) -> str:
    return (
        f"requests/min {_number(limits.requests_per_minute)}, "
        f"tokens/min {_number(limits.tokens_per_minute)}, "
        f"USD/day {_money(limits.usd_per_day)}, USD/month {_money(limits.usd_per_month)}"
    )


def _limit_cells(limits: Limits) -> list[str]:
    return [
        _number(limits.requests_per_minute),
        _number(limits.tokens_per_minute),
        _money(limits.usd_per_day),
        _money(limits.usd_per_month),
    ]


def _tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "name": tenant.name,
        **tenant.limits.as_dict(),
        "created_at": tenant.created_at,
        "updated_at": tenant.updated_at,
    }


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "label": key.label,
        **key.limits.as_dict(),
        "created_at": key.created_at,
        "created_by": key.created_by,
        "revoked_at": key.revoked_at,
    }


# -- tenants ---------------------------------------------------------------------------


@tenants_app.command("create")
def create_tenant(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Lowercase letters, digits, - and _.", show_default=False),
    rpm: str | None = RPM_OPTION,
    tpm: str | None = TPM_OPTION,
    usd_day: str | None = USD_DAY_OPTION,
    usd_month: str | None = USD_MONTH_OPTION,
) -> None:
    """Add tenant NAME; limits not given are unlimited."""
    limits = Limits(**_limit_changes(rpm, tpm, usd_day, usd_month))  # type: ignore[arg-type]
    tenant = _store(ctx).create_tenant(name, limits)
    out.print(f"created tenant {tenant.name}: {_describe(tenant.limits)}", markup=False)
    out.print(f"Give it an API key with: lockgate keys create --tenant {tenant.name}", markup=False)


@tenants_app.command("update")
def update_tenant(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The tenant.", show_default=False),
    rpm: str | None = RPM_OPTION,
    tpm: str | None = TPM_OPTION,
    usd_day: str | None = USD_DAY_OPTION,
    usd_month: str | None = USD_MONTH_OPTION,
) -> None:
    """Change the given limits of tenant NAME; the others stay as they are."""
    changes = _limit_changes(rpm, tpm, usd_day, usd_month)
    if not changes:
        raise UserError(
            "nothing to change: give at least one of --requests-per-minute, "
            "--tokens-per-minute, --usd-per-day, --usd-per-month"
        )
    tenants = _store(ctx)
    before = tenants.get_tenant(name)
    after = tenants.update_tenant(name, **changes)
    if after.limits == before.limits:
        out.print(f"tenant {name} unchanged: {_describe(after.limits)}", markup=False)
    else:
        out.print(f"updated tenant {name}: {_describe(after.limits)}", markup=False)


@tenants_app.command("list")
def list_tenants(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show every tenant and its limits."""
    tenants = _store(ctx).list_tenants()
    if as_json:
        print_json([_tenant_json(t) for t in tenants])
        return
    if not tenants:
        out.print("No tenants yet. Add one with: lockgate tenants create NAME --usd-per-day 5")
        return
    table = Table("tenant", "requests/min", "tokens/min", "USD/day", "USD/month", "updated")
    for tenant in tenants:
        table.add_row(tenant.name, *_limit_cells(tenant.limits), when(tenant.updated_at))
    out.print(table)


# -- keys ------------------------------------------------------------------------------


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    tenant: str = typer.Option(..., "--tenant", help="The tenant the key belongs to."),
    label: str | None = typer.Option(None, "--label", help="What the key is for."),
    rpm: str | None = RPM_OPTION,
    tpm: str | None = TPM_OPTION,
    usd_day: str | None = USD_DAY_OPTION,
    usd_month: str | None = USD_MONTH_OPTION,
) -> None:
    """Create an API key; its secret is printed once and cannot be shown again.

    The key's limits narrow its tenant's: a request must fit both.
    """
    limits = Limits(**_limit_changes(rpm, tpm, usd_day, usd_month))  # type: ignore[arg-type]
    key, secret = _store(ctx).create_key(tenant, label=label, limits=limits)
    labelled = f" ({key.label})" if key.label else ""
    out.print(f"created API key {key.id}{labelled} for tenant {key.tenant}", markup=False)
    out.print(secret, markup=False)
    err.print(
        "warning: copy this secret now; it cannot be shown again (lockgate stores only its "
        f"sha256). Lost it? Revoke with: lockgate keys revoke {key.id}",
        markup=False,
    )


@keys_app.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: str = typer.Argument(
        ..., help="The key id from 'lockgate keys list'.", show_default=False
    ),
) -> None:
    """Revoke an API key; gateways refuse it from their next config poll."""
    key = _store(ctx).revoke_key(key_id)
    out.print(f"revoked API key {key.id} of tenant {key.tenant}", markup=False)


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's keys."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show API keys (never their secrets), revoked ones included."""
    keys = _store(ctx).list_keys(tenant)
    if as_json:
        print_json([_key_json(k) for k in keys])
        return
    if not keys:
        out.print("No API keys yet. Create one with: lockgate keys create --tenant NAME")
        return
    table = Table(
        "key", "tenant", "label", "requests/min", "tokens/min", "USD/day", "USD/month",
        "created", "by", "status",
    )  # fmt: skip
    for key in keys:
        status = "active" if key.revoked_at is None else f"revoked {when(key.revoked_at)}"
        table.add_row(
            key.id,
            key.tenant,
            Text(key.label or ""),  # user text: never markup
            *_limit_cells(key.limits),
            when(key.created_at),
            key.created_by,
            status,
        )
    out.print(table)
