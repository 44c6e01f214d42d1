"""Classical dataset scorers, cross-checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pytest
from sklearn import metrics

from lockgate.errors import UserError
from lockgate.evals._types import Case, Output, Score
from lockgate.scorers import DatasetScorer, build_scorer

# A small fraud set: TP=3, FP=1, FN=1, TN=3.
FRAUD_TRUE = [1, 0, 1, 1, 0, 0, 1, 0]
FRAUD_PRED = [1, 0, 0, 1, 0, 1, 1, 0]
FRAUD_PROBA = [0.9, 0.1, 0.4, 0.8, 0.3, 0.6, 0.7, 0.2]

TRIAGE_TRUE = ["billing", "technical", "account", "billing", "other", "technical"]
TRIAGE_PRED = ["billing", "technical", "billing", "billing", "other", "account"]
TRIAGE_CLASSES = ["account", "billing", "other", "technical"]
TRIAGE_PROBA = [
    [0.1, 0.7, 0.1, 0.1],
    [0.1, 0.1, 0.1, 0.7],
    [0.3, 0.5, 0.1, 0.1],
    [0.05, 0.8, 0.05, 0.1],
    [0.1, 0.1, 0.6, 0.2],
    [0.4, 0.1, 0.1, 0.4],
]

# scikit-learn's own regression example.
REG_TRUE = [3, -0.5, 2, 7]
REG_PRED = [2.5, 0.0, 2, 8]


def scorer(name: str, args: dict[str, Any] | None = None) -> DatasetScorer:
    info, score = build_scorer(name, args or {})
    assert info.kind == "dataset"
    return cast(DatasetScorer, score)


def dataset(
    expected: list[Any],
    predictions: list[Any] | None = None,
    *,
    texts: list[str] | None = None,
    probabilities: list[dict[str, float] | None] | None = None,
) -> tuple[list[Output], list[Case]]:
    n = len(expected)
    cases = [Case(id=f"c{i}", expected=e) for i, e in enumerate(expected)]
    outputs = [
        Output(
            text=texts[i] if texts else str((predictions or [None] * n)[i]),
            prediction=(predictions or [None] * n)[i],
            probabilities=probabilities[i] if probabilities else None,
        )
        for i in range(n)
    ]
    return outputs, cases


def fraud_probabilities() -> list[dict[str, float] | None]:
    return [{"0": 1 - p, "1": p} for p in FRAUD_PROBA]


# -- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "function"),
    [
        ("accuracy", metrics.accuracy_score),
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ],
)
def test_binary_metrics_equal_sklearn_and_hand_values(name: str, function: Any) -> None:
    score = scorer(name)(*dataset(FRAUD_TRUE, FRAUD_PRED))
    assert score.details["measured"] == pytest.approx(function(FRAUD_TRUE, FRAUD_PRED))
    assert score.value == pytest.approx(0.75)  # every one of them is 3/4 here
    assert score.passed and "no threshold" in (score.reason or "")


def test_min_threshold() -> None:
    outputs, cases = dataset(FRAUD_TRUE, FRAUD_PRED)
    assert scorer("f1", {"min": 0.75})(outputs, cases).passed
    failed = scorer("f1", {"min": 0.8})(outputs, cases)
    assert not failed.passed and failed.reason == "f1 0.75 < min 0.8"
    assert failed.value == pytest.approx(0.75) and failed.details["min"] == 0.8


@pytest.mark.parametrize("average", ["macro", "weighted", "micro"])
def test_multiclass_averages_equal_sklearn(average: str) -> None:
    outputs, cases = dataset(TRIAGE_TRUE, texts=TRIAGE_PRED)
    for name, function in [("precision", metrics.precision_score), ("f1", metrics.f1_score)]:
        score = scorer(name, {"average": average})(outputs, cases)
        reference = function(TRIAGE_TRUE, TRIAGE_PRED, average=average, zero_division=0)
        assert score.value == pytest.approx(reference)


def test_string_labels_binary_needs_a_positive_label() -> None:
    outputs, cases = dataset(["fraud", "ok", "fraud"], ["fraud", "ok", "ok"])
    with pytest.raises(UserError, match=r"needs pos_label.*fraud, ok"):
        scorer("recall")(outputs, cases)
    assert scorer("recall", {"pos_label": "fraud"})(outputs, cases).value == pytest.approx(0.5)


def test_binary_average_on_multiclass_is_a_user_error() -> None:
    outputs, cases = dataset(TRIAGE_TRUE, TRIAGE_PRED)
    with pytest.raises(UserError, match=r"scorer 'f1'.*multiclass"):
        scorer("f1", {"pos_label": "billing"})(outputs, cases)


def test_predictions_from_text_are_converted_to_the_label_type() -> None:
    texts = [f" {p}\n" for p in FRAUD_PRED]
    score = scorer("accuracy")(*dataset(FRAUD_TRUE, texts=texts))
    assert score.value == pytest.approx(0.75)
    booleans = scorer("f1")(*dataset([True, False, True], texts=["true", "False", "no"]))
    assert booleans.value == pytest.approx(metrics.f1_score([1, 0, 1], [1, 0, 0]))
    as_strings = scorer("accuracy")(*dataset(["1", "2"], [1, 2]))
    assert as_strings.value == 1.0


def test_no_positive_predictions_is_zero_not_a_warning() -> None:
    score = scorer("precision")(*dataset([1, 0, 1], [0, 0, 0]))
    assert score.value == 0.0


# -- probabilities ------------------------------------------------------------------------


def test_binary_roc_auc_equals_sklearn_and_hand_value() -> None:
    outputs, cases = dataset(FRAUD_TRUE, FRAUD_PRED, probabilities=fraud_probabilities())
    score = scorer("roc_auc", {"min": 0.9})(outputs, cases)
    assert score.value == pytest.approx(metrics.roc_auc_score(FRAUD_TRUE, FRAUD_PROBA))
    assert score.value == pytest.approx(15 / 16)  # 15 of 16 positive/negative pairs ordered
    assert score.passed and score.details["pos_label"] == "1"


def test_roc_auc_string_classes_and_pos_label() -> None:
    labels = ["fraud" if y else "ok" for y in FRAUD_TRUE]
    probas: list[dict[str, float] | None] = [{"ok": 1 - p, "fraud": p} for p in FRAUD_PROBA]
    outputs, cases = dataset(labels, probabilities=probas)
    with pytest.raises(UserError, match="need pos_label"):
        scorer("roc_auc")(outputs, cases)
    assert scorer("roc_auc", {"pos_label": "fraud"})(outputs, cases).value == pytest.approx(15 / 16)
    # The positive class's own column is used, so the other choice agrees here.
    negative = scorer("roc_auc", {"pos_label": "ok"})(outputs, cases)
    assert negative.details["pos_label"] == "ok"
    assert negative.value == pytest.approx(
        metrics.roc_auc_score([1 - y for y in FRAUD_TRUE], [1 - p for p in FRAUD_PROBA])
    )


def test_roc_auc_boolean_classes_default_to_true() -> None:
    probas: list[dict[str, float] | None] = [{"False": 1 - p, "True": p} for p in FRAUD_PROBA]
    outputs, cases = dataset([bool(y) for y in FRAUD_TRUE], probabilities=probas)
    assert scorer("roc_auc")(outputs, cases).value == pytest.approx(15 / 16)


@pytest.mark.parametrize("multi_class", ["ovr", "ovo"])
def test_multiclass_roc_auc_equals_sklearn(multi_class: str) -> None:
    probas: list[dict[str, float] | None] = [
        dict(zip(TRIAGE_CLASSES, row, strict=True)) for row in TRIAGE_PROBA
    ]
    outputs, cases = dataset(TRIAGE_TRUE, probabilities=probas)
    score = scorer("roc_auc", {"multi_class": multi_class})(outputs, cases)
    reference = metrics.roc_auc_score(
        TRIAGE_TRUE, TRIAGE_PROBA, multi_class=multi_class, labels=TRIAGE_CLASSES
    )
    assert score.value == pytest.approx(reference)


def test_log_loss_equals_sklearn_and_uses_max() -> None:
    outputs, cases = dataset(FRAUD_TRUE, probabilities=fraud_probabilities())
    reference = metrics.log_loss(FRAUD_TRUE, FRAUD_PROBA)
    score = scorer("log_loss", {"max": 0.5})(outputs, cases)
    assert score.details["measured"] == pytest.approx(reference)
    assert score.passed == (reference <= 0.5) and score.value == (1.0 if score.passed else 0.0)
    assert not scorer("log_loss", {"max": 0.1})(outputs, cases).passed


@pytest.mark.parametrize(
    ("probabilities", "fragment"),
    [
        ([None, {"0": 0.5, "1": 0.5}], "c0: the output has no probabilities"),
        ([{"0": 0.5, "1": 0.5}, {"0": 0.5, "2": 0.5}], "c1: probabilities are for classes"),
        ([{"1": 1.0}, {"1": 1.0}], "at least two classes"),
        ([{"0": 0.5, "1": 0.6}, {"0": 0.5, "1": 0.5}], "c0: probabilities sum to 1.1, not 1"),
        ([{"0": math.nan, "1": 0.5}, {"0": 0.5, "1": 0.5}], "must be finite"),
        ([{"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}], "are not among the probability classes"),
    ],
)
def test_bad_probabilities_are_user_errors(
    probabilities: list[dict[str, float] | None], fragment: str
) -> None:
    outputs, cases = dataset([0, 1], probabilities=probabilities)
    with pytest.raises(UserError, match="scorer 'log_loss'") as caught:
        scorer("log_loss")(outputs, cases)
    assert fragment in str(caught.value)


def test_roc_auc_with_one_class_is_undefined_and_fails() -> None:
    outputs, cases = dataset([1, 1], probabilities=[{"0": 0.2, "1": 0.8}, {"0": 0.4, "1": 0.6}])
    score = scorer("roc_auc")(outputs, cases)
    assert math.isnan(score.value) and not score.passed
    assert "undefined" in (score.reason or "")


# -- regression ---------------------------------------------------------------------------


def test_regression_metrics_equal_sklearn() -> None:
    outputs, cases = dataset(REG_TRUE, REG_PRED)
    mae = scorer("mae")(outputs, cases)
    rmse = scorer("rmse", {"max": 0.7})(outputs, cases)
    r2 = scorer("r2", {"min": 0.9})(outputs, cases)
    assert mae.details["measured"] == pytest.approx(0.5)
    assert rmse.details["measured"] == pytest.approx(math.sqrt(0.375))
    assert r2.details["measured"] == pytest.approx(metrics.r2_score(REG_TRUE, REG_PRED))
    assert rmse.passed and rmse.value == 1.0 and r2.passed and r2.value == 1.0
    over = scorer("rmse", {"max": 0.5})(outputs, cases)
    assert not over.passed and over.value == 0.0 and over.reason == "rmse 0.6124 > max 0.5"


def test_negative_r2_is_a_measurement_not_a_value() -> None:
    score = scorer("r2", {"min": 0.0})(*dataset([1, 2, 3], [3, 2, 1]))
    assert score.details["measured"] == pytest.approx(-3.0)
    assert not score.passed and score.value == 0.0


def test_regression_reads_numbers_from_text() -> None:
    score = scorer("mae")(*dataset(REG_TRUE, texts=["2.5", "0", "2", "8"]))
    assert score.details["measured"] == pytest.approx(0.5)


def test_regression_nan_prediction_never_passes() -> None:
    score = scorer("rmse", {"max": 100})(*dataset([1.0, 2.0], [1.0, math.nan]))
    assert math.isnan(score.value) and not score.passed
    assert score.details["non_finite"] == ["c1"]


def test_r2_with_one_case_is_undefined() -> None:
    score = scorer("r2")(*dataset([1.0], [1.0]))
    assert not score.passed and "undefined" in (score.reason or "")


def test_regression_on_string_labels_is_a_user_error() -> None:
    with pytest.raises(UserError, match="must be numbers"):
        scorer("rmse")(*dataset(["a", "b"], ["a", "b"]))


def test_a_non_numeric_prediction_names_the_case() -> None:
    with pytest.raises(UserError, match="case c1: prediction: 'high' is not a number"):
        scorer("mae")(*dataset([1, 2], texts=["1", "high"]))


# -- shared behaviour ---------------------------------------------------------------------


def test_errored_outputs_are_excluded_and_counted() -> None:
    outputs, cases = dataset(FRAUD_TRUE, FRAUD_PRED)
    outputs = [*outputs, Output(text="", error="Timeout: 30 s")]
    cases = [*cases, Case(id="late", expected=1)]
    score = scorer("accuracy")(outputs, cases)
    assert score.value == pytest.approx(0.75)
    assert score.details["errored"] == 1 and score.details["n"] == 8


def test_all_errored_fails() -> None:
    score = scorer("accuracy")([Output(text="", error="boom")], [Case(id="a", expected=1)])
    assert not score.passed and score.reason == "no scorable outputs"


def test_missing_expected_fails_naming_the_cases() -> None:
    outputs, cases = dataset([1, None, 0, None], [1, 1, 0, 0])
    score = scorer("f1")(outputs, cases)
    assert not score.passed and score.details["missing_expected"] == ["c1", "c3"]
    assert "no `expected`" in (score.reason or "")


def test_mixed_label_types_are_a_user_error() -> None:
    with pytest.raises(UserError, match=r"expected labels mix types \(number, str\)"):
        scorer("accuracy")(*dataset([1, "b"], [1, "b"]))
    with pytest.raises(UserError, match="case c0: `expected` must be a label"):
        scorer("accuracy")(*dataset([{"a": 1}], [1]))


@pytest.mark.parametrize(
    ("name", "args", "fragment"),
    [
        ("f1", {"min": 1.5}, "between 0 and 1"),
        ("f1", {"average": "samples"}, "average must be one of binary, macro, weighted, micro"),
        ("accuracy", {"threshold": 0.8}, "it accepts: min"),
        ("rmse", {"min": 1}, "it accepts: max"),
        ("rmse", {"max": -1}, ">= 0"),
        ("r2", {"min": 2}, "<= 1"),
        ("roc_auc", {"multi_class": "raise"}, "multi_class"),
        ("roc_auc", {"average": "micro"}, "macro"),
    ],
)
def test_bad_arguments(name: str, args: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError, match=f"scorer '{name}'") as caught:
        build_scorer(name, args)
    assert fragment in str(caught.value)


def test_dataset_scores_are_valid_scores() -> None:
    outputs, cases = dataset(FRAUD_TRUE, FRAUD_PRED, probabilities=fraud_probabilities())
    for name in ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]:
        score: Score = scorer(name)(outputs, cases)
        assert 0.0 <= score.value <= 1.0 and "measured" in score.details


def test_numpy_predictions_are_plain_labels() -> None:
    predictions = [np.int64(p) for p in FRAUD_PRED]
    assert scorer("f1")(*dataset(FRAUD_TRUE, predictions)).value == pytest.approx(0.75)
    floats = [np.float32(p) for p in REG_PRED]
    assert scorer("mae")(*dataset(REG_TRUE, floats)).details["measured"] == pytest.approx(0.5)
