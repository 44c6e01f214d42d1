"""Run reports: JSON round trip, JUnit structure, HTML content and escaping, terminal."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from lockgate.evals._reports import SCHEMA, from_json, to_json, write_html, write_json, write_junit
from lockgate.evals._stats import check, summarize_case
from lockgate.evals._terminal import render_summary
from lockgate.evals._types import (
    AttemptResult,
    CaseSummary,
    Comparison,
    Output,
    RunReport,
    Score,
    ScoreRecord,
)

SCRIPT = "<script>alert('pwned')</script>"


def attempt(
    case_id: str, n: int, status: str, text: str = "billing", **output: object
) -> AttemptResult:
    if status == "errored":
        return AttemptResult(
            case_id,
            n,
            Output(text="", error="Timeout: upstream did not answer in 120 s"),
            [],
            status,
        )
    if status == "pending_review":
        scores = [ScoreRecord("human", Score(math.nan, False, "awaiting review"))]
    else:
        ok = status == "passed"
        reason = None if ok else f"expected 'billing', got {text!r}"
        scores = [
            ScoreRecord("json_valid", Score(1.0, True)),
            ScoreRecord("exact_match", Score(1.0 if ok else 0.0, ok, reason), weight=2.0),
        ]
    defaults: dict[str, object] = {
        "latency_ms": 250.0 * n,
        "cost_usd": Decimal("0.000105"),
        "input_tokens": 100,
        "output_tokens": 10,
    }
    return AttemptResult(case_id, n, Output(text=text, **{**defaults, **output}), scores, status)  # type: ignore[arg-type]


def summary(case_id: str, *attempts: AttemptResult, input_preview: str = "") -> CaseSummary:
    return summarize_case(
        case_id, list(attempts), input_preview=input_preview, expected_preview="billing"
    )


def make_report(**changes: object) -> RunReport:
    cases = [
        summary("ok-1", attempt("ok-1", 1, "passed"), attempt("ok-1", 2, "passed")),
        summary(
            "flaky-mostly",
            attempt("flaky-mostly", 1, "passed"),
            attempt("flaky-mostly", 2, "failed", "technical"),
            attempt("flaky-mostly", 3, "passed"),
        ),
        summary(
            "flaky-rarely",
            attempt("flaky-rarely", 1, "failed", "account"),
            attempt("flaky-rarely", 2, "failed", "other"),
            attempt("flaky-rarely", 3, "passed"),
        ),
        summary(
            "fail-1",
            attempt("fail-1", 1, "failed", f"Voilà {SCRIPT} ünïcødé ✓ \x00\x1b[31m"),
            attempt("fail-1", 2, "failed", "technical"),
            input_preview=f"Refund {SCRIPT} please",
        ),
        summary("err-1", attempt("err-1", 1, "errored"), attempt("err-1", 2, "errored")),
        summary(
            "review-1", attempt("review-1", 1, "passed"), attempt("review-1", 2, "pending_review")
        ),
    ]
    comparison = Comparison(
        baseline_run_id="run-base-1",
        baseline_label="production (support-triage@4)",
        paired_cases=6,
        newly_failing=["fail-1", "flaky-rarely"],
        newly_passing=[],
        discordant_worse=2,
        discordant_better=0,
        p_value=0.5,
        mean_diff=-0.25,
        mean_diff_interval=(-0.5, -0.04),
        significant_regression=True,
    )
    fields: dict[str, object] = {
        "run_id": "run-123",
        "suite": "support-triage-eval@4",
        "target": "support-triage@5",
        "status": "failed",
        "started_at": "2024-11-09T10:21:33+00:00",
        "finished_at": "2024-11-09T10:23:02+00:00",
        "duration_s": 89.4,
        "repeats": 3,
        "cases": cases,
        "pass_rate": 0.5,
        "pass_rate_interval": (0.2513, 0.7487),
        "attempts": 14,
        "errored": 2,
        "metrics": {"exact_match": 0.5, "f1": 0.625, "judge_human_kappa": math.nan},
        "gate": [check("pass_rate", 0.5, ">= 0.9"), check("f1", 0.625, ">= 0.6")],
        "gate_passed": False,
        "comparison": comparison,
        "warnings": [f"warning with {SCRIPT}", "the suite is too small"],
        "manifest": {"seed": 0, "model": "gpt-4o-mini-2024-07-18", "repeats": 3},
        "total_input_tokens": 1234,
        "total_output_tokens": 120,
        "total_cost_usd": Decimal("0.001260"),
        "latency_p50_ms": 500.0,
        "latency_p95_ms": 950.0,
    }
    fields.update(changes)
    return RunReport(**fields)  # type: ignore[arg-type]


# --- JSON ----------------------------------------------------------------------------


def test_json_is_strict_and_plain() -> None:
    data = to_json(make_report())
    text = json.dumps(data, allow_nan=False)  # raises on NaN or non-JSON types
    assert data["schema"] == SCHEMA
    assert data["total_cost_usd"] == "0.001260"
    assert data["pass_rate_interval"] == [0.2513, 0.7487]
    assert data["metrics"]["judge_human_kappa"] is None
    assert data["cases"][0]["attempts"][0]["output"]["cost_usd"] == "0.000105"
    pending = data["cases"][5]["attempts"][1]["scores"][0]["score"]
    assert pending["value"] is None and pending["reason"] == "awaiting review"
    assert SCRIPT in text  # JSON carries content as is; escaping is the renderer's job


def test_json_round_trip(tmp_path: Path) -> None:
    report = make_report(metrics={"f1": 0.625})
    path = write_json(report, tmp_path / "out" / "report.json")
    loaded = from_json(json.loads(path.read_text(encoding="utf-8")))
    without_nan_scores = [
        dataclasses.replace(c, attempts=[a for a in c.attempts if a.status != "pending_review"])
        for c in loaded.cases
    ]
    original = [
        dataclasses.replace(c, attempts=[a for a in c.attempts if a.status != "pending_review"])
        for c in report.cases
    ]
    assert without_nan_scores == original  # NaN != NaN, so the pending score is compared below
    assert dataclasses.replace(loaded, cases=[]) == dataclasses.replace(report, cases=[])
    assert math.isnan(loaded.cases[5].attempts[1].scores[0].score.value)
    assert loaded.total_cost_usd == Decimal("0.001260")
    assert loaded.pass_rate_interval == (0.2513, 0.7487)
    assert to_json(loaded) == to_json(report)


def test_json_turns_nan_back_into_nan() -> None:
    loaded = from_json(json.loads(json.dumps(to_json(make_report(pass_rate=math.nan)))))
    assert math.isnan(loaded.pass_rate)
    assert math.isnan(loaded.metrics["judge_human_kappa"])


def test_json_handles_numpy_values_in_score_details() -> None:
    details = {
        "measured": np.float64(1.5),
        "counts": np.array([1, 2]),
        "tags": {"b", "a"},
        "huge": 10**30,
    }
    scored = AttemptResult(
        "c", 1, Output(text="x"), [ScoreRecord("f", Score(1.0, True, details=details))], "passed"
    )
    data = to_json(make_report(cases=[summary("c", scored)]))
    stored = data["cases"][0]["attempts"][0]["scores"][0]["score"]["details"]
    assert stored == {"measured": 1.5, "counts": [1, 2], "tags": ["a", "b"], "huge": str(10**30)}


def test_from_json_refuses_other_documents() -> None:
    with pytest.raises(ValueError, match="run-report"):
        from_json({"schema": "something-else"})


# --- JUnit ---------------------------------------------------------------------------


def junit(tmp_path: Path, report: RunReport) -> ET.Element:
    path = write_junit(report, tmp_path / "junit.xml")
    return ET.parse(path).getroot()


def test_junit_structure_and_counts(tmp_path: Path) -> None:
    root = junit(tmp_path, make_report())
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "ok-1",
        "flaky-mostly",
        "flaky-rarely",
        "fail-1",
        "err-1",
        "review-1",
        "gate",
    ]
    assert {c.get("classname") for c in cases} == {"support-triage-eval@4"}
    # fail-1, flaky-rarely (1 of 3 passed) and the gate fail; err-1 errors; review-1 skipped
    expected = {"tests": "7", "failures": "3", "errors": "1", "skipped": "1"}
    for element in (root, suite):
        assert {k: element.get(k) for k in expected} == expected
    assert len(suite.findall("testcase/failure")) == 3
    assert len(suite.findall("testcase/error")) == 1
    assert len(suite.findall("testcase/skipped")) == 1
    assert suite.get("name") == "support-triage-eval@4"
    assert float(suite.get("time", "")) == pytest.approx(89.4)
    assert float(cases[1].get("time", "")) == pytest.approx(0.25 + 0.5 + 0.75)
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["pass_rate"] == "0.5"
    assert properties["baseline.significant_regression"] == "true"


def test_junit_failure_lists_each_attempts_reasons(tmp_path: Path) -> None:
    root = junit(tmp_path, make_report())
    failure = root.find(".//testcase[@name='fail-1']/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("0 of 2 attempts passed: exact_match: expected")
    body = failure.text or ""
    assert "attempt 1: failed" in body and "attempt 2: failed" in body
    assert "exact_match: expected 'billing', got 'technical'" in body
    # content survives, characters XML cannot carry are replaced
    assert SCRIPT in body and "ünïcødé ✓" in body
    assert "\x00" not in body and "\ufffd" in body


def test_junit_flaky_cases_follow_the_majority_of_attempts(tmp_path: Path) -> None:
    root = junit(tmp_path, make_report())
    passed = root.find(".//testcase[@name='ok-1']")
    assert passed is not None and list(passed) == []  # nothing to say about a clean pass
    mostly = root.find(".//testcase[@name='flaky-mostly']")
    assert mostly is not None and mostly.find("failure") is None
    assert "flaky" in (mostly.findtext("system-out") or "")
    rarely = root.find(".//testcase[@name='flaky-rarely']/failure")
    assert rarely is not None
    assert rarely.get("message", "").startswith("flaky: 1 of 3 attempts passed")


def test_junit_errors_and_reviews(tmp_path: Path) -> None:
    root = junit(tmp_path, make_report())
    error = root.find(".//testcase[@name='err-1']/error")
    assert error is not None and "Timeout" in error.get("message", "")
    skipped = root.find(".//testcase[@name='review-1']/skipped")
    assert skipped is not None and skipped.get("message") == "awaiting human review"


def test_junit_gate_testcase(tmp_path: Path) -> None:
    failed = junit(tmp_path, make_report()).find(".//testcase[@name='gate']/failure")
    assert failed is not None
    assert failed.get("message") == "pass_rate 0.5 >= 0.9"
    assert "✓ f1 0.625 >= 0.6" in (failed.text or "")
    passing = make_report(gate=[check("f1", 0.7, ">= 0.6")], gate_passed=True, status="passed")
    gate = junit(tmp_path, passing).find(".//testcase[@name='gate']")
    assert gate is not None and gate.find("failure") is None and gate.find("skipped") is None
    waiting = dataclasses.replace(passing, status="awaiting_review")
    root = junit(tmp_path, waiting)
    assert root.find(".//testcase[@name='gate']/skipped") is not None
    assert root.get("failures") == "2" and root.get("skipped") == "2"


def test_junit_escapes_markup_in_names(tmp_path: Path) -> None:
    weird = summary(SCRIPT, attempt(SCRIPT, 1, "failed", 'say "hi" & <bye>'))
    path = write_junit(make_report(cases=[weird]), tmp_path / "junit.xml")
    raw = path.read_text(encoding="utf-8")
    assert SCRIPT not in raw
    case = ET.parse(path).getroot().find(".//testcase")
    assert case is not None and case.get("name") == SCRIPT


# --- HTML ----------------------------------------------------------------------------


def html(tmp_path: Path, report: RunReport) -> str:
    return write_html(report, tmp_path / "report.html").read_text(encoding="utf-8")


def test_html_shows_the_key_figures(tmp_path: Path) -> None:
    page = html(tmp_path, make_report())
    for text in [
        "support-triage-eval@4",
        "support-triage@5",
        "FAILED",
        "95% interval 0.251&ndash;0.749",
        "pass_rate 0.5 &gt;= 0.9",
        "f1 0.625 &gt;= 0.6",
        "significant regression",
        "0.5",  # McNemar p
        "-0.25 (-0.5 to -0.04)",
        "1,234",
        "$0.001260",
        "500 ms / 950 ms",
        "the suite is too small",
        "judge_human_kappa",
        "awaiting review",
        "run-base-1",
    ]:
        assert text in page, text
    assert "<svg" in page and "gate 0.9" in page


def test_html_marks_flaky_and_newly_failing_cases(tmp_path: Path) -> None:
    page = html(tmp_path, make_report())
    rows = {
        m["id"]: m["row"]
        for m in re.finditer(
            r'<tr id="case-\d+"(?P<row>.*?)<td class="mono id">(?P<id>[^<]*)</td>', page, re.S
        )
    }
    assert 'class="newly"' in rows["fail-1"] and 'class="newly"' in rows["flaky-rarely"]
    assert 'class="newly"' not in rows["ok-1"]
    assert 'data-flaky="true"' in rows["flaky-mostly"]
    # newly failing cases come first, then by severity, passed last
    assert list(rows) == ["fail-1", "flaky-rarely", "err-1", "flaky-mostly", "review-1", "ok-1"]
    dots = re.findall(r'class="dot (\w+)"\s+title=', page)
    assert dots.count("failed") == 2 + 2 + 1  # fail-1, flaky-rarely, flaky-mostly
    assert (dots.count("errored"), dots.count("pending_review")) == (2, 1)
    assert 'title="attempt 2: failed (score 0.33)"' in page  # (1 x 1 + 2 x 0) / 3


def test_html_escapes_user_content(tmp_path: Path) -> None:
    weird = summary(SCRIPT, attempt(SCRIPT, 1, "failed", SCRIPT))
    page = html(tmp_path, make_report(cases=[*make_report().cases, weird]))
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own sorting script


def test_html_is_self_contained(tmp_path: Path) -> None:
    page = html(tmp_path, make_report())
    assert 'href="#case-' in page  # links inside the page are fine
    assert not re.search(r"""(?:src|href)\s*=\s*(?!["']?#)""", page)
    assert "@import" not in page and "url(" not in page
    assert "<link" not in page


def test_html_without_verdicts_or_baseline(tmp_path: Path) -> None:
    report = make_report(
        pass_rate=math.nan, comparison=None, gate=[], warnings=[], metrics={}, cases=[]
    )
    page = html(tmp_path, report)
    assert "No baseline run to compare with." in page
    assert "This suite sets no gate conditions." in page
    assert "n/a" in page


def test_html_cuts_long_outputs_but_keeps_them_reachable(tmp_path: Path) -> None:
    long = "word " * 400
    page = html(tmp_path, make_report(cases=[summary("long", attempt("long", 1, "failed", long))]))
    assert "<details><summary>full text</summary>" in page
    assert long.strip()[:1500] in page


# --- terminal ------------------------------------------------------------------------


def terminal(report: RunReport) -> str:
    console = Console(record=True, width=100, color_system=None)
    render_summary(report, console)
    return console.export_text()


def test_terminal_summary() -> None:
    text = terminal(make_report())
    lines = text.splitlines()
    assert lines[0] == "support-triage-eval@4 → support-triage@5  FAILED"
    assert "pass rate 0.5 (95% interval 0.251\u20130.749) · 6/13 attempts passed" in text
    assert "gate failed" in text
    assert re.search(r"✗ +pass_rate 0\.5 >= 0\.9", text)
    assert re.search(r"✓ +f1 0\.625 >= 0\.6", text)
    assert "flaky (2): flaky-mostly, flaky-rarely" in text
    assert (
        "vs production (support-triage@4) (run run-base-1), 6 paired cases: significant regression"
        in text
    )
    assert "newly failing: fail-1, flaky-rarely" in text
    assert "2 newly failing, 0 newly passing, McNemar p = 0.5" in text
    assert "⚠ the suite is too small" in text
    assert "tokens 1,234 in / 120 out · cost $0.001260 · latency p50 500 ms / p95 950 ms" in text
    assert "1 errored, 1 failed, 2 flaky, 1 passed, 1 pending review" in text
    assert all(len(line) <= 100 for line in lines)


def test_terminal_prints_markup_in_names_literally_and_lists_ten_flaky_cases() -> None:
    flaky = [
        summary(f"[red]c{i}", attempt(f"c{i}", 1, "passed"), attempt(f"c{i}", 2, "failed"))
        for i in range(12)
    ]
    text = terminal(make_report(cases=flaky, comparison=None, warnings=[]))
    assert "flaky (12): [red]c0, [red]c1," in text
    assert "[red]c9, … and 2 more" in text
    assert "[red]c10" not in text
    assert "vs " not in text
