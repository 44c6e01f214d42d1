"""The `lockgate` command: wires the command groups together and maps errors to exit codes.

Exit codes: 0 success, 1 a check failed (gate, audit verify, diff found changes),
2 usage or input error (bad file, bad reference), 3 runtime failure (database, upstream).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import typer
from rich.text import Text

from lockgate._version import __version__
from lockgate.cli import (
    _artifacts,
    _audit,
    _db,
    _eval,
    _labels,
    _models,
    _serve,
    _tenants,
    _traces,
)
from lockgate.cli._common import err, state
from lockgate.errors import LockgateError, UserError

app = typer.Typer(
    name="lockgate",
    help=(
        "lockgate: prompts, models and their evaluations as versioned artifacts, "
        "moved between environments through a lock.\n\n"
        "Start with: lockgate push examples/ && lockgate list"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lockgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Settings come from LOCKGATE_* variables and ./lockgate.yaml (see docs/architecture.md)."""
    state(ctx)


app.command("push")(_artifacts.push)
app.command("list")(_artifacts.list_artifacts)
app.command("show")(_artifacts.show)
app.command("diff")(_artifacts.diff)
app.command("rollback")(_artifacts.rollback)
app.command("chat")(_models.chat)
app.command("eval")(_eval.eval_command)
app.command("reproduce")(_eval.reproduce_command)
app.command("serve")(_serve.serve)
app.command("usage")(_traces.usage_command)
app.add_typer(_tenants.tenants_app, name="tenants")
app.add_typer(_tenants.keys_app, name="keys")
app.add_typer(_traces.traces_app, name="traces")
app.add_typer(_eval.runs_app, name="runs")
app.add_typer(_eval.review_app, name="review")
app.add_typer(_labels.app, name="label")
app.add_typer(_models.app, name="models")
app.add_typer(_audit.app, name="audit")
app.add_typer(_db.app, name="db")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="lockgate")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except LockgateError as exc:
        _report("error" if isinstance(exc, UserError) else "failed", str(exc))
        return exc.exit_code
    except Exception as exc:
        # A bug or an unexpected library error: one line, exit 3 (never 1, which means a
        # check failed), and the traceback on request.
        if os.environ.get("LOCKGATE_DEBUG"):
            traceback.print_exc()
        _report(
            "internal error",
            f"{type(exc).__name__}: {exc} (set LOCKGATE_DEBUG=1 for the traceback, "
            "and please report it)",
        )
        return 3
    return 0


def _report(prefix: str, message: str) -> None:
    for line in message.splitlines() or [prefix]:
        # User text (paths, references) may contain [brackets]: never parse it as markup.
        err.print(Text.assemble((f"{prefix}:", "red"), " ", line), highlight=False)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
