"""Classical metrics over the whole dataset, computed by scikit-learn.

These are ``kind="dataset"`` scorers: called once with every attempt's output. The true
labels (or values) come from each case's `expected`; the predictions from
`Output.prediction`, or, when a target gives none, from its text (``"1"`` → 1, ``"billing"``
→ "billing"). Predictions are converted to the type of the expected labels (strings,
numbers or booleans), so a model answering ``"1"`` is scored against ``expected: 1``.
`roc_auc` and `log_loss` read `Output.probabilities` (class → probability).

Thresholds are named for their direction: ``min`` for higher-is-better metrics (accuracy,
precision, recall, f1, roc_auc, r2), ``max`` for lower-is-better ones (log_loss, rmse, mae).
Without one the metric is only measured and the scorer passes. ``details["measured"]``
holds the metric; `value` is the metric itself where it lies in 0..1 and 1.0/0.0 (pass or
fail) for the unbounded ones (log_loss, rmse, mae, r2).

Errored outputs are left out and counted in ``details["errored"]``. Labels that cannot be
matched up (mixed types, a string where numbers are expected) raise `UserError`.

Example suite entries:

    scorers:
      - {name: f1, args: {min: 0.8, average: macro}}
      - {name: roc_auc, args: {min: 0.9, pos_label: fraud}}
      - {name: rmse, args: {max: 12.5}}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from lockgate.errors import UserError
from lockgate.scorers._classical_data import (
    Data,
    class_key,
    coerce,
    labels,
    prepare,
    probabilities,
)
from lockgate.scorers._common import check_limit, check_threshold, load_module, to_text
from lockgate.scorers._registry import DatasetScorer, scorer
from lockgate.scorers._types import Case, Output, Score

__all__ = ["accuracy", "f1", "log_loss", "mae", "precision", "r2", "recall", "rmse", "roc_auc"]

AVERAGES = ("binary", "macro", "weighted", "micro")


def _call(name: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> float | str:
    """Run a sklearn metric: its float, or the message of the warning saying it is
    undefined (e.g. one class only). Its ValueErrors are the user's labels: UserError."""
    with warnings.catch_warnings():
        # UndefinedMetricWarning and sklearn's other data warnings are UserWarnings.
        warnings.simplefilter("error", UserWarning)
        try:
            return float(function(*args, **kwargs))
        except UserWarning as warning:
            return str(warning)
        except ValueError as exc:
            raise UserError(f"scorer '{name}': {exc}") from None


def _result(
    name: str,
    measured: float | str,
    data: Data,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    bounded: bool = True,
    **extra: Any,
) -> Score:
    details = {**data.details(), **extra}
    if isinstance(measured, str):
        return Score(math.nan, False, f"{name} is undefined: {measured}", details)
    details["measured"] = measured
    passed = not math.isnan(measured)
    if minimum is not None:
        passed = measured >= minimum
        details["min"] = minimum
        reason = f"{name} {measured:.4g} {'>=' if passed else '<'} min {minimum:g}"
    elif maximum is not None:
        passed = measured <= maximum
        details["max"] = maximum
        reason = f"{name} {measured:.4g} {'<=' if passed else '>'} max {maximum:g}"
    else:
        reason = f"{name} {measured:.4g} (measured only: no threshold)"
    value = min(1.0, max(0.0, measured)) if bounded else (1.0 if passed else 0.0)
    return Score(value, passed, reason, details)


def _check_average(average: str) -> str:
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}; got {average!r}")
    return average


def _classification(
    name: str, metric: str, min: float | None, average: str, pos_label: Any
) -> DatasetScorer:
    minimum = None if min is None else check_threshold(min, "min")
    _check_average(average)
    sk = load_module("sklearn.metrics", name)

    def score(outputs: list[Output], cases: list[Case]) -> Score:
        data = prepare(outputs, cases)
        if isinstance(data, Score):
            return data
        y_true, y_pred, kind = labels(data)
        kwargs: dict[str, Any] = {"average": average, "zero_division": 0}
        if average == "binary":
            if pos_label is not None:
                kwargs["pos_label"] = coerce(pos_label, kind, f"scorer '{name}': pos_label")
            elif kind == "str":
                present = sorted({to_text(v) for v in [*y_true, *y_pred]})
                raise UserError(
                    f"scorer '{name}': average 'binary' needs pos_label, the positive class "
                    f"(labels: {', '.join(present)}), or choose average: macro"
                )
        measured = _call(name, getattr(sk, metric), y_true, y_pred, **kwargs)
        return _result(name, measured, data, minimum=minimum, average=average)

    return score


@scorer("accuracy", kind="dataset", description="Fraction of correct predictions (sklearn).")
def accuracy(min: float | None = None) -> DatasetScorer:
    """`sklearn.metrics.accuracy_score`; passes at `min` or above."""
    minimum = None if min is None else check_threshold(min, "min")
    sk = load_module("sklearn.metrics", "accuracy")

    def score(outputs: list[Output], cases: list[Case]) -> Score:
        data = prepare(outputs, cases)
        if isinstance(data, Score):
            return data
        y_true, y_pred, _ = labels(data)
        return _result(
            "accuracy", _call("accuracy", sk.accuracy_score, y_true, y_pred), data, minimum=minimum
        )

    return score


@scorer("precision", kind="dataset", description="Precision of the predictions (sklearn).")
def precision(
    min: float | None = None, average: str = "binary", pos_label: Any = None
) -> DatasetScorer:
    """`precision_score` with `average` binary (needs `pos_label` for string labels),
    macro, weighted or micro; passes at `min` or above."""
    return _classification("precision", "precision_score", min, average, pos_label)


@scorer("recall", kind="dataset", description="Recall of the predictions (sklearn).")
def recall(
    min: float | None = None, average: str = "binary", pos_label: Any = None
) -> DatasetScorer:
    """`recall_score`; arguments as for precision."""
    return _classification("recall", "recall_score", min, average, pos_label)


@scorer("f1", kind="dataset", description="F1 score of the predictions (sklearn).")
def f1(min: float | None = None, average: str = "binary", pos_label: Any = None) -> DatasetScorer:
    """`f1_score`; arguments as for precision."""
    return _classification("f1", "f1_score", min, average, pos_label)


@scorer("roc_auc", kind="dataset", description="Area under the ROC curve (sklearn).")
def roc_auc(
    min: float | None = None,
    pos_label: Any = None,
    multi_class: str = "ovr",
    average: str = "macro",
) -> DatasetScorer:
    """`roc_auc_score` on `Output.probabilities`. Two classes: the positive class's
    probability (`pos_label`; default 1 or true when the classes are 0/1 or booleans).
    More: one-vs-rest (or ``multi_class: ovo``) with `average` macro or weighted."""
    minimum = None if min is None else check_threshold(min, "min")
    if multi_class not in ("ovr", "ovo"):
        raise ValueError(f"multi_class must be 'ovr' or 'ovo', got {multi_class!r}")
    if average not in ("macro", "weighted"):
        raise ValueError(f"average must be 'macro' or 'weighted', got {average!r}")
    sk = load_module("sklearn.metrics", "roc_auc")

    def score(outputs: list[Output], cases: list[Case]) -> Score:
        data = prepare(outputs, cases)
        if isinstance(data, Score):
            return data
        # sklearn itself refuses multiclass rows that do not sum to 1.
        classes, truth, rows = probabilities("roc_auc", data, normalise=False)
        if len(set(truth)) < 2:
            return _result("roc_auc", "only one class in the expected labels", data)
        if len(classes) > 2:
            measured = _call(
                "roc_auc",
                sk.roc_auc_score,
                truth,
                rows,
                labels=classes,
                multi_class=multi_class,
                average=average,
            )
            return _result("roc_auc", measured, data, minimum=minimum, multi_class=multi_class)
        positive = _positive(classes, pos_label)
        column = classes.index(positive)
        measured = _call(
            "roc_auc",
            sk.roc_auc_score,
            [t == positive for t in truth],
            [row[column] for row in rows],
        )
        return _result("roc_auc", measured, data, minimum=minimum, pos_label=positive)

    return score


def _positive(classes: list[str], pos_label: Any) -> str:
    if pos_label is not None:
        positive = class_key(pos_label)
        if positive not in classes:
            raise UserError(f"scorer 'roc_auc': pos_label {pos_label!r} is not one of {classes}")
        return positive
    for default in ("1", "true"):
        if default in classes:
            return default
    raise UserError(
        f"scorer 'roc_auc': two classes need pos_label, the positive class (one of {classes})"
    )


@scorer("log_loss", kind="dataset", description="Cross-entropy of the probabilities (sklearn).")
def log_loss(max: float | None = None) -> DatasetScorer:
    """`log_loss` on `Output.probabilities` (each output's must sum to 1); lower is
    better, passes at `max` or below."""
    maximum = None if max is None else check_limit(max, "max")
    sk = load_module("sklearn.metrics", "log_loss")

    def score(outputs: list[Output], cases: list[Case]) -> Score:
        data = prepare(outputs, cases)
        if isinstance(data, Score):
            return data
        classes, truth, rows = probabilities("log_loss", data, normalise=True)
        measured = _call("log_loss", sk.log_loss, truth, rows, labels=classes)
        return _result("log_loss", measured, data, maximum=maximum, bounded=False)

    return score


def _regression(
    name: str,
    metric: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> DatasetScorer:
    sk = load_module("sklearn.metrics", name)

    def score(outputs: list[Output], cases: list[Case]) -> Score:
        data = prepare(outputs, cases)
        if isinstance(data, Score):
            return data
        y_true, y_pred, kind = labels(data)
        if kind != "number":
            raise UserError(f"scorer '{name}': `expected` values must be numbers, not {kind}")
        bad = [c.id for c, p in zip(data.cases, y_pred, strict=True) if not math.isfinite(p)]
        if bad:
            reason = f"predictions are NaN or infinite for case(s): {', '.join(bad[:10])}"
            return Score(math.nan, False, reason, {**data.details(), "non_finite": bad})
        measured = _call(name, getattr(sk, metric), y_true, y_pred)
        return _result(name, measured, data, minimum=minimum, maximum=maximum, bounded=False)

    return score


@scorer("rmse", kind="dataset", description="Root mean squared error (sklearn); lower is better.")
def rmse(max: float | None = None) -> DatasetScorer:
    """`root_mean_squared_error`; passes at `max` or below."""
    maximum = None if max is None else check_limit(max, "max")
    return _regression("rmse", "root_mean_squared_error", maximum=maximum)


@scorer("mae", kind="dataset", description="Mean absolute error (sklearn); lower is better.")
def mae(max: float | None = None) -> DatasetScorer:
    """`mean_absolute_error`; passes at `max` or below."""
    maximum = None if max is None else check_limit(max, "max")
    return _regression("mae", "mean_absolute_error", maximum=maximum)


@scorer("r2", kind="dataset", description="Coefficient of determination R² (sklearn).")
def r2(min: float | None = None) -> DatasetScorer:
    """`r2_score` (at most 1, can be negative); passes at `min` or above."""
    if min is not None and (
        isinstance(min, bool)
        or not isinstance(min, int | float)
        or not math.isfinite(min)
        or min > 1
    ):
        raise ValueError(f"min must be a number <= 1, got {min!r}")
    minimum = None if min is None else float(min)
    return _regression("r2", "r2_score", minimum=minimum)
