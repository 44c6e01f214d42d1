"""Statistics of non-deterministic runs, checked against values worked out by hand.

z is the two-sided 95% normal quantile 1.959964, z² = 3.841459.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.errors import UserError
from lockgate.evals._format import preview
from lockgate.evals._stats import (
    case_pass_rates,
    check,
    cohen_kappa,
    compare,
    latency_percentiles,
    mcnemar_exact,
    paired_bootstrap,
    parse_condition,
    pearson,
    required_sample_size,
    sample_size_warning,
    suite_pass_rate,
    summarize_case,
    wilson_interval,
)
from lockgate.evals._types import (
    AttemptResult,
    Case,
    CaseSummary,
    Output,
    Score,
    ScoreRecord,
)


def attempt(case_id: str, n: int, status: str, value: float | None = None) -> AttemptResult:
    if value is None:
        value = 1.0 if status == "passed" else 0.0
    scores = [] if status == "errored" else [ScoreRecord("exact", Score(value, status == "passed"))]
    error = "Timeout: no answer" if status == "errored" else None
    return AttemptResult(case_id, n, Output(text="x", error=error), scores, status)


def case(case_id: str, *statuses: str, value: float | None = None) -> CaseSummary:
    return summarize_case(
        case_id, [attempt(case_id, i, s, value) for i, s in enumerate(statuses, 1)]
    )


def approx(expected: tuple[float, ...], abs: float = 5e-5) -> object:
    return pytest.approx(expected, abs=abs)


# --- Wilson interval -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # p = 0.8, z²/n = 0.3841459, denominator 1.3841459
        # centre = (0.8 + 0.1920729) / 1.3841459 = 0.716740
        # half = 1.959964 / 1.3841459 * sqrt(0.016 + 0.0096036) = 1.416010 * 0.160011 = 0.226578
        (8, 10, (0.490162, 0.943318)),
        # p = 0.5: centre 0.5; half = 1.416011 * sqrt(0.025 + 0.0096036) = 1.416011 * 0.186021
        #   = 0.263408
        (5, 10, (0.236592, 0.763408)),
        # p = 0: centre = 0.1920730 / 1.3841459 = 0.138767 = half → (0, 0.277533)
        (0, 10, (0.0, 0.277533)),
        # p = 1: mirror image of p = 0
        (10, 10, (0.722467, 1.0)),
        # p = 56/60 = 0.933333, z²/n = 0.0640243, denominator 1.0640243
        # centre = (0.933333 + 0.0320122) / 1.0640243 = 0.907259
        # half = 1.959964 / 1.0640243 * sqrt(0.00103704 + 0.00026677) = 1.842029 * 0.0361083
        #      = 0.066513
        (56, 60, (0.840746, 0.973771)),
    ],
)
def test_wilson_interval_matches_hand_computation(
    successes: int, n: int, expected: tuple[float, float]
) -> None:
    assert wilson_interval(successes, n) == approx(expected, abs=2e-6)


def test_wilson_interval_at_90_percent() -> None:
    # z = 1.644854, z² = 2.705543; p = 0.8, z²/n = 0.2705543, denominator 1.2705543
    # centre = (0.8 + 0.1352772) / 1.2705543 = 0.736118
    # half = 1.644854 / 1.2705543 * sqrt(0.016 + 0.0067639) = 1.294591 * 0.150877 = 0.195324
    assert wilson_interval(8, 10, confidence=0.90) == approx((0.540794, 0.931442), abs=2e-6)


def test_wilson_interval_of_nothing_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("successes", "n"), [(-1, 10), (11, 10), (0, -1)])
def test_wilson_interval_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(successes, n)


def test_wilson_interval_rejects_a_confidence_outside_0_1() -> None:
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.0)


@given(n=st.integers(1, 5000), data=st.data())
def test_wilson_interval_holds_the_observed_rate_inside_0_1(n: int, data: st.DataObject) -> None:
    successes = data.draw(st.integers(0, n))
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= successes / n <= high <= 1.0
    wider = wilson_interval(successes, n, confidence=0.99)
    assert wider[0] <= low and wider[1] >= high


# --- per-case summaries --------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "status", "rate", "flaky"),
    [
        (("passed", "passed", "passed"), "passed", 1.0, False),
        (("failed", "failed"), "failed", 0.0, False),
        (("passed", "failed", "passed"), "flaky", 2 / 3, True),
        # an error next to a pass is flaky too, and the error counts as a failure
        (("passed", "errored"), "flaky", 0.5, True),
        (("errored", "errored"), "errored", 0.0, False),
        # no pass, a failure and an error: failed, not errored
        (("failed", "errored"), "failed", 0.0, False),
        # pending attempts are left out of the rate until reviewed
        (("passed", "pending_review"), "pending_review", 1.0, False),
        (("pending_review", "pending_review"), "pending_review", 0.0, False),
        # a failure settles the case whatever the pending review says
        (("failed", "pending_review"), "failed", 0.0, False),
        (("passed", "failed", "pending_review"), "flaky", 0.5, True),
    ],
)
def test_case_status(statuses: tuple[str, ...], status: str, rate: float, flaky: bool) -> None:
    summary = case("c", *statuses)
    assert (summary.status, summary.flaky) == (status, flaky)
    assert summary.pass_rate == pytest.approx(rate)


def test_mean_score_counts_errored_attempts_as_zero() -> None:
    summary = summarize_case(
        "c",
        [
            attempt("c", 1, "passed", 0.9),
            attempt("c", 2, "failed", 0.6),
            attempt("c", 3, "errored"),
        ],
    )
    assert summary.mean_score == pytest.approx((0.9 + 0.6 + 0.0) / 3)


def test_summarize_case_needs_attempts() -> None:
    with pytest.raises(ValueError, match="no attempts"):
        summarize_case("c", [])


def test_case_pass_rates_groups_in_dataset_order_with_previews() -> None:
    cases = [Case(id="b", input="  Where   is my\nrefund? "), Case(id="a", expected={"k": 1})]
    attempts = [attempt("a", 2, "passed"), attempt("b", 1, "failed"), attempt("a", 1, "failed")]
    summaries = case_pass_rates(attempts, cases)
    assert [s.case_id for s in summaries] == ["b", "a"]
    assert summaries[0].input_preview == "Where is my refund?"
    assert summaries[1].expected_preview == "{'k': 1}"
    assert [a.attempt for a in summaries[1].attempts] == [1, 2]
    assert summaries[1].status == "flaky"


def test_preview_cuts_long_text() -> None:
    assert preview("x" * 500, limit=10) == "x" * 9 + "…"
    assert preview(None) == ""


# --- suite pass rate -----------------------------------------------------------------


def test_suite_pass_rate_weighs_cases_equally_and_pools_attempts_for_the_interval() -> None:
    cases = [case("a", "passed"), case("b", "passed", "failed", "failed")]
    rate, interval, passed, n = suite_pass_rate(cases)
    # per case 1/1 and 1/3 → (1 + 1/3) / 2; pooled attempts 2 of 4
    assert rate == pytest.approx(2 / 3)
    assert (passed, n) == (2, 4)
    assert interval == wilson_interval(2, 4)


def test_errored_attempts_lower_the_suite_pass_rate() -> None:
    rate, _, passed, n = suite_pass_rate([case("a", "passed", "passed", "errored")])
    assert (rate, passed, n) == (pytest.approx(2 / 3), 2, 3)


def test_cases_awaiting_review_are_left_out_of_the_suite_rate() -> None:
    cases = [case("a", "passed"), case("b", "pending_review")]
    assert suite_pass_rate(cases) == (1.0, wilson_interval(1, 1), 1, 1)


def test_suite_pass_rate_of_nothing() -> None:
    assert suite_pass_rate([]) == (0.0, (0.0, 1.0), 0, 0)


# --- McNemar and the bootstrap -------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),
        (5, 0, 2 / 32),  # 2 x P(X <= 0 | n=5) = 2 x 1/32
        (10, 0, 2 / 1024),  # 2 x 1/1024
        (7, 2, 2 * 46 / 512),  # 2 x (1 + 9 + 36) / 2^9
        (2, 7, 2 * 46 / 512),  # symmetric
        (3, 3, 1.0),  # 2 x (1 + 6 + 15 + 20) / 64 > 1 → 1
    ],
)
def test_mcnemar_exact(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="discordant"):
        mcnemar_exact(-1, 2)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    diffs = [0.1, -0.2, 0.05, 0.0, -0.3, 0.2, -0.1]
    assert paired_bootstrap(diffs, seed=7) == paired_bootstrap(diffs, seed=7)
    assert paired_bootstrap(diffs, seed=7) != paired_bootstrap(diffs, seed=8)


def test_bootstrap_of_constant_differences_is_a_point() -> None:
    assert paired_bootstrap([-0.1] * 20) == approx((-0.1, -0.1, -0.1), abs=1e-12)


def test_bootstrap_interval_is_close_to_the_normal_one_for_many_cases() -> None:
    # 400 differences alternating -0.5 and +0.5 around +0.1: sd 0.5, standard error
    # 0.5 / sqrt(400) = 0.025, normal interval 0.1 ± 1.96 x 0.025 = (0.051, 0.149)
    diffs = [0.1 + (0.5 if i % 2 else -0.5) for i in range(400)]
    mean, low, high = paired_bootstrap(diffs, resamples=20_000)
    assert mean == pytest.approx(0.1)
    assert low == pytest.approx(0.051, abs=0.004)
    assert high == pytest.approx(0.149, abs=0.004)


def test_bootstrap_chunks_give_the_same_answer_as_one_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    import lockgate.evals._stats as stats

    diffs = [0.3, -0.1, 0.2, 0.0, -0.4]
    small = paired_bootstrap(diffs, resamples=1000)
    monkeypatch.setattr(stats, "_BOOTSTRAP_CELLS", 5 * 7)  # chunks of 7 resamples
    chunked = paired_bootstrap(diffs, resamples=1000)
    assert small[0] == chunked[0]
    assert chunked[1] <= small[0] <= chunked[2]


def test_bootstrap_needs_data() -> None:
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([])


# --- comparison with a baseline ------------------------------------------------------


def test_identical_runs_are_not_a_regression() -> None:
    run = [case(f"c{i}", "passed", "failed", "passed") for i in range(10)]
    result = compare(run, run, baseline_run_id="r0", baseline_label="production")
    assert (result.discordant_worse, result.discordant_better, result.paired_cases) == (0, 0, 10)
    assert result.p_value == 1.0
    assert result.mean_diff == 0.0 and result.mean_diff_interval == (0.0, 0.0)
    assert not result.significant_regression
    assert (result.baseline_run_id, result.baseline_label) == ("r0", "production")


def test_ten_newly_failing_cases_are_a_significant_regression() -> None:
    before = [case(f"c{i}", "passed", "passed") for i in range(20)]
    now = [case(f"c{i}", *(["failed"] * 2 if i < 10 else ["passed"] * 2)) for i in range(20)]
    result = compare(now, before, baseline_run_id="r0", baseline_label="production")
    assert result.newly_failing == [f"c{i}" for i in range(10)]
    assert result.newly_passing == []
    # b = 10, c = 0: p = 2 / 2^10
    assert result.p_value == pytest.approx(2 / 1024)
    assert result.mean_diff == pytest.approx(-0.5)
    assert result.mean_diff_interval[1] < 0
    assert result.significant_regression


def test_a_score_drop_on_every_case_is_a_regression_without_any_case_flipping() -> None:
    before = [case(f"c{i}", "passed", value=0.9) for i in range(15)]
    now = [case(f"c{i}", "passed", value=0.8) for i in range(15)]
    result = compare(now, before, baseline_run_id="r0", baseline_label="staging")
    assert (result.discordant_worse, result.p_value) == (0, 1.0)
    assert result.mean_diff_interval == approx((-0.1, -0.1), abs=1e-9)
    assert result.significant_regression


def test_as_many_fixed_as_broken_is_not_a_regression() -> None:
    before = [case("a", "passed"), case("b", "passed"), case("c", "failed"), case("d", "failed")]
    now = [case("a", "failed"), case("b", "passed"), case("c", "passed"), case("d", "failed")]
    result = compare(now, before, baseline_run_id="r0", baseline_label="production")
    assert (result.newly_failing, result.newly_passing) == (["a"], ["c"])
    assert result.p_value == 1.0
    assert not result.significant_regression


def test_a_majority_of_repeats_decides_whether_a_case_passes() -> None:
    before = [case("tie", "passed", "failed"), case("minority", "passed", "passed", "passed")]
    now = [case("tie", "passed", "passed"), case("minority", "passed", "failed", "failed")]
    result = compare(now, before, baseline_run_id="r0", baseline_label="production")
    assert result.newly_failing == ["minority"]
    assert result.newly_passing == []  # 1 of 2 already counted as passing


def test_only_cases_with_verdicts_in_both_runs_are_paired() -> None:
    before = [case("a", "passed"), case("b", "passed"), case("c", "pending_review")]
    now = [case("a", "passed"), case("c", "failed"), case("new", "failed")]
    result = compare(now, before, baseline_run_id="r0", baseline_label="production")
    assert result.paired_cases == 1


def test_comparison_with_nothing_in_common() -> None:
    result = compare(
        [case("a", "passed")], [case("b", "passed")], baseline_run_id="r0", baseline_label="x"
    )
    assert result.paired_cases == 0 and result.p_value == 1.0
    assert math.isnan(result.mean_diff)
    assert not result.significant_regression


# --- sample size ---------------------------------------------------------------------


def test_required_sample_size_by_hand() -> None:
    # n > z² t(1-t) / (p-t)² = 3.841459 x 0.92 x 0.08 / 0.01² = 2827.31
    assert required_sample_size(0.92, 0.93) == 2828
    # observed below the threshold: 3.841459 x 0.9 x 0.1 / 0.05² = 138.29
    assert required_sample_size(0.9, 0.85) == 139
    # all passed: 3.841459 x 0.0736 / 0.08² = 44.18 → 45; wilson(45, 45) low = 45/48.84 = 0.9213
    assert required_sample_size(0.92, 1.0) == 45
    assert wilson_interval(45, 45)[0] > 0.92 > wilson_interval(44, 44)[0]
    assert required_sample_size(0.92, 0.92) is None
    assert required_sample_size(1.0, 0.99) == 1


@pytest.mark.parametrize(("threshold", "observed"), [(0.92, 0.95), (0.8, 0.7), (0.5, 0.56)])
def test_required_sample_size_agrees_with_searching_over_n(
    threshold: float, observed: float
) -> None:
    def excludes(n: int) -> bool:
        low, high = wilson_interval(observed * n, n)  # type: ignore[arg-type]
        return not low <= threshold <= high

    found = next(n for n in range(1, 100_000) if excludes(n))
    assert required_sample_size(threshold, observed) == found


def test_sample_size_warning_text() -> None:
    warning = sample_size_warning(0.93, (0.81, 0.98), 60, 0.92)
    assert warning == (
        "the suite is too small to tell 0.93 from the 0.92 threshold: the 95% interval is "
        "0.81\u20130.98 with 60 cases; about 2,900 cases would be needed"  # 2828 rounded up
    )


def test_no_sample_size_warning_when_the_interval_settles_the_gate() -> None:
    assert sample_size_warning(0.99, (0.95, 1.0), 400, 0.92) is None
    assert sample_size_warning(0.5, (0.4, 0.6), 100, 0.92) is None


def test_sample_size_warning_when_the_rate_equals_the_threshold() -> None:
    warning = sample_size_warning(0.9, (0.6, 0.98), 1, 0.9)
    assert warning is not None
    assert "with 1 case;" in warning and "cannot settle" in warning


# --- gate conditions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (">= 0.92", (">=", 0.92)),
        ("> 0.5", (">", 0.5)),
        ("<= 12.5", ("<=", 12.5)),
        ("< 3", ("<", 3.0)),
        ("== 1", ("==", 1.0)),
        ("0.8", (">=", 0.8)),
        (0.8, (">=", 0.8)),
        ("  >=0.92 ", (">=", 0.92)),
    ],
)
def test_parse_condition(text: str | float, parsed: tuple[str, float]) -> None:
    assert parse_condition(text) == parsed


@pytest.mark.parametrize("text", ["", "at least 0.9", "=> 0.9", ">= ninety", ">= 0.9 or so"])
def test_parse_condition_rejects_with_the_offending_text(text: str) -> None:
    with pytest.raises(UserError, match="invalid gate condition") as info:
        parse_condition(text)
    assert f"'{text}'" in str(info.value)


def test_check_passes_and_fails_with_a_readable_detail() -> None:
    assert check("pass_rate", 0.93333, ">= 0.92") == check("pass_rate", 0.93333, (">=", 0.92))
    passed = check("pass_rate", 0.93333, ">= 0.92")
    assert (passed.name, passed.passed, passed.detail) == (
        "pass_rate",
        True,
        "pass_rate 0.933 >= 0.92",
    )
    failed = check("latency_p95_ms", 1520.0, "<= 1200")
    assert (failed.passed, failed.detail) == (False, "latency_p95_ms 1520 <= 1200")


def test_check_shows_enough_digits_to_explain_a_near_miss() -> None:
    near = check("pass_rate", 0.91996, ">= 0.92")
    assert not near.passed
    assert near.detail == "pass_rate 0.91996 >= 0.92"


@pytest.mark.parametrize("value", [math.nan, None])
def test_a_missing_value_never_passes(value: float | None) -> None:
    for condition in (">= 0", "<= 1", "== 1"):
        result = check("f1", value, condition)
        assert not result.passed
        assert "no value" in result.detail


# --- agreement and latency -----------------------------------------------------------


def test_cohen_kappa_by_hand() -> None:
    # observed agreement 3/4; chance: 0.5 x 0.25 + 0.5 x 0.75 = 0.5; (0.75 - 0.5) / 0.5
    assert cohen_kappa([True, True, False, False], [True, False, False, False]) == pytest.approx(
        0.5
    )
    assert cohen_kappa([True, False, True], [True, False, True]) == pytest.approx(1.0)
    # one rater always says pass: chance agreement 1 x 0.75 = observed agreement → 0
    assert cohen_kappa([True] * 4, [True, True, False, True]) == pytest.approx(0.0)


def test_cohen_kappa_is_undefined_without_variation() -> None:
    assert math.isnan(cohen_kappa([True, True], [True, True]))
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError, match="paired"):
        cohen_kappa([True], [True, False])


def test_pearson_by_hand() -> None:
    # deviations (-1.5, -0.5, 0.5, 1.5) and (-1.5, 0.5, -0.5, 1.5): 4 / sqrt(5 x 5) = 0.8
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert pearson([1, 2, 3], [6, 4, 2]) == pytest.approx(-1.0)


def test_pearson_is_none_when_undefined() -> None:
    assert pearson([1, 2], [2, 1]) is None
    assert pearson([1, 1, 1], [1, 2, 3]) is None
    assert pearson([1, 2, 3], [0.5, 0.5, 0.5]) is None


def test_latency_percentiles() -> None:
    # p95 of 10..50: index 0.95 x 4 = 3.8 → 40 + 0.8 x 10 = 48
    assert latency_percentiles([50, 10, 30, 20, 40]) == (30.0, 48.0)
    assert latency_percentiles([]) == (None, None)
    assert latency_percentiles([math.nan, 7.0]) == (7.0, 7.0)
