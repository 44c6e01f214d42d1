"""Model-graded scorers against a real `Client` and a scripted judge on a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from lockgate.config import load_settings
from lockgate.errors import ProviderError, UserError
from lockgate.evals._types import Case, Output, Score
from lockgate.providers import Client
from lockgate.scorers import CaseScorer, ScorerContext, build_scorer
from lockgate.testing import Rule, ScriptedUpstream

JUDGE = "judge/grader-1"
RUBRIC = "Polite, and offers a refund when the customer was charged twice."
CASE = Case(
    id="t1",
    input="I was charged twice this month!",
    expected="Apologise and offer a refund.",
)
ANSWER = "Sorry about that! I have refunded the duplicate charge."


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as up:
        yield up


def _settings(upstream: ScriptedUpstream, home: Path, *, cache: bool = False) -> Any:
    return load_settings(
        home=home,
        providers={"judge": {"type": "openai", "base_url": upstream.url + "/v1", "max_retries": 0}},
        cache={"enabled": cache},
    )


@pytest.fixture
async def client(upstream: ScriptedUpstream, tmp_path: Path) -> AsyncIterator[Client]:
    async with Client(_settings(upstream, tmp_path / "home")) as c:
        yield c


def judge_scorer(args: dict[str, Any]) -> CaseScorer:
    info, score = build_scorer("llm_judge", {"rubric": RUBRIC, "model": JUDGE, **args})
    assert info.needs_model and info.kind == "case"
    return cast(CaseScorer, score)


async def judge(
    client: Client,
    args: dict[str, Any] | None = None,
    text: str = ANSWER,
    case: Case = CASE,
    threshold: float | None = None,
) -> Score:
    ctx = ScorerContext(client=client, threshold=threshold)
    return await judge_scorer(args or {})(Output(text=text), case, ctx)


def chat_bodies(upstream: ScriptedUpstream) -> list[dict[str, Any]]:
    return [r.body for r in upstream.requests if r.path == "/v1/chat/completions" and r.body]


# -- llm_judge ------------------------------------------------------------------------------


async def test_judge_verdict_passes_and_the_request_is_json_constrained(
    upstream: ScriptedUpstream, client: Client
) -> None:
    upstream.set_rules([Rule(match="refunded", reply={"score": 0.9, "reason": "Polite refund."})])
    score = await judge(client)
    assert score.passed and score.value == pytest.approx(0.9)
    assert score.reason == "Polite refund."
    assert score.details["agreement"] == 1.0
    assert score.details["raw"] == '{"score": 0.9, "reason": "Polite refund."}'
    (body,) = chat_bodies(upstream)
    assert body["model"] == "grader-1"
    assert body["temperature"] == 0
    assert body["max_tokens"] == 256
    assert "seed" not in body
    schema = body["response_format"]["json_schema"]
    assert body["response_format"]["type"] == "json_schema" and schema["name"] == "verdict"
    assert schema["schema"]["required"] == ["score", "reason"]
    system, user = body["messages"]
    assert system["role"] == "system" and "JSON only" in system["content"]
    for part in (RUBRIC, CASE.input, CASE.expected, ANSWER):
        assert part in user["content"]
    assert user["content"].index("<rubric>") < user["content"].index("<output>")


async def test_judge_failing_verdict(upstream: ScriptedUpstream, client: Client) -> None:
    upstream.set_rules([Rule(reply={"score": 0.2, "reason": "No refund offered."})])
    score = await judge(client, text="Please contact billing.")
    assert not score.passed and score.value == pytest.approx(0.2)
    assert score.reason == "No refund offered."


async def test_judge_without_expected_leaves_that_section_out(
    upstream: ScriptedUpstream, client: Client
) -> None:
    upstream.set_rules([Rule(reply={"score": 1, "reason": "fine"})])
    await judge(client, case=Case(id="t2", input="hi"))
    (body,) = chat_bodies(upstream)
    assert "<expected>" not in body["messages"][1]["content"]


@pytest.mark.parametrize(("given", "clamped"), [(1.7, 1.0), (-3, 0.0), ("0.75", 0.75)])
async def test_judge_scores_are_clamped_and_coerced(
    upstream: ScriptedUpstream, client: Client, given: Any, clamped: float
) -> None:
    upstream.set_rules([Rule(reply={"score": given, "reason": "r"})])
    assert (await judge(client)).value == pytest.approx(clamped)


async def test_judge_verdict_in_a_fence_is_read(upstream: ScriptedUpstream, client: Client) -> None:
    upstream.set_rules([Rule(reply='```json\n{"score": 0.8, "reason": "ok"}\n```')])
    assert (await judge(client)).passed


@pytest.mark.parametrize(
    "reply",
    [
        "I think this answer is great!",
        '{"score": NaN, "reason": "x"}',
        '{"score": "high", "reason": "x"}',
        '{"score": true, "reason": "x"}',
        '{"reason": "no score"}',
        '[0.9, "list"]',
        "",
    ],
)
async def test_an_unparsable_verdict_fails_and_never_crashes(
    upstream: ScriptedUpstream, client: Client, reply: str
) -> None:
    upstream.set_rules([Rule(reply=reply)])
    score = await judge(client, {"threshold": 0.0})
    assert not score.passed
    assert (score.reason or "").startswith("judge returned unparsable output: ")
    assert score.details["raw"] == reply
    assert score.details["unparsable"] == 1


async def test_majority_of_disagreeing_samples(upstream: ScriptedUpstream, client: Client) -> None:
    upstream.set_rules(
        [
            Rule(reply={"score": 1.0, "reason": "Refund offered."}, times=2),
            Rule(reply={"score": 0.0, "reason": "Not polite enough."}),
        ]
    )
    score = await judge(client, {"samples": 3})
    assert score.passed
    assert score.value == pytest.approx(2 / 3)
    assert score.details["agreement"] == pytest.approx(2 / 3)
    assert score.details["mean_score"] == pytest.approx(2 / 3)
    assert sorted(s["passed"] for s in score.details["samples"]) == [False, True, True]
    assert (score.reason or "").startswith("2/3 judge samples passed")
    bodies = chat_bodies(upstream)
    assert sorted(b["seed"] for b in bodies) == [0, 1, 2]
    assert {b["temperature"] for b in bodies} == {0.7}


async def test_a_tie_fails_and_an_unreadable_sample_votes_fail(
    upstream: ScriptedUpstream, client: Client
) -> None:
    upstream.set_rules([Rule(reply={"score": 0.9, "reason": "ok"}, times=1), Rule(reply="??")])
    tie = await judge(client, {"samples": 2, "temperature": 0.3})
    assert not tie.passed
    assert tie.details["agreement"] == 0.5 and tie.details["unparsable"] == 1
    assert tie.value == pytest.approx(0.45)
    assert {b["temperature"] for b in chat_bodies(upstream)} == {0.3}


async def test_spec_threshold_overrides_the_argument(
    upstream: ScriptedUpstream, client: Client
) -> None:
    upstream.set_rules([Rule(reply={"score": 0.9, "reason": "good"})])
    assert (await judge(client, {"threshold": 0.5})).passed
    assert not (await judge(client, {"threshold": 0.5}, threshold=0.95)).passed


async def test_the_judge_model_defaults_to_the_context(
    upstream: ScriptedUpstream, client: Client
) -> None:
    upstream.set_rules([Rule(reply={"score": 1, "reason": "fine"})])
    _, score = build_scorer("llm_judge", {"rubric": RUBRIC})
    ctx = ScorerContext(client=client, judge_model="judge/default-judge")
    result = await cast(CaseScorer, score)(Output(text=ANSWER), CASE, ctx)
    assert result.details["judge"] == "judge/default-judge"
    assert chat_bodies(upstream)[0]["model"] == "default-judge"


async def test_samples_are_cached_apart_and_replay_identically(
    upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    upstream.set_rules(
        [
            Rule(reply={"score": 1.0, "reason": "yes"}, times=1),
            Rule(reply={"score": 0.0, "reason": "no"}),
        ]
    )
    async with Client(_settings(upstream, tmp_path / "home", cache=True)) as cached:
        first = await judge(cached, {"samples": 2})
        second = await judge(cached, {"samples": 2})
    assert len(chat_bodies(upstream)) == 2  # the second scoring came from the cache
    assert sorted(s["score"] for s in first.details["samples"]) == [0.0, 1.0]
    assert first.details["samples"] == second.details["samples"]


async def test_a_failing_judge_call_raises(upstream: ScriptedUpstream, client: Client) -> None:
    upstream.set_rules([Rule(status=500, error_message="judge is down")])
    with pytest.raises(ProviderError):
        await judge(client)


async def test_no_client_fails_cleanly() -> None:
    score = await judge_scorer({})(Output(text=ANSWER), CASE, ScorerContext())
    assert not score.passed and "no model client" in (score.reason or "")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({}, "rubric"),
        ({"rubric": "  "}, "rubric must be a non-empty string"),
        ({"rubric": "r", "samples": 0}, "samples must be a positive integer"),
        ({"rubric": "r", "threshold": 2}, "between 0 and 1"),
        ({"rubric": "r", "temperature": 5}, "temperature"),
        ({"rubric": "r", "max_tokens": 0}, "max_tokens"),
        ({"rubric": "r", "criteria": "x"}, "it accepts: rubric, model, samples"),
    ],
)
def test_llm_judge_bad_arguments(args: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError, match="scorer 'llm_judge'") as caught:
        build_scorer("llm_judge", args)
    assert fragment in str(caught.value)


# -- groundedness ---------------------------------------------------------------------------

KB = ["Refunds are issued within 5 business days.", "Refunds go back to the original card."]


async def grounded(
    client: Client | None, text: str, context: list[str] | None, sources: list[str] | None = None
) -> Score:
    _, score = build_scorer("groundedness", {"model": JUDGE})
    case = Case(id="g1", input="When do I get my refund?", context=context)
    ctx = ScorerContext(client=client)
    return await cast(CaseScorer, score)(Output(text=text, sources=sources), case, ctx)


async def test_groundedness_supported_answer(upstream: ScriptedUpstream, client: Client) -> None:
    upstream.set_rules(
        [Rule(reply={"unsupported_claims": [], "score": 1.0, "reason": "All claims supported."})]
    )
    score = await grounded(client, "Within 5 business days, to your card.", KB)
    assert score.passed and score.value == 1.0
    assert score.details["unsupported_claims"] == [] and score.details["sources"] == 2
    (body,) = chat_bodies(upstream)
    assert body["response_format"]["json_schema"]["name"] == "groundedness"
    prompt = body["messages"][1]["content"]
    assert f"[1] {KB[0]}" in prompt and f"[2] {KB[1]}" in prompt
    assert "<answer>\nWithin 5 business days, to your card.\n</answer>" in prompt


async def test_groundedness_unsupported_claims_fail(
    upstream: ScriptedUpstream, client: Client
) -> None:
    verdict = {
        "unsupported_claims": ["free shipping"],
        "score": 0.5,
        "reason": "One claim unsupported.",
    }
    upstream.set_rules([Rule(reply=verdict)])
    score = await grounded(client, "Refund in 5 days, and free shipping.", KB)
    assert not score.passed and score.value == 0.5
    assert score.details["unsupported_claims"] == ["free shipping"]


async def test_groundedness_uses_retrieved_sources(
    upstream: ScriptedUpstream, client: Client
) -> None:
    upstream.set_rules([Rule(reply={"unsupported_claims": [], "score": 0.9, "reason": "ok"})])
    score = await grounded(client, "5 days.", None, sources=["Refunds take 5 days."])
    assert score.passed
    assert "[1] Refunds take 5 days." in chat_bodies(upstream)[0]["messages"][1]["content"]


async def test_groundedness_without_context_fails_without_calling_the_judge(
    upstream: ScriptedUpstream, client: Client
) -> None:
    score = await grounded(client, "Anything.", None)
    assert not score.passed and score.reason == "no context to check against"
    assert await grounded(client, "Anything.", ["  "]) == score
    assert chat_bodies(upstream) == []


async def test_groundedness_unparsable_verdict(upstream: ScriptedUpstream, client: Client) -> None:
    upstream.set_rules([Rule(reply="The answer seems grounded.")])
    score = await grounded(client, "5 days.", KB)
    assert not score.passed
    assert (score.reason or "").startswith("judge returned unparsable output:")


def test_groundedness_bad_arguments() -> None:
    with pytest.raises(UserError, match=r"scorer 'groundedness'.*between 0 and 1"):
        build_scorer("groundedness", {"threshold": -0.1})
