"""`lockgate db`: schema migrations (also applied automatically on first use)."""

from __future__ import annotations

import typer

from lockgate.cli._common import out, state
from lockgate.store import Store

app = typer.Typer(help="Database schema: show and apply migrations.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    revision: str = typer.Argument("head", help="Target revision."),
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    store = Store.open(state(ctx).settings, migrate=False)
    try:
        store.upgrade(revision)
        current, _ = store.revisions()
    finally:
        store.close()
    out.print(f"database at revision {current} ({store.engine.url.render_as_string()})")


@app.command("downgrade")
def downgrade(
    ctx: typer.Context,
    revision: str = typer.Argument(
        ..., help="Target revision ('base' removes every table).", show_default=False
    ),
) -> None:
    """Revert migrations down to REVISION. Data in dropped tables is lost."""
    store = Store.open(state(ctx).settings, migrate=False)
    try:
        store.downgrade(revision)
        current, _ = store.revisions()
    finally:
        store.close()
    out.print(f"database at revision {current or 'base'}")


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Show the database's revision and the newest one this lockgate knows."""
    store = Store.open(state(ctx).settings, migrate=False)
    try:
        current, head = store.revisions()
    finally:
        store.close()
    status = "up to date" if current == head else "upgrade pending: lockgate db upgrade"
    out.print(f"database: {current or 'empty'}  newest: {head}  ({status})")
