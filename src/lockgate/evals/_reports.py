"""Run reports as files: JSON (for machines), JUnit XML (for CI), HTML (for people).

All three render one `RunReport`. JSON mirrors the dataclasses field for field, so
`from_json(to_json(report))` gives the report back (a NaN comes back from ``null``).

JUnit has one verdict per test, but a case has several attempts, so a case counts as
failing when fewer than half its attempts passed (the rule `compare` uses); a flaky case
that mostly passed is a passing test whose ``<system-out>`` says it is flaky. A case
whose every attempt errored is an ``<error>``, one awaiting human review is
``<skipped>``, and a last test named ``gate`` fails when the gate does: CI pages show
the gate's verdict next to the cases that explain it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from lockgate.evals._format import failed_reasons, format_number
from lockgate.evals._stats import CASE_PASS_RATE
from lockgate.evals._types import (
    AttemptResult,
    CaseSummary,
    Comparison,
    GateCheck,
    Output,
    RunReport,
    Score,
    ScoreRecord,
)

__all__ = ["SCHEMA", "from_json", "to_json", "write_html", "write_json", "write_junit"]

SCHEMA = "lockgate.run-report/1"
_MESSAGE_LIMIT = 300
# Characters XML 1.0 cannot carry at all, even escaped (NUL, ESC, other C0 controls,
# lone surrogates); model output contains them more often than one would think.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def to_json(report: RunReport) -> dict[str, Any]:
    """The report as plain JSON data: Decimal → string, tuple → list, NaN → null."""
    data = _jsonable(report)
    assert isinstance(data, dict)
    return {"schema": SCHEMA, **data}


def write_json(report: RunReport, path: str | Path) -> Path:
    """Write `to_json(report)` to `path` as strict UTF-8 JSON; return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2) + b"\n")
    return target


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)  # orjson's integer range
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Field by field: dataclasses.asdict deep-copies everything first, 10x slower.
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return _jsonable(tolist())
    return str(value)


def from_json(data: Mapping[str, Any]) -> RunReport:
    """Rebuild a `RunReport` from `to_json` output (for instance a baseline report file).

    Raises:
        ValueError: `data` is not a lockgate run report.
    """
    if data.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document (schema: {data.get('schema')!r})")
    comparison = data.get("comparison")
    return RunReport(
        run_id=data["run_id"],
        suite=data["suite"],
        target=data["target"],
        status=data["status"],
        started_at=data["started_at"],
        finished_at=data.get("finished_at"),
        duration_s=_float(data["duration_s"]),
        repeats=int(data["repeats"]),
        cases=[_case(c) for c in data["cases"]],
        pass_rate=_float(data["pass_rate"]),
        pass_rate_interval=_pair(data["pass_rate_interval"]),
        attempts=int(data["attempts"]),
        errored=int(data["errored"]),
        metrics={str(k): _float(v) for k, v in data["metrics"].items()},
        gate=[GateCheck(g["name"], bool(g["passed"]), g["detail"]) for g in data["gate"]],
        gate_passed=bool(data["gate_passed"]),
        comparison=_comparison(comparison) if comparison is not None else None,
        warnings=list(data["warnings"]),
        manifest=dict(data["manifest"]),
        total_input_tokens=int(data.get("total_input_tokens", 0)),
        total_output_tokens=int(data.get("total_output_tokens", 0)),
        total_cost_usd=_decimal(data.get("total_cost_usd")),
        latency_p50_ms=data.get("latency_p50_ms"),
        latency_p95_ms=data.get("latency_p95_ms"),
    )


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _pair(value: Any) -> tuple[float, float]:
    low, high = value
    return _float(low), _float(high)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _case(data: Mapping[str, Any]) -> CaseSummary:
    fields = {**data, "attempts": [_attempt(a) for a in data["attempts"]]}
    fields["pass_rate"] = _float(data["pass_rate"])
    fields["mean_score"] = _float(data["mean_score"])
    return CaseSummary(**fields)


def _attempt(data: Mapping[str, Any]) -> AttemptResult:
    out = {**data["output"]}
    out["latency_ms"] = _float(out.get("latency_ms", 0.0))
    out["cost_usd"] = _decimal(out.get("cost_usd"))
    scores = [
        ScoreRecord(
            scorer=r["scorer"],
            score=Score(**{**r["score"], "value": _float(r["score"]["value"])}),
            weight=_float(r.get("weight", 1.0)),
        )
        for r in data["scores"]
    ]
    return AttemptResult(
        data["case_id"], int(data["attempt"]), Output(**out), scores, data["status"]
    )


def _comparison(data: Mapping[str, Any]) -> Comparison:
    return Comparison(
        **{
            **data,
            "p_value": _float(data["p_value"]),
            "mean_diff": _float(data["mean_diff"]),
            "mean_diff_interval": _pair(data["mean_diff_interval"]),
        }
    )


def write_junit(report: RunReport, path: str | Path) -> Path:
    """Write the report as JUnit XML (one testsuite, a testcase per case plus ``gate``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(junit_element(report)).write(target, encoding="utf-8", xml_declaration=True)
    return target


def junit_element(report: RunReport) -> ET.Element:
    """The JUnit ``<testsuites>`` tree of `report` (see the module docstring)."""
    suite = ET.Element("testsuite", name=_xml(report.suite))
    properties = ET.SubElement(suite, "properties")
    for name, value in _junit_properties(report):
        ET.SubElement(properties, "property", name=name, value=_xml(value))
    counts = {"failure": 0, "error": 0, "skipped": 0}
    for case in report.cases:
        element = ET.SubElement(
            suite,
            "testcase",
            classname=_xml(report.suite),
            name=_xml(case.case_id),
            time=_seconds(sum(a.output.latency_ms for a in case.attempts) / 1000),
        )
        outcome = _junit_outcome(case)
        if outcome is not None:
            kind, message = outcome
            counts[kind] += 1
            child = ET.SubElement(element, kind, message=_xml(_cut(message)))
            if kind != "skipped":
                child.set("type", case.status)
                child.text = _xml(_attempt_log(case))
        if case.status != "passed" and (outcome is None or outcome[0] == "skipped"):
            ET.SubElement(element, "system-out").text = _xml(_attempt_log(case))
    gate = ET.SubElement(suite, "testcase", classname=_xml(report.suite), name="gate", time="0")
    log = "\n".join(f"{'✓' if c.passed else '✗'} {c.detail}" for c in report.gate)
    if not report.gate_passed:
        counts["failure"] += 1
        failing = "; ".join(c.detail for c in report.gate if not c.passed)
        reason = failing or f"run {report.status}"
        failure = ET.SubElement(gate, "failure", message=_xml(_cut(reason)), type="gate")
        failure.text = _xml(log or reason)
    elif report.status == "awaiting_review":
        counts["skipped"] += 1
        ET.SubElement(gate, "skipped", message="gate awaits human review")
    else:
        ET.SubElement(gate, "system-out").text = _xml(log or "no gate conditions")
    totals = {
        "tests": str(len(report.cases) + 1),
        "failures": str(counts["failure"]),
        "errors": str(counts["error"]),
        "skipped": str(counts["skipped"]),
        "time": _seconds(report.duration_s),
    }
    suite.attrib.update(totals)
    suite.set("timestamp", _xml(report.started_at))
    root = ET.Element("testsuites", {"name": "lockgate", **totals})
    root.append(suite)
    ET.indent(root)
    return root


def _junit_properties(report: RunReport) -> list[tuple[str, str]]:
    low, high = report.pass_rate_interval
    props = [
        ("run_id", report.run_id),
        ("target", report.target),
        ("status", report.status),
        ("repeats", str(report.repeats)),
        ("pass_rate", format_number(report.pass_rate, 4)),
        ("pass_rate_interval", f"{format_number(low, 4)}..{format_number(high, 4)}"),
        ("attempts", str(report.attempts)),
        ("errored_attempts", str(report.errored)),
    ]
    props += [(f"metric.{k}", format_number(v, 6)) for k, v in sorted(report.metrics.items())]
    if report.comparison is not None:
        comp = report.comparison
        props += [
            ("baseline", f"{comp.baseline_label} ({comp.baseline_run_id})"),
            ("baseline.p_value", format_number(comp.p_value, 4)),
            ("baseline.significant_regression", str(comp.significant_regression).lower()),
        ]
    props += [(f"warning.{i}", w) for i, w in enumerate(report.warnings, 1)]
    return props


def _junit_outcome(case: CaseSummary) -> tuple[str, str] | None:
    """(element, message) for a case that did not pass, None for one that did."""
    passed = sum(1 for a in case.attempts if a.status == "passed")
    tally = f"{passed} of {len(case.attempts)} attempts passed"
    if case.status == "errored":
        first = next((a.output.error for a in case.attempts if a.output.error), None)
        return "error", f"every attempt errored: {first or 'no error message'}"
    if case.status == "pending_review":
        return "skipped", "awaiting human review"
    if case.status == "passed" or (case.status == "flaky" and case.pass_rate >= CASE_PASS_RATE):
        return None
    reasons = next((r for a in case.attempts if (r := failed_reasons(a))), [])
    head = "flaky: " if case.flaky else ""
    return "failure", f"{head}{tally}" + (f": {reasons[0]}" if reasons else "")


def _attempt_log(case: CaseSummary) -> str:
    """Per attempt: its status, the reasons of scorers that failed, a preview of output."""
    passed = sum(1 for a in case.attempts if a.status == "passed")
    lines = [
        f"{case.status}{' (flaky)' if case.flaky and case.status != 'flaky' else ''}: "
        f"{passed} of {len(case.attempts)} attempts passed"
    ]
    for attempt in case.attempts:
        lines.append(f"attempt {attempt.attempt}: {attempt.status}")
        lines += [f"  {reason}" for reason in failed_reasons(attempt)]
        if attempt.status != "passed" and attempt.output.text:
            lines.append(f"  output: {_cut(' '.join(attempt.output.text.split()))}")
    return "\n".join(lines)


def _cut(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _xml(text: str) -> str:
    """`text` with characters XML 1.0 cannot represent replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def _seconds(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "0"


def write_html(report: RunReport, path: str | Path) -> Path:
    """Write one self-contained HTML page (no external assets, no network) for people."""
    from lockgate.evals._html import render_html

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(report), encoding="utf-8")
    return target
