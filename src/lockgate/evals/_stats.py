"""Statistics for evaluation runs whose outputs are not deterministic.

An LLM answers the same case differently from one attempt to the next, so a bare pass
rate says little: 0.93 on 60 cases is compatible with anything from 0.84 to 0.97. Here:
per-case summaries, the suite pass rate with a Wilson interval, a warning when a suite is
too small to decide its gate, comparison with a baseline (McNemar's exact test, paired
bootstrap), gate conditions, and judge-versus-human agreement.

Every function is pure; scipy and scikit-learn, slow to import, are imported on use. An
errored attempt counts as a failure wherever a rate is computed: an upstream falling
over must never make a suite look better than one that answered badly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from lockgate._conditions import holds
from lockgate._conditions import parse_condition as _parse
from lockgate.errors import UserError
from lockgate.evals._format import distinct, format_number, preview, round_up
from lockgate.evals._types import AttemptResult, Case, CaseSummary, Comparison, GateCheck

__all__ = [
    "CASE_PASS_RATE",
    "DEFAULT_CONFIDENCE",
    "attempt_counts",
    "case_pass_rates",
    "check",
    "cohen_kappa",
    "compare",
    "latency_percentiles",
    "mcnemar_exact",
    "paired_bootstrap",
    "parse_condition",
    "pearson",
    "required_sample_size",
    "sample_size_warning",
    "suite_pass_rate",
    "summarize_case",
    "wilson_interval",
]

DEFAULT_CONFIDENCE = 0.95
CASE_PASS_RATE = 0.5
"""A case counts as passing in a comparison when at least half its attempts passed."""

_BOOTSTRAP_CELLS = 2_000_000  # resample rows per chunk x cases: bounds memory at ~16 MB


def _z(confidence: float) -> float:
    """The two-sided standard normal quantile, 1.96 for 95%."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion.

    With p = successes / n and z the two-sided normal quantile::

        centre = (p + z²/2n) / (1 + z²/n)
        half   = z / (1 + z²/n) * sqrt(p(1 - p)/n + z²/4n²)

    Unlike the textbook p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and keeps its
    coverage near 0 and 1, where pass rates of good systems live. Reference: E. B.
    Wilson, "Probable inference, the law of succession, and statistical inference",
    JASA 22 (1927); Brown, Cai & DasGupta, "Interval estimation for a binomial
    proportion", Statistical Science 16 (2001).

    Example:
        >>> [round(x, 4) for x in wilson_interval(8, 10)]
        [0.4902, 0.9433]

    Returns:
        (low, high); (0.0, 1.0) when n is 0, since nothing is known.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    z = _z(confidence)
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At p = 0 (p = 1) the low (high) end is exactly 0 (1); rounding would leave 1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def summarize_case(
    case_id: str,
    attempts: Sequence[AttemptResult],
    *,
    input_preview: str = "",
    expected_preview: str = "",
) -> CaseSummary:
    """One case over its attempts.

    Counting P passed, F failed, E errored and R pending-review attempts:

    - ``pass_rate`` = P / (P + F + E): pending attempts have no verdict yet, so they are
      left out; errored ones count as failures. 0.0 when every attempt is pending.
    - ``mean_score`` = mean weighted score over the same attempts, an errored one
      scoring 0.
    - ``flaky`` = P > 0 and F + E > 0: the same input both passed and did not.
    - ``status``, the first rule that applies:
      ``errored`` every attempt errored; ``pending_review`` some attempt awaits review
      and none failed; ``flaky``; ``passed`` every attempt passed; ``failed`` otherwise
      (no attempt passed and at least one failed).

    Raises:
        ValueError: `attempts` is empty.
    """
    if not attempts:
        raise ValueError(f"case {case_id!r} has no attempts")
    counts = _counts(attempts)
    passed, failed, errored = counts["passed"], counts["failed"], counts["errored"]
    decided = [a for a in attempts if _attempt_status(a) != "pending_review"]
    scores = [0.0 if _attempt_status(a) == "errored" else a.weighted_score for a in decided]
    flaky = passed > 0 and failed + errored > 0
    if errored == len(attempts):
        status = "errored"
    elif counts["pending_review"] and not failed:
        status = "pending_review"
    elif flaky:
        status = "flaky"
    elif passed == len(attempts):
        status = "passed"
    else:
        status = "failed"
    return CaseSummary(
        case_id=case_id,
        attempts=sorted(attempts, key=lambda a: a.attempt),
        pass_rate=passed / len(decided) if decided else 0.0,
        mean_score=float(np.mean(scores)) if scores else 0.0,
        flaky=flaky,
        status=status,
        input_preview=input_preview,
        expected_preview=expected_preview,
    )


def _attempt_status(attempt: AttemptResult) -> str:
    # An unknown status has no verdict we can trust: as an error it never counts as a pass.
    status = attempt.status
    return status if status in ("passed", "failed", "pending_review") else "errored"


def _counts(attempts: Iterable[AttemptResult]) -> dict[str, int]:
    counts = dict.fromkeys(("passed", "failed", "errored", "pending_review"), 0)
    for attempt in attempts:
        counts[_attempt_status(attempt)] += 1
    return counts


def case_pass_rates(
    attempts: Iterable[AttemptResult], cases: Iterable[Case] = ()
) -> list[CaseSummary]:
    """Group attempts by case and summarise each case (see `summarize_case`).

    Cases come out in the order of `cases`, then in the order their first attempt
    appears; `cases` also supplies the input and expected previews.
    """
    by_case: dict[str, list[AttemptResult]] = {}
    known: dict[str, Case] = {}
    for row in cases:
        known[row.id] = row
        by_case.setdefault(row.id, [])
    for attempt in attempts:
        by_case.setdefault(attempt.case_id, []).append(attempt)
    empty = Case(id="")
    return [
        summarize_case(
            case_id,
            group,
            input_preview=preview(row.input if row.input is not None else row.vars or None),
            expected_preview=preview(row.expected),
        )
        for case_id, group in by_case.items()
        if group
        for row in [known.get(case_id, empty)]
    ]


def _decided(summary: CaseSummary) -> tuple[int, int]:
    """(passed attempts, attempts with a verdict) of one case."""
    counts = _counts(summary.attempts)
    return counts["passed"], len(summary.attempts) - counts["pending_review"]


def suite_pass_rate(
    cases: Sequence[CaseSummary], confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, tuple[float, float], int, int]:
    """The suite pass rate, its Wilson interval, and the attempt counts behind it.

    The rate is the mean of the per-case pass rates, so each case weighs the same
    whatever its number of repeats. The interval is Wilson's on the pooled attempts
    (successes = passed attempts, n = attempts with a verdict, errored ones counting as
    failures). With equal repeats the two agree on the centre. Cases whose attempts all
    await review are left out of both.

    Repeats of one case are correlated, so with ``repeats > 1`` the pooled interval is
    narrower than the uncertainty about unseen cases; the sample-size warning therefore
    speaks in cases.

    Returns:
        (rate, (low, high), passed_attempts, n); (0.0, (0.0, 1.0), 0, 0) when nothing
        has a verdict.
    """
    rates: list[float] = []
    passed_total = n_total = 0
    for summary in cases:
        passed, decided = _decided(summary)
        if decided:
            rates.append(passed / decided)
            passed_total += passed
            n_total += decided
    rate = float(np.mean(rates)) if rates else 0.0
    return rate, wilson_interval(passed_total, n_total, confidence), passed_total, n_total


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact test: two-sided p-value that b and c discordant pairs are chance.

    Under the null each discordant pair is a fair coin, so min(b, c) ~ Binomial(b + c,
    1/2) and p = min(1, 2·P(X ≤ min(b, c))) (``scipy.stats.binomtest``). Reference:
    McNemar, Psychometrika 12 (1947); Fagerland, Lydersen & Laake, "The McNemar test for
    binary matched-pairs data", BMC Med. Res. Methodol. 13:91 (2013).

    Returns:
        1.0 when there is no discordant pair.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    test = _scipy_stats().binomtest(min(b, c), n=b + c, p=0.5, alternative="two-sided")
    return float(test.pvalue)


def _scipy_stats() -> Any:
    import scipy.stats

    return scipy.stats


def paired_bootstrap(
    diffs: Sequence[float],
    *,
    resamples: int = 10_000,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of paired differences with a percentile bootstrap interval.

    Draws `resamples` samples of the cases with replacement, takes each sample's mean
    difference, and reports the (1-confidence)/2 and (1+confidence)/2 quantiles of those
    means. Resampling whole cases keeps each pair together. The same seed gives the same
    interval. Reference: Efron & Tibshirani, "An Introduction to the Bootstrap" (1993),
    ch. 13; Koehn, "Statistical significance tests for machine translation evaluation",
    EMNLP 2004.

    Raises:
        ValueError: `diffs` is empty or `resamples` < 1.
    """
    values = np.asarray(diffs, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("paired_bootstrap needs at least one difference")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, not {resamples}")
    _z(confidence)
    rng = np.random.default_rng(seed)
    n = values.size
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        index = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[index].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(values.mean()), float(low), float(high)


def compare(
    current: Sequence[CaseSummary],
    baseline: Sequence[CaseSummary],
    *,
    baseline_run_id: str,
    baseline_label: str,
    alpha: float = 0.05,
    seed: int = 0,
) -> Comparison:
    """Compare a run with its baseline on the cases both ran.

    A case passes when at least half its attempts passed (`CASE_PASS_RATE`: the majority
    of repeats; a tie passes). Cases with no verdict yet in either run are not paired.
    b counts cases that passed in the baseline and fail now (newly failing), c the
    reverse; McNemar's exact test gives the p-value. The mean change of per-case mean
    scores gets a paired-bootstrap interval at confidence 1 - alpha.

    The run is a significant regression when p < alpha and b > c (more cases broke than
    were fixed), or when the whole score-change interval lies below 0.
    """
    before = {s.case_id: s for s in baseline if _decided(s)[1]}
    pairs = [(s, before[s.case_id]) for s in current if _decided(s)[1] and s.case_id in before]
    newly_failing = [now.case_id for now, then in pairs if _passes(then) and not _passes(now)]
    newly_passing = [now.case_id for now, then in pairs if _passes(now) and not _passes(then)]
    b, c = len(newly_failing), len(newly_passing)
    p_value = mcnemar_exact(b, c)
    if pairs:
        diffs = [now.mean_score - then.mean_score for now, then in pairs]
        mean_diff, low, high = paired_bootstrap(diffs, confidence=1.0 - alpha, seed=seed)
    else:
        mean_diff, low, high = math.nan, math.nan, math.nan
    return Comparison(
        baseline_run_id=baseline_run_id,
        baseline_label=baseline_label,
        paired_cases=len(pairs),
        newly_failing=newly_failing,
        newly_passing=newly_passing,
        discordant_worse=b,
        discordant_better=c,
        p_value=p_value,
        mean_diff=mean_diff,
        mean_diff_interval=(low, high),
        significant_regression=(p_value < alpha and b > c) or high < 0,
    )


def _passes(summary: CaseSummary) -> bool:
    return summary.pass_rate >= CASE_PASS_RATE


def required_sample_size(
    threshold: float, observed: float, *, confidence: float = DEFAULT_CONFIDENCE
) -> int | None:
    """The smallest n whose Wilson interval around `observed` excludes `threshold`.

    The Wilson interval is the set of rates t the score test does not reject:
    (p - t)² ≤ z²·t(1 - t)/n. Keeping p = `observed` fixed, t falls outside once
    n > z²·t(1 - t)/(p - t)². Reference: Wilson (1927); Agresti & Coull, "Approximate
    is better than exact", The American Statistician 52 (1998).

    Example:
        >>> required_sample_size(0.92, 0.93)  # 1.96² x 0.92 x 0.08 / 0.01² = 2827.3
        2828

    Returns:
        None when `observed` equals `threshold`: no number of cases separates them.
    """
    if not 0.0 <= observed <= 1.0:
        raise ValueError(f"observed must be a rate in [0, 1], not {observed}")
    if observed == threshold:
        return None
    z = _z(confidence)
    spread = threshold * (1.0 - threshold)
    if spread <= 0:  # a threshold at or outside 0 or 1: any interval excludes it
        return 1
    return math.floor(z * z * spread / (observed - threshold) ** 2) + 1


def sample_size_warning(
    pass_rate: float,
    interval: tuple[float, float],
    n_cases: int,
    threshold: float,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> str | None:
    """A warning when the pass-rate interval contains the gate's threshold.

    For 0.93 on 60 cases, interval 0.81 to 0.98 and threshold 0.92 it reads "the suite
    is too small to tell 0.93 from the 0.92 threshold: the 95% interval is 0.81-0.98
    with 60 cases; about 2,900 cases would be needed" (`required_sample_size`, rounded
    up to two significant digits).

    Returns:
        None when the interval lies wholly on one side of the threshold.
    """
    low, high = interval
    if not low <= threshold <= high:
        return None
    level = f"{confidence * 100:g}%"
    shown, bound = distinct(pass_rate, threshold)
    head = (
        f"the suite is too small to tell {shown} from the {bound} threshold: the {level} "
        f"interval is {format_number(low, 2)}\u2013{format_number(high, 2)} with "
        f"{n_cases:,} case{'' if n_cases == 1 else 's'}"
    )
    needed = required_sample_size(threshold, pass_rate, confidence=confidence)
    if needed is None:
        return f"{head}; the pass rate equals the threshold, so more cases alone cannot settle it"
    return f"{head}; about {round_up(needed):,} cases would be needed"


def parse_condition(text: str | float) -> tuple[str, float]:
    """Parse a gate condition: ``">= 0.92"`` → ``(">=", 0.92)``.

    Operators are >=, >, <=, < and ==; a bare number means >=.

    Raises:
        UserError: the text is not an operator followed by a number.
    """
    try:
        return _parse(text)
    except ValueError as exc:
        raise UserError(f"invalid gate condition: {exc}") from None


def check(name: str, value: float | None, condition: str | float | tuple[str, float]) -> GateCheck:
    """Evaluate one gate condition; a missing or NaN value never passes.

    Example:
        >>> check("pass_rate", 0.93333, ">= 0.92").detail
        'pass_rate 0.933 >= 0.92'
    """
    op, bound = condition if isinstance(condition, tuple) else parse_condition(condition)
    if value is None or math.isnan(value):
        return GateCheck(name, False, f"{name} has no value (needs {op} {format_number(bound)})")
    passed = holds(value, (op, bound))
    shown, limit = distinct(value, bound)
    return GateCheck(name, passed, f"{name} {shown} {op} {limit}")


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's kappa between two raters' pass/fail verdicts on the same items.

    kappa = (p_o - p_e) / (1 - p_e), p_o the observed agreement and p_e the agreement
    expected by chance from each rater's marginals (``sklearn.metrics.cohen_kappa_score``).
    Reference: J. Cohen, "A coefficient of agreement for nominal scales", Educational
    and Psychological Measurement 20 (1960).

    Returns:
        NaN when kappa is undefined: no items, or both raters gave one same verdict to
        everything (p_e = 1).

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs paired verdicts, got {len(a)} and {len(b)}")
    if not a or (len(set(a)) == 1 and set(a) == set(b)):
        return math.nan
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(list(a), list(b), labels=[False, True]))


def pearson(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Pearson's correlation between paired scores (``scipy.stats.pearsonr``).

    r = cov(a, b) / (sd(a)·sd(b)). Reference: K. Pearson, Proc. R. Soc. London 58 (1895).

    Returns:
        None with fewer than 3 pairs or when either side is constant (r is undefined).

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"pearson needs paired scores, got {len(a)} and {len(b)}")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(_scipy_stats().pearsonr(x, y).statistic)


def latency_percentiles(latencies_ms: Iterable[float]) -> tuple[float | None, float | None]:
    """The median and 95th percentile (linear interpolation, ``numpy.percentile``).

    Pass only latencies that mean something: leave out errored and cached attempts.

    Returns:
        (p50, p95), both None when there is no latency.
    """
    values = np.fromiter((float(v) for v in latencies_ms), dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None, None
    p50, p95 = np.percentile(values, [50, 95])
    return float(p50), float(p95)


def attempt_counts(cases: Iterable[CaseSummary]) -> Mapping[str, int]:
    """How many attempts ended in each status (passed, failed, errored, pending_review)."""
    return _counts(a for summary in cases for a in summary.attempts)
