"""Reference scorers: compare the output text with the case's `expected` answer.

Exact checks (`equals`, `contains`, `regex`, `starts_with`) score 1.0 or 0.0. Similarity
scorers (`levenshtein`, `bleu`, `rouge`, `semantic_similarity`) score the similarity in
0..1 and pass at their `threshold`, which the suite spec's own ``threshold`` overrides.
An `expected` that is a list holds alternative answers: the best one counts.

Example suite entries:

    scorers:
      - {name: equals, args: {ignore_case: true}}
      - {name: contains, args: {values: [refund, sorry], mode: all}}
      - {name: rouge, args: {variant: rouge1, threshold: 0.4}}
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from lockgate.scorers._common import (
    check_threshold,
    errored,
    load_module,
    normalise,
    references_or_failure,
    resolve_threshold,
)
from lockgate.scorers._registry import CaseScorer, ScorerContext, scorer
from lockgate.scorers._types import Case, Output, Score

__all__ = [
    "EMBEDDING_MODEL",
    "bleu",
    "contains",
    "equals",
    "levenshtein",
    "regex",
    "rouge",
    "semantic_similarity",
    "starts_with",
]

EMBEDDING_MODEL = "local/all-minilm-l6-v2"
# sacrebleu tokenizers that need nothing beyond sacrebleu itself (the mecab and
# sentencepiece ones need extra packages or download a model).
BLEU_TOKENIZERS = ("13a", "intl", "zh", "char", "none")
ROUGE_VARIANTS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
REGEX_FLAGS = {
    "i": re.IGNORECASE,
    "ignorecase": re.IGNORECASE,
    "m": re.MULTILINE,
    "multiline": re.MULTILINE,
    "s": re.DOTALL,
    "dotall": re.DOTALL,
    "x": re.VERBOSE,
    "verbose": re.VERBOSE,
    "a": re.ASCII,
    "ascii": re.ASCII,
}


def _pass_fail(ok: bool, reason: str, **details: Any) -> Score:
    return Score(1.0 if ok else 0.0, ok, reason, details)


@scorer("equals", description="The output equals the expected answer (or one of them).")
def equals(value: Any = None, ignore_case: bool = False, strip: bool = True) -> CaseScorer:
    """Exact match against `value` (default: the case's `expected`; a list = alternatives).

    Args:
        value: the answer to require instead of the case's `expected`.
        ignore_case: compare case-insensitively.
        strip: ignore leading and trailing whitespace (on by default).
    """

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        answers = references_or_failure(output, case, value)
        if isinstance(answers, Score):
            return answers
        text = normalise(output.text, ignore_case=ignore_case, strip=strip)
        for answer in answers:
            if normalise(answer, ignore_case=ignore_case, strip=strip) == text:
                return _pass_fail(True, "the output equals the expected answer", matched=answer)
        shown = answers[0] if len(answers) == 1 else answers
        return _pass_fail(False, f"expected {shown!r}, got {output.text!r}", expected=answers)

    return score


@scorer("contains", description="The output contains the given text(s).")
def contains(
    value: Any = None,
    values: Sequence[Any] | None = None,
    mode: str = "any",
    ignore_case: bool = False,
) -> CaseScorer:
    """Substring check: ``mode: any`` passes when one needle is found, ``all`` when every
    one is (its value is then the fraction found). Needles default to `expected`.
    """
    if value is not None and values is not None:
        raise ValueError("give either `value` or `values`, not both")
    if mode not in ("any", "all"):
        raise ValueError(f"mode must be 'any' or 'all', got {mode!r}")
    if values is not None and (isinstance(values, str) or not isinstance(values, Sequence)):
        raise ValueError("`values` must be a list of strings")
    given = list(values) if values is not None else value

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        needles = references_or_failure(output, case, given)
        if isinstance(needles, Score):
            return needles
        text = normalise(output.text, ignore_case=ignore_case)
        found = [n for n in needles if normalise(n, ignore_case=ignore_case) in text]
        missing = [n for n in needles if n not in found]
        details = {"found": found, "missing": missing, "mode": mode}
        if mode == "any":
            ok = bool(found)
            reason = f"found {found[0]!r}" if ok else f"none of {needles!r} in the output"
            return _pass_fail(ok, reason, **details)
        fraction = len(found) / len(needles)
        reason = "found all" if not missing else f"missing {missing!r}"
        return Score(fraction, not missing, reason, details)

    return score


@scorer("regex", description="The output matches a regular expression.")
def regex(
    pattern: str,
    flags: str | Sequence[str] | None = None,
    ignore_case: bool = False,
    fullmatch: bool = False,
    strip: bool = True,
) -> CaseScorer:
    """`re.search` the output for `pattern` (`re.fullmatch` with ``fullmatch: true``).

    Args:
        pattern: a Python regular expression.
        flags: letters (``"ims"``) or names (``[IGNORECASE, DOTALL]``) of `re` flags.
        ignore_case: shorthand for the ``i`` flag.
        fullmatch: the whole output must match.
        strip: ignore leading and trailing whitespace of the output (on by default).
    """
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string, got {pattern!r}")
    compiled_flags = re.IGNORECASE if ignore_case else re.NOFLAG
    names: Sequence[str] = ()
    if isinstance(flags, str):
        names = [flags] if flags.lower() in REGEX_FLAGS else list(flags)
    elif flags is not None:
        names = flags
    for name in names:
        if str(name).lower() not in REGEX_FLAGS:
            raise ValueError(f"unknown regex flag {name!r}; known: i, m, s, x, a (or full names)")
        compiled_flags |= REGEX_FLAGS[str(name).lower()]
    try:
        compiled = re.compile(pattern, compiled_flags)
    except re.error as exc:
        raise ValueError(f"invalid pattern {pattern!r}: {exc}") from None
    find = compiled.fullmatch if fullmatch else compiled.search

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        if (failed := errored(output)) is not None:
            return failed
        text = output.text.strip() if strip else output.text
        found = find(text)
        if found is None:
            how = "fully match" if fullmatch else "match"
            return _pass_fail(False, f"the output does not {how} /{pattern}/", pattern=pattern)
        return _pass_fail(
            True, f"matched {found.group(0)!r}", pattern=pattern, match=found.group(0)
        )

    return score


@scorer("starts_with", description="The output starts with the given text.")
def starts_with(value: Any = None, ignore_case: bool = False, strip: bool = True) -> CaseScorer:
    """Prefix check against `value` (default: `expected`; a list = alternatives)."""

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        prefixes = references_or_failure(output, case, value)
        if isinstance(prefixes, Score):
            return prefixes
        text = normalise(output.text, ignore_case=ignore_case, strip=strip)
        for prefix in prefixes:
            if text.startswith(normalise(prefix, ignore_case=ignore_case, strip=strip)):
                return _pass_fail(True, f"starts with {prefix!r}", matched=prefix)
        return _pass_fail(False, f"does not start with {prefixes!r}", expected=prefixes)

    return score


def _similarity_score(value: float, threshold: float, name: str, details: dict[str, Any]) -> Score:
    ok = value >= threshold
    verdict = ">=" if ok else "<"
    details = {**details, "threshold": threshold}
    return Score(value, ok, f"{name} {value:.3f} {verdict} threshold {threshold:g}", details)


@scorer("levenshtein", description="Normalised edit-distance similarity to the expected text.")
def levenshtein(
    threshold: float = 0.8, ignore_case: bool = False, strip: bool = True
) -> CaseScorer:
    """``1 - distance / max(len)``: "kitten" vs "sitting" is 1 - 3/7 = 0.571 (rapidfuzz)."""
    threshold = check_threshold(threshold)
    distance = load_module("rapidfuzz.distance.Levenshtein", "levenshtein")

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        answers = references_or_failure(output, case)
        if isinstance(answers, Score):
            return answers
        text = normalise(output.text, ignore_case=ignore_case, strip=strip)
        ratios = [
            float(
                distance.normalized_similarity(
                    text, normalise(a, ignore_case=ignore_case, strip=strip)
                )
            )
            for a in answers
        ]
        best = max(range(len(answers)), key=ratios.__getitem__)
        details = {"ratio": ratios[best], "reference": answers[best]}
        return _similarity_score(
            ratios[best], resolve_threshold(ctx, threshold), "similarity", details
        )

    return score


@scorer("bleu", description="Sentence BLEU (sacrebleu) against the expected text(s), 0..1.")
def bleu(threshold: float = 0.3, tokenize: str = "13a", lowercase: bool = False) -> CaseScorer:
    """sacrebleu's `sentence_bleu` (exp smoothing, effective order) divided by 100; a list
    `expected` gives multiple references, as BLEU intends.

    Args:
        threshold: pass at this BLEU (0..1) or above.
        tokenize: a sacrebleu tokenizer: 13a (default), intl, zh, char or none.
        lowercase: compare lower-cased.
    """
    threshold = check_threshold(threshold)
    if tokenize not in BLEU_TOKENIZERS:
        raise ValueError(f"tokenize must be one of {', '.join(BLEU_TOKENIZERS)}; got {tokenize!r}")
    metrics = load_module("sacrebleu.metrics", "bleu")
    # What sacrebleu.sentence_bleu builds on every call, built once.
    metric = metrics.BLEU(lowercase=lowercase, tokenize=tokenize, effective_order=True)

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        refs = references_or_failure(output, case)
        if isinstance(refs, Score):
            return refs
        result = metric.sentence_score(output.text, refs)
        value = min(1.0, max(0.0, float(result.score) / 100.0))
        details = {"bleu": float(result.score), "references": len(refs), "tokenize": tokenize}
        return _similarity_score(value, resolve_threshold(ctx, threshold), "BLEU", details)

    return score


@scorer("rouge", description="ROUGE F-measure (rouge-score) against the expected text(s).")
def rouge(variant: str = "rougeL", threshold: float = 0.5, stemmer: bool = False) -> CaseScorer:
    """rouge-score's `RougeScorer` F-measure; with several references the best one counts.

    rouge-score's tokenizer keeps only ASCII letters and digits, so it suits English text.

    Args:
        variant: rouge1, rouge2, rougeL (default) or rougeLsum.
        threshold: pass at this F-measure or above.
        stemmer: apply the Porter stemmer first ("cats" matches "cat").
    """
    threshold = check_threshold(threshold)
    if variant not in ROUGE_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(ROUGE_VARIANTS)}; got {variant!r}")
    module = load_module("rouge_score.rouge_scorer", "rouge")
    metric = module.RougeScorer([variant], tokenizer=_RougeTokenizer(stemmer))

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        refs = references_or_failure(output, case)
        if isinstance(refs, Score):
            return refs
        if len(refs) == 1:
            result = metric.score(refs[0], output.text)[variant]
        else:
            result = metric.score_multi(refs, output.text)[variant]
        details = {
            "variant": variant,
            "precision": float(result.precision),
            "recall": float(result.recall),
            "fmeasure": float(result.fmeasure),
        }
        value = float(result.fmeasure)
        return _similarity_score(value, resolve_threshold(ctx, threshold), variant, details)

    return score


class _RougeTokenizer:
    """rouge-score's default tokenizer, memoised: the same tokens, computed once per text
    and the Porter stem once per word (stemming is most of ROUGE's cost otherwise)."""

    def __init__(self, stemmer: bool) -> None:
        tokenize = load_module("rouge_score.tokenize", "rouge").tokenize
        stem: Any = None
        if stemmer:
            porter = load_module("nltk.stem.porter", "rouge").PorterStemmer()
            stem = SimpleNamespace(stem=functools.lru_cache(maxsize=65536)(porter.stem))

        @functools.lru_cache(maxsize=1024)
        def tokens(text: str) -> tuple[str, ...]:
            return tuple(tokenize(text, stem))

        self._tokens = tokens

    def tokenize(self, text: str) -> list[str]:
        return list(self._tokens(text))


@scorer(
    "semantic_similarity",
    description="Cosine similarity of sentence embeddings (MiniLM by default).",
    needs_model=True,
)
def semantic_similarity(threshold: float = 0.8, model: str = EMBEDDING_MODEL) -> CaseScorer:
    """Embed the output and the expected text with `model` (``ctx.client.embed``) and
    compare by cosine similarity, clamped to 0..1. Embeddings of expected texts are cached
    for the run in ``ctx.extras`` so repeats do not recompute them.
    """
    threshold = check_threshold(threshold)

    async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
        refs = references_or_failure(output, case)
        if isinstance(refs, Score):
            return refs
        if ctx.client is None:
            return Score(0.0, False, "no model client to compute embeddings with")
        # Read before awaiting: the context is shared by the attempts scored concurrently.
        cutoff = resolve_threshold(ctx, threshold)
        cache: dict[tuple[str, str], list[float]] = ctx.extras.setdefault("semantic_similarity", {})
        todo = [r for r in dict.fromkeys(refs) if (model, r) not in cache]
        response = await ctx.client.embed(model, [output.text, *todo])
        vectors: list[list[float]] = response.vectors
        if len(vectors) != 1 + len(todo):
            return Score(
                0.0, False, f"{model} returned {len(vectors)} embeddings for {1 + len(todo)} texts"
            )
        for ref, vector in zip(todo, vectors[1:], strict=True):
            cache[(model, ref)] = vector
        cosines = [_cosine(vectors[0], cache[(model, r)]) for r in refs]
        best = max(range(len(refs)), key=cosines.__getitem__)
        value = min(1.0, max(0.0, cosines[best])) if math.isfinite(cosines[best]) else math.nan
        details = {"cosine": cosines[best], "reference": refs[best], "model": model}
        return _similarity_score(value, cutoff, "cosine", details)

    return score


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        return math.nan
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    if norm == 0.0:
        return math.nan
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / norm
