"""Commands on artifacts: push, list, show, diff, rollback."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from lockgate.cli._common import JSON_OPTION, out, print_json, state, when
from lockgate.registry import KINDS


def push(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        ..., help="Artifact YAML files, or directories to search recursively.", show_default=False
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register artifact files as new immutable versions.

    Each YAML file names its kind and version with one id field ending in -vN
    (prompt_id: support-triage-v4 is version 4 of the prompt support-triage). Pushing the
    same content again changes nothing; different content under an existing version is
    refused. All files go in one transaction: one bad file and nothing is written.

    Example: lockgate push examples/
    """
    report = state(ctx).registry.push(paths)
    if as_json:
        print_json(
            {
                "results": [asdict(r) for r in report.results],
                "skipped": [str(p) for p in report.skipped],
            }
        )
        return
    for result in report.results:
        if result.status == "created":
            out.print(
                f"[green]pushed[/]    {result.kind:<8} {result.ref}  sha256:{result.digest[:12]}"
            )
        else:
            out.print(
                f"[dim]unchanged[/] {result.kind:<8} {result.ref}  "
                "(identical content already registered)"
            )
    for skipped in report.skipped:
        out.print(f"[dim]skipped   {escape(str(skipped))} (no *_id field: not an artifact)[/]")
    created = len(report.created)
    out.print(
        f"{created} new version{'s' if created != 1 else ''}, "
        f"{len(report.results) - created} unchanged"
    )


def list_artifacts(
    ctx: typer.Context,
    kind: str | None = typer.Argument(
        None, help=f"Only this kind: {', '.join(KINDS)}.", show_default=False
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """List artifacts with their latest version and labels."""
    summaries = state(ctx).registry.list(kind)
    if as_json:
        print_json([asdict(s) for s in summaries])
        return
    if not summaries:
        out.print("No artifacts yet. Push some with: lockgate push PATH")
        return
    table = Table("kind", "name", "latest", "versions", "labels", "updated")
    for s in summaries:
        labels = ", ".join(f"{label}→{version}" for label, version in s.labels.items())
        table.add_row(s.kind, s.name, str(s.latest), str(s.versions), labels, when(s.updated_at))
    out.print(table)


def show(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., help="NAME@VERSION, NAME@LABEL, NAME@latest or NAME.", show_default=False
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one version: lineage, labels and canonical content."""
    version = state(ctx).registry.get(ref)
    if as_json:
        data = asdict(version)
        data["files"] = {k: asdict(v) for k, v in version.files.items()}
        print_json(data)
        return
    out.print(f"[bold]{version.kind} {version.ref}[/]")
    out.print(f"  sha256   {version.digest}")
    out.print(f"  labels   {', '.join(version.labels) or '-'}")
    out.print(f"  author   {version.author}, {when(version.created_at)}")
    out.print(f"  source   {escape(version.source_path or '-')}")
    commit = version.git_commit or "-"
    if version.git_dirty:
        commit += " (file had uncommitted changes)"
    out.print(f"  git      {commit}")
    for field, blob in version.files.items():
        out.print(f"  {field:<8} sha256:{blob.sha256[:12]} ({blob.size:,} bytes)")
    out.print()
    out.print(Syntax(version.canonical_yaml(), "yaml", background_color="default"))


def diff(
    ctx: typer.Context,
    ref_a: str = typer.Argument(
        ..., help="The old version, e.g. support-triage@3.", show_default=False
    ),
    ref_b: str = typer.Argument(
        ..., help="The new version, e.g. support-triage@4.", show_default=False
    ),
) -> None:
    """Unified diff of two versions' canonical YAML (exit 1 when they differ, like diff)."""
    text = state(ctx).registry.diff(ref_a, ref_b)
    if not text:
        out.print("identical")
        return
    out.print(Syntax(text, "diff", background_color="default"))
    raise typer.Exit(1)


def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The artifact name.", show_default=False),
    label: str = typer.Option(
        ..., "--label", "-l", help="The label to move back.", show_default=False
    ),
) -> None:
    """Move a label back to the version it pointed to before its last move."""
    move = state(ctx).registry.rollback(name, label)
    out.print(f"rolled back {move.name}@{move.label}: {move.from_version} → {move.to_version}")
