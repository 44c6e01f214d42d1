"""Per-case cost of the deterministic built-in scorers.

Run: ``python benchmarks/bench_scorers.py [--rounds N] [--cases N]``. Prints microseconds
per case next to the target (under 0.2 ms per case, so scoring never rivals a model call);
never fails on timing. Case scorers are awaited in one event loop on a support-style answer
of ~60 words (and, for BLEU and ROUGE, on a one-sentence answer too), a different variant
each call; dataset scorers score N cases at once and the cost is divided by N. Building a
scorer (imports, compiling schemas and patterns) happens once per run and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from decimal import Decimal
from typing import Any, cast

from lockgate.evals._types import Case, Output
from lockgate.scorers import CaseScorer, DatasetScorer, ScorerContext, build_scorer

TARGET_US = 200.0

ANSWER = (
    "Thanks for reaching out, and sorry about the duplicate charge on your March invoice. "
    "I have refunded the second payment of 49 dollars to the card ending in 4242; refunds "
    "usually appear within five business days. If it has not arrived by then, reply to this "
    "message and we will look into it again right away."
)
REFERENCE = (
    "Sorry for the double charge on your March invoice. We refunded the duplicate payment of "
    "49 dollars to your card ending in 4242, and it should appear within five business days. "
    "If it does not, reply here and we will investigate."
)
SENTENCE = "Your refund of 49 dollars will reach your card within five business days."
SENTENCE_REFERENCE = "The 49 dollar refund reaches your card in five business days."
TRIAGE_JSON = '```json\n{"category": "billing", "confidence": 0.93, "tags": ["refund"]}\n```'
TRIAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "technical", "account", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["category", "confidence"],
}

# (scorer, args, output text, expected)
CASE_SCORERS: list[tuple[str, dict[str, Any], str, Any]] = [
    ("equals", {"ignore_case": True}, "Billing", ["technical", "billing"]),
    ("contains", {"values": ["refund", "business days"], "mode": "all"}, ANSWER, None),
    ("regex", {"pattern": r"\b\d+ dollars\b"}, ANSWER, None),
    ("starts_with", {"value": "Thanks"}, ANSWER, None),
    ("levenshtein", {}, ANSWER, REFERENCE),
    ("bleu", {}, SENTENCE, SENTENCE_REFERENCE),
    ("bleu", {}, ANSWER, REFERENCE),
    ("rouge", {"variant": "rougeL"}, SENTENCE, SENTENCE_REFERENCE),
    ("rouge", {"variant": "rougeL"}, ANSWER, REFERENCE),
    ("rouge", {"variant": "rouge1"}, ANSWER, REFERENCE),
    ("rouge", {"variant": "rouge2", "stemmer": True}, ANSWER, REFERENCE),
    ("json_valid", {}, TRIAGE_JSON, None),
    ("json_schema", {"schema": TRIAGE_SCHEMA}, TRIAGE_JSON, None),
    ("json_field", {"path": "category"}, TRIAGE_JSON, "billing"),
    ("latency_ms", {"max": 2000}, ANSWER, None),
    ("cost_usd", {"max": 0.01}, ANSWER, None),
    ("tokens", {"max": 800}, ANSWER, None),
]

DATASET_SCORERS: list[tuple[str, dict[str, Any]]] = [
    ("accuracy", {}),
    ("f1", {"average": "macro"}),
    ("roc_auc", {}),
    ("log_loss", {}),
    ("rmse", {}),
    ("r2", {}),
]


def variants(text: str, rounds: int) -> list[str]:
    """`rounds` distinct texts like `text` (one word swapped), so no scorer can answer
    from a per-text cache; JSON texts are used as they are."""
    words = text.split(" ")
    if text.startswith("```") or len(words) < 4:
        return [text] * rounds
    fillers = ["quickly", "today", "again", "kindly", "fully", "soon", "also", "now"]
    out = []
    for i in range(rounds):
        copy = list(words)
        copy[i % len(copy)] = fillers[i % len(fillers)]
        out.append(" ".join(copy))
    return out


async def time_case_scorer(
    name: str, args: dict[str, Any], text: str, expected: Any, rounds: int
) -> float:
    _, built = build_scorer(name, args)
    score = cast(CaseScorer, built)
    outputs = [
        Output(
            text=variant,
            latency_ms=840.0,
            cost_usd=Decimal("0.00042"),
            input_tokens=310,
            output_tokens=72,
        )
        for variant in variants(text, rounds)
    ]
    case = Case(id="c1", input="I was charged twice", expected=expected)
    ctx = ScorerContext()
    await score(outputs[0], case, ctx)  # warm up: compiled patterns, first tokenizer calls
    started = time.perf_counter()
    for output in outputs:
        await score(output, case, ctx)
    return (time.perf_counter() - started) / rounds * 1e6


def classification_data(n: int) -> tuple[list[Output], list[Case]]:
    rng = random.Random(7)
    outputs, cases = [], []
    for i in range(n):
        truth = rng.randint(0, 1)
        p = min(0.99, max(0.01, rng.gauss(0.7 if truth else 0.3, 0.2)))
        outputs.append(
            Output(
                text=str(int(p > 0.5)), prediction=int(p > 0.5), probabilities={"0": 1 - p, "1": p}
            )
        )
        cases.append(Case(id=str(i), expected=truth))
    return outputs, cases


def regression_data(n: int) -> tuple[list[Output], list[Case]]:
    rng = random.Random(7)
    outputs, cases = [], []
    for i in range(n):
        truth = rng.uniform(0, 100)
        outputs.append(Output(text="", prediction=truth + rng.gauss(0, 5)))
        cases.append(Case(id=str(i), expected=truth))
    return outputs, cases


def time_dataset_scorer(name: str, args: dict[str, Any], n: int) -> float:
    _, built = build_scorer(name, args)
    score = cast(DatasetScorer, built)
    outputs, cases = regression_data(n) if name in ("rmse", "mae", "r2") else classification_data(n)
    score(outputs, cases)  # warm up
    repeats = 5
    started = time.perf_counter()
    for _ in range(repeats):
        score(outputs, cases)
    return (time.perf_counter() - started) / repeats / n * 1e6


def row(label: str, micros: float) -> str:
    verdict = "ok" if micros < TARGET_US else "OVER"
    return f"{label:<48} {micros:>10.1f} µs   target < {TARGET_US:.0f} µs   {verdict}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="calls per case scorer")
    parser.add_argument("--cases", type=int, default=1000, help="dataset size for dataset scorers")
    options = parser.parse_args()
    print(f"case scorers: µs per case ({options.rounds} calls each)")
    for name, args, text, expected in CASE_SCORERS:
        size = "sentence" if text == SENTENCE else f"{len(text.split())} words"
        label = f"{name} {args}" if len(str(args)) < 30 else f"{name} {{…}}"
        label = f"{label} ({size})" if name in ("bleu", "rouge", "levenshtein") else label
        print(row(label, await time_case_scorer(name, args, text, expected, options.rounds)))
    print(f"\ndataset scorers: µs per case ({options.cases} cases)")
    for name, args in DATASET_SCORERS:
        print(row(f"{name} {args}", time_dataset_scorer(name, args, options.cases)))


if __name__ == "__main__":
    asyncio.run(main())
