"""`lockgate eval`, `lockgate runs`, `lockgate reproduce`, `lockgate review`."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table

from lockgate.cli._common import JSON_OPTION, err, out, print_json, state
from lockgate.errors import UserError
from lockgate.providers import CacheMode

if TYPE_CHECKING:
    from lockgate.evals import Progress as RunProgress
    from lockgate.evals import RunReport

# The evaluation stack (numpy, scipy, scikit-learn) is imported inside the commands that
# use it: every `lockgate` command, `lockgate serve` included, would otherwise pay ~40 MB of
# memory and half a second of start-up for it.

runs_app = typer.Typer(help="Evaluation runs: list, show, compare.", no_args_is_help=True)
review_app = typer.Typer(
    help="Human review queue: outputs waiting for a person's verdict.", no_args_is_help=True
)


def eval_command(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ...,
        help="A suite (support-triage-eval@4, support-triage-eval-v4, or a suite YAML file), "
        "or a prompt/model whose eval_suite names one (support-triage@5).",
        show_default=False,
    ),
    target: str | None = typer.Option(
        None, "--target", help="Evaluate this prompt/model version instead of the suite's target."
    ),
    repeats: int | None = typer.Option(None, "--repeats", "-r", min=1, help="Override repeats."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1),
    seed: int | None = typer.Option(None, "--seed", help="Override the base seed."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Call the model for every attempt."),
    replay: bool = typer.Option(
        False, "--replay", help="Answer only from recorded responses; fail on any miss."
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Compare with this run id (default: the gate's no_regression_vs)."
    ),
    json_file: Path | None = typer.Option(None, "--json", help="Write the JSON report here."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML (one test per case)."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run an evaluation suite and decide its gate.

    Exit code 0 when the gate passes, 1 when it fails (or awaits human review),
    2 on a usage or configuration error, 3 on a runtime failure. Ctrl-C stops cleanly and
    keeps the partial run, marked incomplete.

    Example: lockgate eval support-triage-eval-v4 --html report.html --junit junit.xml
    """
    from lockgate.evals import RunStore, arun_suite

    if no_cache and replay:
        raise UserError("--no-cache and --replay contradict each other; pick one")
    cache: CacheMode | None = "replay" if replay else "off" if no_cache else None
    for path in (json_file, junit, html):
        _check_writable(path)
    cli = state(ctx)
    if baseline is not None:
        RunStore(cli.registry.store).get(baseline)  # fail now, not after the whole run
    ref = _pushed_if_file(cli.registry, ref)
    with _progress(quiet) as (progress, on_progress):
        try:
            report = asyncio.run(
                arun_suite(
                    ref,
                    target=target,
                    settings=cli.settings,
                    registry=cli.registry,
                    cache=cache,
                    repeats=repeats,
                    concurrency=concurrency,
                    seed=seed,
                    baseline_run=baseline,
                    on_progress=on_progress,
                )
            )
        except KeyboardInterrupt:
            progress.stop()
            err.print(
                "[yellow]interrupted[/]: the partial run is kept as incomplete (lockgate runs list)"
            )
            raise typer.Exit(130) from None
    _emit(report, json_file=json_file, junit=junit, html=html)
    if report.status == "awaiting_review":
        err.print(f"awaiting human review: see lockgate review list --run {report.run_id[:12]}")
    if report.status == "errored":
        # Nothing was scored: a runtime failure (upstream down, timeouts), not a verdict.
        reasons = Counter(
            a.output.error for c in report.cases for a in c.attempts if a.output.error
        )
        for reason, count in reasons.most_common(5):
            err.print(f"failed: {count} × {reason}", markup=False)
        raise typer.Exit(3)
    raise typer.Exit(0 if report.gate_passed else 1)


def _check_writable(path: Path | None) -> None:
    """Refuse a report path that cannot be written before spending a run on it."""
    if path is None:
        return
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name for the report")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: the directory {path.parent} does not exist")


def reproduce_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run to replay (id or prefix).", show_default=False),
) -> None:
    """Replay a run from the response cache; exit 0 when every score comes out identical.

    The replay uses the recorded suite and target versions, seeds and repeats, and
    answers only from recorded responses (a missing one is an error).
    """
    from lockgate.evals import reproduce

    result = reproduce(run_id, settings=state(ctx).settings)
    if result.identical:
        out.print(
            f"[green]reproduced[/]: run {result.original[:12]} replayed as "
            f"{result.replay.run_id[:12]}, {result.compared} attempts, every score identical"
        )
        return
    err.print(f"[red]not reproducible[/]: {len(result.differences)} differences")
    for line in result.differences[:50]:
        err.print(f"  {line}", markup=False)
    raise typer.Exit(1)


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    suite: str | None = typer.Option(None, "--suite", help="Only runs of this suite name."),
    limit: int = typer.Option(20, "--limit", "-n", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recent runs, newest first."""
    from lockgate.evals import RunStore

    rows = RunStore(state(ctx).registry.store).list(suite=suite, limit=limit)
    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "suite": r.suite_ref,
                    "target": r.target_ref,
                    "status": r.status,
                    "pass_rate": r.pass_rate,
                    "gate_passed": r.gate_passed,
                    "started_at": r.started_at,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        out.print("No runs yet. Start one with: lockgate eval SUITE")
        return
    table = Table(
        Column("run", no_wrap=True),
        Column("suite", overflow="fold"),
        Column("target", overflow="fold"),
        "status",
        Column("pass rate", justify="right"),
        Column("started", no_wrap=True),
        "by",
    )
    for r in rows:
        rate = "-" if r.pass_rate is None else f"{r.pass_rate:.3f}"
        started = r.started_at.astimezone().strftime("%m-%d %H:%M")
        table.add_row(
            r.id[:8], r.suite_ref, r.target_ref, _status(r.status), rate, started, r.actor
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id or prefix.", show_default=False),
    as_json: bool = JSON_OPTION,
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML."),
    html: Path | None = typer.Option(None, "--html", help="Write the HTML report."),
) -> None:
    """A stored run's report (the terminal summary, or JSON/JUnit/HTML)."""
    from lockgate.evals import RunStore
    from lockgate.evals._reports import from_json, to_json

    row = RunStore(state(ctx).registry.store).get(run_id)
    if row.report is None:
        raise UserError(f"run {row.id[:12]} has no report yet (status: {row.status})")
    report = from_json(row.report)
    if as_json:
        print_json(to_json(report))
        return
    _emit(report, json_file=None, junit=junit, html=html)


@runs_app.command("compare")
def runs_compare(
    ctx: typer.Context,
    baseline: str = typer.Argument(..., help="The earlier run (baseline).", show_default=False),
    candidate: str = typer.Argument(..., help="The later run.", show_default=False),
) -> None:
    """Paired comparison of two runs on their shared cases (McNemar, bootstrap)."""
    from lockgate.evals import RunStore
    from lockgate.evals._stats import case_pass_rates, compare

    runs = RunStore(state(ctx).registry.store)
    before, after = runs.get(baseline), runs.get(candidate)
    result = compare(
        case_pass_rates(runs.attempts(after.id)),
        case_pass_rates(runs.attempts(before.id)),
        baseline_run_id=before.id,
        baseline_label=f"run {before.id[:12]}",
    )
    out.print(
        f"[bold]{after.id[:12]}[/] ({after.target_ref}) vs [bold]{before.id[:12]}[/] "
        f"({before.target_ref}) on {result.paired_cases} shared cases"
    )
    lo, hi = result.mean_diff_interval
    out.print(f"  mean score change {result.mean_diff:+.3f} (95% interval {lo:+.3f} to {hi:+.3f})")
    out.print(
        f"  newly failing {len(result.newly_failing)}, newly passing "
        f"{len(result.newly_passing)}, McNemar exact p = {result.p_value:.3g}"
    )
    for case in result.newly_failing[:20]:
        out.print(f"  [red]✗ {case}[/]")
    for case in result.newly_passing[:20]:
        out.print(f"  [green]✓ {case}[/]")
    verdict = (
        "[red]significant regression[/]"
        if result.significant_regression
        else "no significant regression"
    )
    out.print(f"  {verdict}")
    if result.significant_regression:
        raise typer.Exit(1)


@review_app.command("list")
def review_list(
    ctx: typer.Context,
    run_id: str | None = typer.Option(None, "--run", help="Only this run (id or prefix)."),
    show_all: bool = typer.Option(False, "--all", help="Include reviewed items."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Outputs waiting for a human verdict."""
    from lockgate.evals import RunStore

    runs = RunStore(state(ctx).registry.store)
    full_id = runs.get(run_id).id if run_id else None
    items = runs.reviews(run_id=full_id, status=None if show_all else "pending")
    if as_json:
        print_json([item.__dict__ for item in items])
        return
    if not items:
        out.print("Nothing to review.")
        return
    for item in items:
        out.print(
            f"[bold]#{item.id}[/] run {item.run_id[:12]} case {item.case_id} "
            f"attempt {item.attempt} {escape(f'[{item.status}]')}"
        )
        if item.instructions:
            out.print(f"  [dim]instructions:[/] {escape(item.instructions)}")
        out.print(f"  input:    {item.input or '-'}", markup=False)
        out.print(f"  expected: {item.expected or '-'}", markup=False)
        out.print(f"  output:   {item.output}", markup=False)
    out.print("\nSubmit with: lockgate review submit ID --pass|--fail [--score X] [--comment ...]")


@review_app.command("submit")
def review_submit(
    ctx: typer.Context,
    item_id: int = typer.Argument(
        ..., help="The review item (# in review list).", show_default=False
    ),
    passed: bool = typer.Option(
        ..., "--pass/--fail", help="Your verdict on the output.", show_default=False
    ),
    score: float | None = typer.Option(None, "--score", min=0.0, max=1.0, help="0..1 score."),
    comment: str | None = typer.Option(None, "--comment", help="Why."),
) -> None:
    """Record a verdict; when the run's last pending item is reviewed its gate is decided."""
    from lockgate.evals import RunStore
    from lockgate.evals._review import refresh_run

    cli = state(ctx)
    runs = RunStore(cli.registry.store)
    item = runs.submit_review(
        item_id, passed=passed, score=score, comment=comment, reviewer=cli.registry.actor
    )
    report = refresh_run(cli.registry, item.run_id)
    remaining = len(runs.reviews(run_id=item.run_id, status="pending"))
    out.print(
        f"#{item.id} {item.status}; run {item.run_id[:12]} is now {_status(report.status)}"
        f" ({remaining} left to review)"
    )


def _emit(
    report: RunReport, *, json_file: Path | None, junit: Path | None, html: Path | None
) -> None:
    from lockgate.evals._reports import write_html, write_json, write_junit
    from lockgate.evals._terminal import render_summary

    render_summary(report, out)
    for path, writer, kind in (
        (json_file, write_json, "JSON"),
        (junit, write_junit, "JUnit"),
        (html, write_html, "HTML"),
    ):
        if path is not None:
            writer(report, path)
            out.print(f"[dim]{kind} report: {path}[/]")


def _status(status: str) -> str:
    colour = {
        "passed": "green",
        "failed": "red",
        "incomplete": "yellow",
        "awaiting_review": "yellow",
        "errored": "red",
        "running": "cyan",
    }.get(status, "white")
    return f"[{colour}]{status}[/]"


def _pushed_if_file(registry: object, ref: str) -> str:
    path = Path(ref)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        return ref
    from lockgate.registry import Registry

    assert isinstance(registry, Registry)
    [result] = registry.push([path]).results
    err.print(f"[dim]{result.status} {result.kind} {result.ref}[/]")
    return result.ref


class _progress:
    """A rich progress bar with ETA and the live pass rate (or nothing when quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.bar = Progress(
            TextColumn("[bold]eval[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pass {task.fields[rate]}"),
            TextColumn("[red]{task.fields[errors]} errors[/]"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=quiet,
            transient=False,
        )
        self.task = self.bar.add_task("eval", total=None, rate="-", errors=0)

    def __enter__(self) -> tuple[Progress, Callable[[RunProgress], None]]:
        self.bar.start()
        return self.bar, self.update

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(self, p: RunProgress) -> None:
        rate = "-" if math.isnan(p.pass_rate) else f"{p.pass_rate:.0%}"
        self.bar.update(self.task, completed=p.done, total=p.total, rate=rate, errors=p.errored)
