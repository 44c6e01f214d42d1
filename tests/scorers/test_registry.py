"""The scorer registry as users meet it: names, arguments, errors, lazy loading."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, cast

import pytest

import lockgate.scorers
from lockgate.errors import UserError
from lockgate.evals._types import Case, Output, Score
from lockgate.scorers import (
    CaseScorer,
    ScorerContext,
    _registry,
    build_scorer,
    get_scorer,
    registered_scorers,
    scorer,
)

# Each built-in with the smallest valid arguments.
BUILTINS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "equals": ("case", False, {}),
    "contains": ("case", False, {}),
    "regex": ("case", False, {"pattern": "x"}),
    "starts_with": ("case", False, {}),
    "levenshtein": ("case", False, {}),
    "bleu": ("case", False, {}),
    "rouge": ("case", False, {}),
    "semantic_similarity": ("case", True, {}),
    "json_valid": ("case", False, {}),
    "json_schema": ("case", False, {"schema": {"type": "object"}}),
    "json_field": ("case", False, {"path": "category"}),
    "llm_judge": ("case", True, {"rubric": "Is it polite?"}),
    "groundedness": ("case", True, {}),
    "latency_ms": ("case", False, {"max": 1000}),
    "cost_usd": ("case", False, {"max": 0.01}),
    "tokens": ("case", False, {"max": 100}),
    "accuracy": ("dataset", False, {}),
    "precision": ("dataset", False, {}),
    "recall": ("dataset", False, {}),
    "f1": ("dataset", False, {}),
    "roc_auc": ("dataset", False, {}),
    "log_loss": ("dataset", False, {}),
    "rmse": ("dataset", False, {}),
    "mae": ("dataset", False, {}),
    "r2": ("dataset", False, {}),
}
CASE_BUILTINS = [name for name, (kind, _, _) in BUILTINS.items() if kind == "case"]


def test_every_builtin_is_registered_with_its_shape() -> None:
    known = registered_scorers()
    for name, (kind, needs_model, args) in BUILTINS.items():
        info = known[name]
        assert (info.kind, info.needs_model) == (kind, needs_model), name
        assert info.description, f"{name} has no description"
        built, fn = build_scorer(name, args)
        assert built is info and callable(fn)


def test_public_surface_is_sorted_and_complete() -> None:
    exported = list(lockgate.scorers.__all__)
    # isort-style, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in exported:
        assert hasattr(lockgate.scorers, name)
    assert {"scorer", "ScorerContext", "build_scorer", "ENTRY_POINT_GROUP"} <= set(exported)


def test_importing_and_listing_scorers_loads_no_heavy_library() -> None:
    code = (
        "import sys, lockgate.scorers as s;"
        "families = sorted(m for m in sys.modules if m.startswith('lockgate.scorers._')"
        " and m not in ('lockgate.scorers._registry', 'lockgate.scorers._types'));"
        "s.registered_scorers();"
        "heavy = {'sklearn', 'rouge_score', 'nltk', 'sacrebleu', 'rapidfuzz'};"
        "print(families, sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_unknown_scorer_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown scorer 'bleu2'; known scorers: .*bleu, contains"):
        get_scorer("bleu2")


def test_bad_argument_names_say_what_is_accepted() -> None:
    with pytest.raises(UserError) as caught:
        build_scorer("rouge", {"variant": "rougeL", "stem": True})
    message = str(caught.value)
    assert message.startswith("scorer 'rouge': ")
    assert "'stem'" in message and "it accepts: variant, threshold, stemmer" in message


def test_missing_required_argument() -> None:
    with pytest.raises(UserError, match=r"scorer 'latency_ms'.*'max'.*it accepts: max"):
        build_scorer("latency_ms", {})


@pytest.mark.parametrize("name", CASE_BUILTINS)
async def test_an_errored_output_never_passes(name: str) -> None:
    _, fn = build_scorer(name, BUILTINS[name][2])
    output = Output(text='{"category": "billing"}', error="Timeout: no answer in 30 s")
    case = Case(id="c1", expected="billing", context=["some source"])
    score = await cast(CaseScorer, fn)(output, case, ScorerContext())
    assert not score.passed and score.value == 0.0


async def test_a_custom_scorer_registers_and_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_registry", dict(_registry._registry))

    @scorer("shouts", description="The answer is upper case.")
    def shouts(min_length: int = 1) -> CaseScorer:
        async def score(output: Output, case: Case, ctx: ScorerContext) -> Score:
            ok = output.text.isupper() and len(output.text) >= min_length
            return Score(1.0 if ok else 0.0, ok)

        return score

    info, fn = build_scorer("shouts", {"min_length": 3})
    assert info.description == "The answer is upper case."
    assert (await cast(CaseScorer, fn)(Output(text="HEY"), Case(id="1"), ScorerContext())).passed
    assert "shouts" in registered_scorers()


def test_nan_scores_never_pass() -> None:
    assert not Score(float("nan"), True).passed
