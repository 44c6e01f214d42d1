"""The HTML run report: one self-contained page a person can read and pass around.

Everything is inline (CSS, a few lines of optional JavaScript for sorting and
filtering, the SVG interval bar), so the file opens offline and from a CI artifact
store. Every piece of user content goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import jinja2

from lockgate.accounting import format_usd
from lockgate.evals._format import failed_reasons, format_number, signed
from lockgate.evals._html_template import TEMPLATE
from lockgate.evals._stats import DEFAULT_CONFIDENCE, attempt_counts
from lockgate.evals._types import AttemptResult, CaseSummary, RunReport

__all__ = ["render_html"]

_OUTPUT_PREVIEW = 240
_FULL_TEXT_LIMIT = 4_000
_ORDER = {"failed": 1, "errored": 2, "flaky": 3, "pending_review": 4, "passed": 5}
_CONDITION = re.compile(r"(>=|>|<=|<|==)\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
_BAR_LEFT, _BAR_WIDTH = 12.0, 336.0


def render_html(report: RunReport) -> str:
    """The report as one HTML document."""
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.from_string(TEMPLATE).render(view(report))


def view(report: RunReport) -> dict[str, Any]:
    """What the template shows, already computed and formatted."""
    counts = attempt_counts(report.cases)
    newly_failing = set(report.comparison.newly_failing) if report.comparison else set()
    cases = sorted(
        report.cases,
        key=lambda c: (
            c.case_id not in newly_failing,
            _ORDER.get(c.status, 0),
            c.pass_rate,
            c.case_id,
        ),
    )
    anchors = {c.case_id: f"case-{i}" for i, c in enumerate(cases, 1)}
    by_status: dict[str, int] = {}
    for case in report.cases:
        by_status[case.status] = by_status.get(case.status, 0) + 1
    return {
        "r": report,
        "level": f"{DEFAULT_CONFIDENCE * 100:g}%",
        "rate": format_number(report.pass_rate),
        "low": format_number(report.pass_rate_interval[0]),
        "high": format_number(report.pass_rate_interval[1]),
        "passed_attempts": counts["passed"],
        "decided_attempts": counts["passed"] + counts["failed"] + counts["errored"],
        "pending_attempts": counts["pending_review"],
        "bar": _bar(report),
        "by_status": by_status,
        "comparison": _comparison(report, anchors),
        "metrics": [(k, format_number(v, 4)) for k, v in sorted(report.metrics.items())],
        "totals": _totals(report),
        "cases": [_case_row(c, anchors[c.case_id], c.case_id in newly_failing) for c in cases],
        "manifest": json.dumps(report.manifest, indent=2, sort_keys=True, default=str),
    }


def _threshold(report: RunReport) -> float | None:
    """The pass-rate threshold, read back from the gate check's ``... >= 0.92`` detail."""
    for check in report.gate:
        if check.name == "pass_rate" and (match := _CONDITION.search(check.detail)):
            return float(match[2])
    return None


def _bar(report: RunReport) -> dict[str, Any]:
    """Geometry of the SVG bar: the interval, the point estimate, the gate threshold.

    The axis starts at a round number just below the interval and the threshold and
    ends at 1, so a 0.84-0.97 interval is not squeezed into the last tenth of the bar.
    """
    low, high = report.pass_rate_interval
    threshold = _threshold(report)
    lowest = min(v for v in (low, report.pass_rate, threshold) if v is not None and v == v)
    start = max(0.0, math.floor((lowest - 0.02) * 10) / 10) if math.isfinite(lowest) else 0.0
    span = 1.0 - start
    step = 0.05 if span <= 0.3 else 0.1 if span <= 0.6 else 0.25

    def x(value: float) -> float:
        clamped = min(1.0, max(start, value))
        return round(_BAR_LEFT + (clamped - start) / span * _BAR_WIDTH, 1)

    count = round(span / step)
    ticks = [(x(start + i * step), format_number(start + i * step, 2)) for i in range(count + 1)]
    rate_ok = report.pass_rate == report.pass_rate
    return {
        "low": x(low),
        "width": max(1.0, x(high) - x(low)),
        "rate": x(report.pass_rate) if rate_ok else None,
        "threshold": x(threshold) if threshold is not None else None,
        "threshold_label": format_number(threshold) if threshold is not None else "",
        "ticks": ticks,
        "left": _BAR_LEFT,
        "right": _BAR_LEFT + _BAR_WIDTH,
    }


def _comparison(report: RunReport, anchors: dict[str, str]) -> dict[str, Any] | None:
    comp = report.comparison
    if comp is None:
        return None
    low, high = comp.mean_diff_interval
    return {
        "c": comp,
        "p_value": _p_value(comp.p_value),
        "mean_diff": signed(comp.mean_diff),
        "low": signed(low),
        "high": signed(high),
        "newly_failing": [(case, anchors.get(case)) for case in comp.newly_failing],
        "newly_passing": [(case, anchors.get(case)) for case in comp.newly_passing],
    }


def _p_value(value: float) -> str:
    if value != value:
        return "n/a"
    return "< 0.001" if value < 0.001 else format_number(value)


def _totals(report: RunReport) -> list[tuple[str, str]]:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.0f} ms"

    return [
        ("Cases", f"{len(report.cases):,}"),
        ("Attempts", f"{report.attempts:,} ({report.repeats} per case)"),
        ("Errored attempts", f"{report.errored:,}"),
        ("Input tokens", f"{report.total_input_tokens:,}"),
        ("Output tokens", f"{report.total_output_tokens:,}"),
        ("Cost", format_usd(report.total_cost_usd)),
        ("Latency p50 / p95", f"{ms(report.latency_p50_ms)} / {ms(report.latency_p95_ms)}"),
        ("Duration", f"{report.duration_s:,.1f} s"),
    ]


def _case_row(case: CaseSummary, anchor: str, newly_failing: bool) -> dict[str, Any]:
    shown = _shown_attempt(case)
    output = ""
    if shown is not None:
        output = shown.output.text or (f"error: {shown.output.error}" if shown.output.error else "")
    reasons = failed_reasons(shown) if shown is not None else []
    passed = sum(1 for a in case.attempts if a.status == "passed")
    return {
        "id": case.case_id,
        "anchor": anchor,
        "status": case.status,
        "label": case.status.replace("_", " "),
        "flaky": case.flaky,
        "newly_failing": newly_failing,
        "tally": f"{passed}/{len(case.attempts)}",
        "rate": case.pass_rate,
        "score": format_number(case.mean_score, 2),
        "score_value": case.mean_score if case.mean_score == case.mean_score else -1.0,
        "dots": [_dot(a) for a in case.attempts],
        "input": _text(case.input_preview),
        "expected": _text(case.expected_preview),
        "output": _text(output),
        "output_attempt": shown.attempt if shown is not None and case.status != "passed" else None,
        "reasons": reasons,
    }


def _shown_attempt(case: CaseSummary) -> AttemptResult | None:
    """The attempt worth reading: the first one that did not pass, else the first."""
    for attempt in case.attempts:
        if attempt.status in ("failed", "errored"):
            return attempt
    for attempt in case.attempts:
        if attempt.status != "passed":
            return attempt
    return case.attempts[0] if case.attempts else None


def _dot(attempt: AttemptResult) -> dict[str, str]:
    status = attempt.status if attempt.status in _ORDER else "errored"
    title = f"attempt {attempt.attempt}: {status.replace('_', ' ')}"
    if status != "errored" and attempt.scores:
        title += f" (score {format_number(attempt.weighted_score, 2)})"
    return {"status": status, "title": title}


def _text(text: str) -> dict[str, Any]:
    """A preview, and the full text when the preview had to cut it."""
    flat = " ".join(text.split())
    if len(flat) <= _OUTPUT_PREVIEW:
        return {"preview": flat, "full": None}
    full = text if len(text) <= _FULL_TEXT_LIMIT else text[:_FULL_TEXT_LIMIT] + "\n… (cut)"
    return {"preview": flat[: _OUTPUT_PREVIEW - 1] + "…", "full": full}
