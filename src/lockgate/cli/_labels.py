"""`lockgate label`: movable per-environment pointers to versions."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from lockgate.cli._common import JSON_OPTION, out, print_json, state, when

app = typer.Typer(
    help="Environment labels (dev, staging, production, …): movable pointers to versions.",
    no_args_is_help=True,
)


@app.command("set")
def set_label(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The version, e.g. support-triage@4.", show_default=False),
    label: str = typer.Argument(..., help="The label, e.g. production.", show_default=False),
) -> None:
    """Point LABEL at the version REF resolves to (recorded in the audit log)."""
    move = state(ctx).registry.set_label(ref, label)
    if move.action == "unchanged":
        out.print(f"{move.name}@{move.label} already points to version {move.to_version}")
    elif move.from_version is None:
        out.print(f"{move.name}@{move.label} → {move.to_version}")
    else:
        out.print(f"{move.name}@{move.label}: {move.from_version} → {move.to_version}")


@app.command("list")
def list_labels(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The artifact name.", show_default=False),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show which version each label of NAME points to."""
    states = state(ctx).registry.labels(name)
    if as_json:
        print_json([asdict(s) for s in states])
        return
    if not states:
        out.print(f"{name} has no labels yet. Set one with: lockgate label set {name}@1 dev")
        return
    table = Table("label", "version", "moved by", "moved at")
    for s in states:
        table.add_row(s.label, str(s.version), s.updated_by, when(s.updated_at))
    out.print(table)
