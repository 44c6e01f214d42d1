"""Operational scorers: latency, cost and token limits."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, cast

import pytest

from lockgate.errors import UserError
from lockgate.evals._types import Case, Output, Score
from lockgate.scorers import CaseScorer, ScorerContext, build_scorer


async def run(name: str, args: dict[str, Any], **output: Any) -> Score:
    info, score = build_scorer(name, args)
    assert info.kind == "case" and not info.needs_model
    output.setdefault("text", "ok")
    return await cast(CaseScorer, score)(Output(**output), Case(id="c1"), ScorerContext())


async def test_latency_within_and_over_the_limit() -> None:
    ok = await run("latency_ms", {"max": 2000}, latency_ms=1999.5)
    assert ok.passed and ok.value == 1.0
    assert ok.details["measured"] == 1999.5 and ok.details["max"] == 2000
    assert (await run("latency_ms", {"max": 2000}, latency_ms=2000)).passed
    slow = await run("latency_ms", {"max": 2000}, latency_ms=2400)
    assert not slow.passed and slow.value == 0.0
    assert slow.reason == "2400 ms > max 2000 ms"


async def test_latency_reports_cache_hits() -> None:
    assert (await run("latency_ms", {"max": 10}, latency_ms=0.2, cached=True)).details["cached"]


async def test_latency_nan_never_passes() -> None:
    score = await run("latency_ms", {"max": 1e9}, latency_ms=math.nan)
    assert not score.passed and math.isnan(score.details["measured"])


async def test_cost_within_over_and_unknown() -> None:
    ok = await run("cost_usd", {"max": 0.002}, cost_usd=Decimal("0.0019"))
    assert ok.passed and ok.details["measured"] == pytest.approx(0.0019)
    # Compared exactly, in Decimal: no float rounding at the boundary.
    assert (await run("cost_usd", {"max": 0.3}, cost_usd=Decimal("0.3"))).passed
    over = await run("cost_usd", {"max": 0.002}, cost_usd=Decimal("0.0021"))
    assert not over.passed and over.value == 0.0
    unknown = await run("cost_usd", {"max": 1}, cost_usd=None)
    assert not unknown.passed and unknown.reason == "cost unknown"
    nan = await run("cost_usd", {"max": 1}, cost_usd=Decimal("NaN"))
    assert not nan.passed and nan.reason == "cost unknown"


@pytest.mark.parametrize(
    ("which", "measured", "passed"),
    [("total", 130, False), ("input", 100, True), ("output", 30, True)],
)
async def test_tokens(which: str, measured: int, passed: bool) -> None:
    score = await run(
        "tokens",
        {"max": 120, "which": which},
        input_tokens=100,
        output_tokens=30,
        tokens_estimated=True,
    )
    assert score.details["measured"] == measured and score.passed is passed
    assert score.details["estimated"] is True and score.details["which"] == which


async def test_tokens_default_is_total() -> None:
    assert (await run("tokens", {"max": 130}, input_tokens=100, output_tokens=30)).passed


async def test_errored_output_fails() -> None:
    score = await run("latency_ms", {"max": 100}, latency_ms=1, error="UpstreamError: 502")
    assert not score.passed


@pytest.mark.parametrize(
    ("name", "args", "fragment"),
    [
        ("latency_ms", {}, "max"),
        ("latency_ms", {"max": -1}, ">= 0"),
        ("latency_ms", {"max": "fast"}, "must be a number"),
        ("latency_ms", {"max": math.inf}, "finite"),
        ("cost_usd", {"max": math.nan}, "finite"),
        ("cost_usd", {"limit": 1}, "it accepts: max"),
        ("tokens", {"max": 10, "which": "prompt"}, "which must be one of total, input, output"),
        ("tokens", {"max": True}, "must be a number"),
    ],
)
def test_bad_arguments(name: str, args: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError, match=f"scorer '{name}'") as caught:
        build_scorer(name, args)
    assert fragment in str(caught.value)
