"""`lockgate audit`: read and verify the tamper-evident audit log."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.table import Column, Table

from lockgate.cli._common import JSON_OPTION, err, out, print_json, state
from lockgate.governance import AuditEvent, AuditLog

app = typer.Typer(
    help="The audit log: every push, label move and rollback, chained by hashes.",
    no_args_is_help=True,
)


@app.command("log")
def log(
    ctx: typer.Context,
    target: str | None = typer.Option(
        None,
        "--target",
        "-t",
        help="Only events whose target starts with this (e.g. support-triage).",
    ),
    action: str | None = typer.Option(
        None, "--action", "-a", help="Only this action (push, label.set, label.rollback)."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Newest N events."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List audit events, newest first."""
    events = AuditLog(state(ctx).registry.store).events(target=target, action=action, limit=limit)
    if as_json:
        print_json([asdict(e) for e in events])
        return
    table = Table(
        "#",
        Column("time (UTC)", no_wrap=True),
        "actor",
        Column("action", no_wrap=True),
        Column("target", overflow="fold"),
        Column("change", ratio=1),
    )
    for e in events:
        table.add_row(
            str(e.seq), e.at[:19].replace("T", " "), e.actor, e.action, e.target, _change(e)
        )
    out.print(table)


def _change(event: AuditEvent) -> str:
    """A short human summary of before/after ("3 → 4", "sha256:ab12…")."""
    before = json.loads(event.before) if event.before else {}
    after = json.loads(event.after) if event.after else {}
    if "version" in after:
        return f"{before.get('version', '∅')} → {after['version']}"
    if "run_id" in after:
        rate = after.get("pass_rate")
        shown = f", pass rate {rate:.3f}" if isinstance(rate, int | float) else ""
        return f"{after.get('status')} on {after.get('target')}{shown} (run {after['run_id'][:8]})"
    if "status" in after:
        return f"{before.get('status', '∅')} → {after['status']}"
    if "digest" in after:
        return f"sha256:{after['digest'][:12]}"
    return ", ".join(f"{k}={v}" for k, v in sorted(after.items()))


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Walk the hash chain; exit 1 and name the first edited, deleted, inserted or
    reordered event if the log was tampered with.

    Keep the printed head hash somewhere outside the database (a ticket, a commit):
    comparing it later also catches a chain rewritten from scratch.
    """
    result = AuditLog(state(ctx).registry.store).verify()
    if result.ok:
        out.print(f"[green]audit chain intact[/]: {result.checked} events, head {result.head_hash}")
        return
    err.print(f"[red]audit chain BROKEN[/] at event #{result.seq}: {result.problem}")
    err.print(f"{result.checked} events verified before it")
    raise typer.Exit(1)
