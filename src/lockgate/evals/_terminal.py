"""The end-of-run summary in the terminal: verdict first, then what explains it.

User content (suite names, case ids, warnings) goes into `rich.text.Text` objects,
never into markup strings, so a case called ``[red]x`` prints as written.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lockgate.accounting import format_usd
from lockgate.evals._format import format_number, signed
from lockgate.evals._stats import DEFAULT_CONFIDENCE, attempt_counts
from lockgate.evals._types import Comparison, RunReport

__all__ = ["render_summary"]

_LISTED = 10
_STATUS_STYLE = {
    "passed": "bold green",
    "failed": "bold red",
    "errored": "bold magenta",
    "awaiting_review": "bold yellow",
    "pending_review": "yellow",
    "flaky": "dark_orange",
    "incomplete": "bold",
}


def render_summary(report: RunReport, console: Console) -> None:
    """Print a compact summary of `report` (fits 100 columns)."""
    console.print(
        Text.assemble(
            (report.suite, "bold"),
            " → ",
            report.target,
            "  ",
            (report.status.replace("_", " ").upper(), _STATUS_STYLE.get(report.status, "bold")),
        )
    )
    counts = attempt_counts(report.cases)
    decided = counts["passed"] + counts["failed"] + counts["errored"]
    low, high = report.pass_rate_interval
    level = f"{DEFAULT_CONFIDENCE * 100:g}%"
    line = Text.assemble(
        "pass rate ",
        (format_number(report.pass_rate), "bold"),
        f" ({level} interval {format_number(low)}\u2013{format_number(high)}) · "
        f"{counts['passed']:,}/{decided:,} attempts passed",
    )
    console.print(line)
    console.print(_case_tally(report), style="dim")
    if report.gate:
        console.print(_gate_table(report))
    else:
        console.print(Text("gate: no conditions", style="dim"))
    flaky = [c.case_id for c in report.cases if c.flaky]
    if flaky:
        console.print(_listing(f"flaky ({len(flaky)}): ", flaky, "dark_orange"))
    if report.comparison is not None:
        for text in _comparison(report.comparison):
            console.print(text)
    for warning in report.warnings:
        console.print(Text(f"⚠ {warning}", style="yellow"))
    console.print(_totals(report), style="dim")


def _case_tally(report: RunReport) -> Text:
    by_status: dict[str, int] = {}
    for case in report.cases:
        by_status[case.status] = by_status.get(case.status, 0) + 1
    parts = [f"{n:,} {status.replace('_', ' ')}" for status, n in sorted(by_status.items())]
    text = f"{len(report.cases):,} cases \u00d7 {report.repeats} repeats: "
    text += ", ".join(parts) or "none"
    if report.errored:
        text += f" · {report.errored:,} errored attempts"
    return Text(text)


def _gate_table(report: RunReport) -> Table:
    verdict = "passed" if report.gate_passed else "failed"
    table = Table(
        box=None,
        show_header=False,
        title=Text.assemble("gate ", (verdict, _STATUS_STYLE[verdict])),
        title_justify="left",
        title_style="",
        padding=(0, 1, 0, 0),
    )
    table.add_column(width=1)
    table.add_column(overflow="fold")
    for check in report.gate:
        mark = Text("✓", style="green") if check.passed else Text("✗", style="bold red")
        table.add_row(mark, Text(check.detail))
    return table


def _listing(label: str, names: list[str], style: str) -> Text:
    text = Text(label, style=style)
    text.append(", ".join(names[:_LISTED]))
    if len(names) > _LISTED:
        text.append(f", … and {len(names) - _LISTED} more", style="dim")
    return text


def _comparison(comp: Comparison) -> list[Text]:
    low, high = comp.mean_diff_interval
    p_value = "< 0.001" if comp.p_value < 0.001 else format_number(comp.p_value)
    verdict = (
        Text("significant regression", style="bold red")
        if comp.significant_regression
        else Text("no significant regression", style="green")
    )
    head = Text.assemble(
        f"vs {comp.baseline_label} (run {comp.baseline_run_id}), "
        f"{comp.paired_cases:,} paired cases: ",
        verdict,
    )
    detail = Text(
        f"  {comp.discordant_worse} newly failing, {comp.discordant_better} newly passing, "
        f"McNemar p = {p_value}; mean score change {signed(comp.mean_diff)} "
        f"({signed(low)} to {signed(high)})"
    )
    lines = [head, detail]
    if comp.newly_failing:
        lines.append(_listing("  newly failing: ", comp.newly_failing, "red"))
    return lines


def _totals(report: RunReport) -> Text:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.0f} ms"

    return Text(
        f"tokens {report.total_input_tokens:,} in / {report.total_output_tokens:,} out · "
        f"cost {format_usd(report.total_cost_usd)} · latency p50 {ms(report.latency_p50_ms)}"
        f" / p95 {ms(report.latency_p95_ms)} · {report.duration_s:,.1f} s"
    )
