"""`lockgate traces list|show` and `lockgate usage`: what the gateway served, and its cost."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from lockgate.cli._common import JSON_OPTION, out, print_json, state
from lockgate.errors import UserError
from lockgate.gateway._traces import (
    TraceRecord,
    UsageBy,
    UsageRow,
    get_trace,
    list_traces,
    usage,
)

traces_app = typer.Typer(help="Gateway traces: one per request.", no_args_is_help=True)

_SINCE_HELP = (
    "Only since then: an age (45s, 30m, 1h, 2d, 1w) or an ISO date/time "
    "(2025-01-31, 2025-01-31T08:00; UTC unless a zone is given)."
)
_AGE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``1h`` → one hour ago; ``2025-01-31`` → that UTC midnight. None passes through.

    Raises:
        UserError: neither an age nor an ISO date.
    """
    if value is None:
        return None
    text = value.strip().lower()
    match = _AGE.match(text)
    if match:
        amount, unit = match.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UserError(
            f"--since {value!r}: give an age such as 30m, 1h or 2d, or an ISO date "
            "such as 2025-01-31"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@traces_app.command("list")
def traces_list(
    ctx: typer.Context,
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant."),
    route: str | None = typer.Option(None, "--route", help="Only this route."),
    model: str | None = typer.Option(None, "--model", help="Requested or resolved model."),
    status: int | None = typer.Option(None, "--status", help="Only this HTTP status."),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    limit: int = typer.Option(50, "--limit", "-n", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recent traces, newest first."""
    records = list_traces(
        state(ctx).registry.store,
        tenant=tenant,
        route=route,
        model=model,
        status=status,
        since=parse_since(since),
        limit=limit,
    )
    if as_json:
        print_json([r.to_json() for r in records])
        return
    if not records:
        out.print("No traces match. The gateway records one per request (lockgate serve).")
        return
    table = Table(
        Column("trace", no_wrap=True),
        Column("time", no_wrap=True),
        "tenant",
        Column("route / model", overflow="fold"),
        Column("status", justify="right"),
        Column("tokens in→out", justify="right"),
        Column("cost", justify="right"),
        Column("latency", justify="right"),
        "cache",
    )
    for r in records:
        table.add_row(
            r.id[:8],
            r.at.astimezone().strftime("%m-%d %H:%M:%S"),
            escape(r.tenant or "-"),
            escape(_target(r)),
            _status(r.status),
            _tokens(r),
            usd(r.cost_usd),
            f"{r.latency_ms:,.0f} ms",
            r.cache or "-",
        )
    out.print(table)


@traces_app.command("show")
def traces_show(
    ctx: typer.Context,
    trace_id: str = typer.Argument(..., help="Trace id or prefix.", show_default=False),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every field of one trace, with its details (fallbacks, routing, trimming, guards)."""
    record = get_trace(state(ctx).registry.store, trace_id)
    if as_json:
        print_json(record.to_json())
        return
    out.print(f"[bold]trace {record.id}[/]")
    values = record.to_json()
    values.pop("id")
    details = values.pop("details")
    values["at"] = f"{values['at']} ({record.at.astimezone():%Y-%m-%d %H:%M:%S %Z})"
    values["cost_usd"] = usd(record.cost_usd)
    width = max(len(name) for name in values)
    for name, value in values.items():
        shown = "-" if value is None else str(value)
        out.print(f"  {name:<{width}}  {shown}", markup=False)
    out.print("  details:" if details else "  details: -", markup=False)
    if details:
        text = json.dumps(details, indent=2, sort_keys=True, default=str)
        for line in text.splitlines():
            out.print(f"    {line}", markup=False)


def usage_command(
    ctx: typer.Context,
    tenant: str = typer.Option(..., "--tenant", help="The tenant to report on."),
    by: UsageBy = typer.Option("day", "--by", help="Group by UTC day, model, route or prompt."),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    as_json: bool = JSON_OPTION,
) -> None:
    """A tenant's requests, tokens and cost, grouped.

    Requests whose model has no known price are counted apart ("unknown (+N requests)"),
    never as free.

    Example: lockgate usage --tenant acme --by model --since 30d
    """
    rows = usage(state(ctx).registry.store, tenant=tenant, by=by, since=parse_since(since))
    total = _total(rows)
    if as_json:
        print_json(
            {
                "tenant": tenant,
                "by": by,
                "rows": [_usage_json(r) for r in rows],
                "total": _usage_json(total),
            }
        )
        return
    if not rows:
        out.print(f"No traffic recorded for tenant '{escape(tenant)}' in that period.")
        return
    table = Table(
        Column(by, overflow="fold"),
        Column("requests", justify="right"),
        Column("errors", justify="right"),
        Column("input tokens", justify="right"),
        Column("output tokens", justify="right"),
        Column("cost (USD)", justify="right"),
        title=f"usage of {escape(tenant)} by {by}",
        show_footer=False,
    )
    for row in rows:
        table.add_row(*_usage_cells(row))
    table.add_section()
    table.add_row(*_usage_cells(total), style="bold")
    out.print(table)


def usd(value: Decimal | None) -> str:
    """A cost for people: ``$0.001234``; ``unknown`` when the price was not known."""
    return "unknown" if value is None else f"${value:,.6f}"


def usage_cost(row: UsageRow) -> str:
    """Known cost, with the requests of unknown price counted next to it (never as $0)."""
    if not row.unknown_cost_requests:
        return usd(row.cost_usd)
    n = row.unknown_cost_requests
    unknown = f"unknown (+{n} request{'s' if n != 1 else ''})"
    if row.unknown_cost_requests == row.requests:
        return unknown
    return f"{usd(row.cost_usd)} + {unknown}"


def _usage_cells(row: UsageRow) -> list[str]:
    return [
        escape(row.group or "-"),
        f"{row.requests:,}",
        f"{row.errors:,}",
        f"{row.input_tokens:,}",
        f"{row.output_tokens:,}",
        usage_cost(row),
    ]


def _total(rows: list[UsageRow]) -> UsageRow:
    return UsageRow(
        group="total",
        requests=sum(r.requests for r in rows),
        errors=sum(r.errors for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost_usd=sum((r.cost_usd for r in rows), Decimal(0)),
        unknown_cost_requests=sum(r.unknown_cost_requests for r in rows),
    )


def _usage_json(row: UsageRow) -> dict[str, Any]:
    data = asdict(row)
    data["cost_usd"] = format(row.cost_usd, "f")
    return data


def _target(record: TraceRecord) -> str:
    model = record.resolved_model or record.requested_model or "-"
    where = record.prompt_ref or record.route
    return f"{where} → {model}" if where else model


def _tokens(record: TraceRecord) -> str:
    approx = "~" if record.tokens_estimated else ""
    return f"{approx}{record.input_tokens:,}→{record.output_tokens:,}"


def _status(status: int) -> str:
    colour = "green" if status < 400 else "yellow" if status < 500 else "red"
    return f"[{colour}]{status}[/]"
