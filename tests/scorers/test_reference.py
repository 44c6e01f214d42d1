"""Reference scorers against known values and the reference libraries themselves."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from lockgate.config import load_settings
from lockgate.errors import UserError
from lockgate.evals._types import Case, Output, Score
from lockgate.providers import Client, EmbeddingResponse, Usage
from lockgate.scorers import CaseScorer, ScorerContext, build_scorer
from lockgate.testing import ScriptedUpstream
from lockgate.testing._upstream_openai import embed_text


async def run(
    name: str,
    args: dict[str, Any],
    text: str,
    expected: Any = None,
    ctx: ScorerContext | None = None,
    **output: Any,
) -> Score:
    info, score = build_scorer(name, args)
    assert info.kind == "case"
    case = Case(id="c1", input="question", expected=expected)
    return await cast(CaseScorer, score)(Output(text=text, **output), case, ctx or ScorerContext())


# -- equals, contains, regex, starts_with -----------------------------------------------


async def test_equals_strips_by_default_and_respects_case() -> None:
    assert (await run("equals", {}, "  billing\n", "billing")).passed
    miss = await run("equals", {}, "Billing", "billing")
    assert not miss.passed and miss.value == 0.0
    assert "expected 'billing'" in (miss.reason or "")
    assert (await run("equals", {"ignore_case": True}, "Billing", "billing")).passed
    assert not (await run("equals", {"strip": False}, "billing\n", "billing")).passed


async def test_equals_accepts_any_of_a_list_and_non_string_expected() -> None:
    score = await run("equals", {}, "account", ["billing", "account"])
    assert score.passed and score.details["matched"] == "account"
    assert (await run("equals", {}, "42", 42)).passed
    assert (await run("equals", {"value": "yes"}, "yes", "no")).passed


async def test_contains_any_and_all() -> None:
    assert (await run("contains", {"values": ["refund", "credit"]}, "we will refund you")).passed
    part = await run("contains", {"values": ["refund", "sorry"], "mode": "all"}, "a refund")
    assert not part.passed and part.value == 0.5
    assert part.details["missing"] == ["sorry"]
    assert (await run("contains", {}, "I see BILLING", "billing", ctx=None)).passed is False
    assert (await run("contains", {"ignore_case": True}, "I see BILLING", "billing")).passed
    assert (await run("contains", {"value": "x"}, "axb")).passed


async def test_regex_search_fullmatch_and_flags() -> None:
    assert (await run("regex", {"pattern": r"\d{3}"}, "order 123 shipped")).passed
    assert not (await run("regex", {"pattern": r"\d{3}", "fullmatch": True}, "order 123")).passed
    assert (await run("regex", {"pattern": r"\d+", "fullmatch": True}, " 123\n")).passed
    assert (await run("regex", {"pattern": "^yes$", "flags": ["IGNORECASE"]}, "YES")).passed
    assert (await run("regex", {"pattern": "a.b", "flags": "s"}, "a\nb")).passed
    assert (await run("regex", {"pattern": "yes", "ignore_case": True}, "YES")).passed
    miss = await run("regex", {"pattern": "^no"}, "yes")
    assert not miss.passed and "/^no/" in (miss.reason or "")


async def test_starts_with() -> None:
    assert (await run("starts_with", {}, "Dear Ana, thanks", "Dear")).passed
    assert not (await run("starts_with", {}, "Hi Ana", "Dear")).passed
    assert (await run("starts_with", {"ignore_case": True}, "dear Ana", ["Hello", "Dear"])).passed


# -- similarity -------------------------------------------------------------------------


async def test_levenshtein_known_ratios() -> None:
    kitten = await run("levenshtein", {}, "kitten", "sitting")
    assert kitten.value == pytest.approx(1 - 3 / 7)  # distance 3 over the longer length 7
    assert not kitten.passed
    assert (await run("levenshtein", {}, "flaw", "lawn")).value == pytest.approx(0.5)
    assert (await run("levenshtein", {}, "same", "same")).value == 1.0
    assert (await run("levenshtein", {}, "", "abc")).value == 0.0
    best = await run("levenshtein", {}, "kitten", ["zzzzzz", "kitchen"])
    assert best.details["reference"] == "kitchen"
    assert (await run("levenshtein", {"ignore_case": True}, "KITTEN", "kitten")).value == 1.0


async def test_levenshtein_threshold_from_args_and_from_the_spec() -> None:
    assert (await run("levenshtein", {"threshold": 0.5}, "kitten", "sitting")).passed
    spec = ScorerContext(threshold=0.5)
    assert (await run("levenshtein", {}, "kitten", "sitting", ctx=spec)).passed
    strict = ScorerContext(threshold=0.9)
    assert not (
        await run("levenshtein", {"threshold": 0.5}, "kitten", "sitting", ctx=strict)
    ).passed


@pytest.mark.parametrize(
    ("hypothesis", "refs"),
    [
        ("the cat sat on the mat", ["the cat sat on the mat"]),
        ("the cat is on the mat", ["there is a cat on the mat"]),
        ("a quick brown fox", ["the quick brown fox jumps", "a fast brown fox"]),
        ("completely different words", ["nothing in common here"]),
    ],
)
async def test_bleu_equals_sacrebleu_sentence_bleu(hypothesis: str, refs: list[str]) -> None:
    score = await run("bleu", {}, hypothesis, refs if len(refs) > 1 else refs[0])
    expected = sacrebleu.sentence_bleu(hypothesis, refs).score / 100
    assert score.value == pytest.approx(expected)
    assert score.passed == (expected >= 0.3)


async def test_bleu_known_value_brevity_penalty() -> None:
    # Every unigram and bigram matches; only the brevity penalty exp(1 - 6/2) applies.
    score = await run("bleu", {}, "the cat", "the cat sat on the mat")
    assert score.value == pytest.approx(math.exp(-2))
    assert not score.passed


async def test_bleu_options() -> None:
    assert (await run("bleu", {"lowercase": True}, "THE CAT SAT", "the cat sat")).value == 1.0
    assert (await run("bleu", {}, "THE CAT SAT", "the cat sat")).value < 0.3
    char = await run("bleu", {"tokenize": "char"}, "今天天气很好", "今天天气很好")
    assert char.value == pytest.approx(1.0)


@pytest.mark.parametrize("variant", ["rouge1", "rouge2", "rougeL", "rougeLsum"])
@pytest.mark.parametrize("stemmer", [False, True])
async def test_rouge_equals_rouge_score(variant: str, stemmer: bool) -> None:
    prediction, target = "the cats were sitting on the mat", "the cat sat on the mat"
    score = await run("rouge", {"variant": variant, "stemmer": stemmer}, prediction, target)
    reference = rouge_scorer.RougeScorer([variant], use_stemmer=stemmer)
    assert score.value == pytest.approx(reference.score(target, prediction)[variant].fmeasure)


async def test_rouge_known_values() -> None:
    # LCS "the cat on mat" = 4 tokens: P = 4/6, R = 4/7, F = 16/26.
    score = await run("rouge", {}, "the cat sat on the mat", "the cat is sitting on a mat")
    assert score.value == pytest.approx(16 / 26)
    assert score.details["precision"] == pytest.approx(4 / 6)
    assert score.passed
    plain = await run("rouge", {"variant": "rouge1"}, "cats sitting", "cat sits")
    stemmed = await run("rouge", {"variant": "rouge1", "stemmer": True}, "cats sitting", "cat sits")
    assert plain.value == 0.0 and stemmed.value == 1.0


async def test_rouge_takes_the_best_reference() -> None:
    score = await run(
        "rouge", {}, "the cat sat on the mat", ["a dog barked", "the cat sat on the mat"]
    )
    assert score.value == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("equals", {}),
        ("contains", {}),
        ("starts_with", {}),
        ("levenshtein", {}),
        ("bleu", {}),
        ("rouge", {}),
        ("semantic_similarity", {}),
    ],
)
async def test_missing_expected_fails_with_a_reason(name: str, args: dict[str, Any]) -> None:
    score = await run(name, args, "anything", None)
    assert not score.passed
    assert "no `expected`" in (score.reason or "")


@pytest.mark.parametrize(
    ("name", "args", "fragment"),
    [
        ("levenshtein", {"treshold": 0.5}, "threshold"),
        ("levenshtein", {"threshold": 1.5}, "between 0 and 1"),
        ("levenshtein", {"threshold": math.nan}, "between 0 and 1"),
        ("bleu", {"tokenize": "ja-mecab"}, "tokenize"),
        ("rouge", {"variant": "rouge3"}, "variant"),
        ("regex", {}, "pattern"),
        ("regex", {"pattern": "("}, "invalid pattern"),
        ("regex", {"pattern": "a", "flags": "q"}, "unknown regex flag"),
        ("contains", {"mode": "some"}, "mode"),
        ("contains", {"value": "a", "values": ["b"]}, "not both"),
        ("contains", {"values": "abc"}, "list"),
    ],
)
def test_bad_arguments_are_user_errors(name: str, args: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError, match=f"scorer '{name}'") as caught:
        build_scorer(name, args)
    assert fragment in str(caught.value)


async def test_an_errored_output_never_passes() -> None:
    score = await run("equals", {}, "billing", "billing", error="Timeout: upstream")
    assert not score.passed and "errored" in (score.reason or "")


# -- semantic similarity ------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(embedding_dims=64) as up:
        yield up


@pytest.fixture
async def scripted_client(upstream: ScriptedUpstream, tmp_path: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        home=tmp_path / "home",
        providers={"emb": {"type": "openai", "base_url": upstream.url + "/v1", "max_retries": 0}},
        cache={"enabled": False},
    )
    async with Client(settings) as client:
        yield client


def _cosine(a: str, b: str) -> float:
    va, vb = embed_text(a, 64), embed_text(b, 64)
    return sum(x * y for x, y in zip(va, vb, strict=True))


async def test_semantic_similarity_is_the_cosine_of_the_embeddings(
    upstream: ScriptedUpstream, scripted_client: Client
) -> None:
    ctx = ScorerContext(client=scripted_client)
    args = {"model": "emb/text-embedding-3-small", "threshold": 0.5}
    output, expected = "refunds take five days", "refunds take five business days"
    score = await run("semantic_similarity", args, output, expected, ctx=ctx)
    assert score.details["cosine"] == pytest.approx(_cosine(output, expected))
    assert score.value == pytest.approx(max(0.0, _cosine(output, expected)))
    assert score.passed == (score.value >= 0.5)
    same = await run("semantic_similarity", args, expected, expected, ctx=ctx)
    assert same.value == pytest.approx(1.0) and same.passed


async def test_semantic_similarity_caches_expected_embeddings(
    upstream: ScriptedUpstream, scripted_client: Client
) -> None:
    ctx = ScorerContext(client=scripted_client)
    args = {"model": "emb/text-embedding-3-small"}
    for text in ("first answer", "second answer"):
        await run("semantic_similarity", args, text, "the reference", ctx=ctx)
    bodies = [r.body for r in upstream.requests if r.path == "/v1/embeddings"]
    assert [b["input"] for b in bodies if b] == [
        ["first answer", "the reference"],
        ["second answer"],
    ]


async def test_semantic_similarity_without_a_client_fails() -> None:
    score = await run("semantic_similarity", {}, "a", "a")
    assert not score.passed and "no model client" in (score.reason or "")


class _ZeroEmbeddings:
    """A client whose embeddings are all zero: cosine is undefined (NaN)."""

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        return EmbeddingResponse(model, [[0.0, 0.0] for _ in inputs], Usage())


async def test_semantic_similarity_nan_never_passes() -> None:
    ctx = ScorerContext(client=_ZeroEmbeddings(), threshold=0.0)
    score = await run("semantic_similarity", {}, "a", "a", ctx=ctx)
    assert math.isnan(score.value) and not score.passed


@pytest.mark.slow
async def test_semantic_similarity_with_the_local_minilm(tmp_path: Path) -> None:
    async with Client(load_settings(home=tmp_path / "home")) as client:
        ctx = ScorerContext(client=client)
        close = await run(
            "semantic_similarity",
            {},
            "The invoice charged me twice this month.",
            "I was billed two times for the same month.",
            ctx=ctx,
        )
        far = await run(
            "semantic_similarity",
            {},
            "The invoice charged me twice this month.",
            "My cat likes to sleep in the sun.",
            ctx=ctx,
        )
    assert close.details["model"] == "local/all-minilm-l6-v2"
    assert close.value > far.value
    assert close.value > 0.5 and far.value < 0.3
    assert not far.passed
