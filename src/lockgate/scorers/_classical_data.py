"""Getting a dataset ready for scikit-learn: labels, predictions and probabilities.

Cases give the truth (`expected`), outputs the predictions (`prediction`, else the text).
Predictions are converted to the type of the expected labels; anything that cannot be
lined up is the user's to fix and raises `UserError` naming the case.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from lockgate.errors import UserError
from lockgate.scorers._common import to_text
from lockgate.scorers._types import Case, Output, Score

__all__ = ["Data", "LabelKind", "class_key", "coerce", "labels", "prepare", "probabilities"]

LabelKind = Literal["str", "bool", "number"]
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Data:
    """The scorable attempts: outputs and cases aligned, errored ones left out."""

    outputs: list[Output]
    cases: list[Case]
    errored: int

    def details(self) -> dict[str, Any]:
        return {"n": len(self.outputs), "errored": self.errored}


def prepare(outputs: list[Output], cases: list[Case]) -> Data | Score:
    if len(outputs) != len(cases):
        raise ValueError(f"got {len(outputs)} outputs for {len(cases)} cases")
    pairs = [(o, c) for o, c in zip(outputs, cases, strict=True) if o.error is None]
    errored = len(outputs) - len(pairs)
    if not pairs:
        return Score(math.nan, False, "no scorable outputs", {"n": 0, "errored": errored})
    missing = sorted({c.id for _, c in pairs if c.expected is None})
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        reason = f"{len(missing)} case(s) have no `expected` value: {shown}"
        return Score(math.nan, False, reason, {"missing_expected": missing, "errored": errored})
    return Data([o for o, _ in pairs], [c for _, c in pairs], errored)


def _plain(value: Any) -> Any:
    """numpy scalars (a model's raw output) as the Python values they hold."""
    return value.item() if type(value).__module__ == "numpy" else value


def _from_text(text: str) -> Any:
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        return stripped
    return value if isinstance(value, str | int | float | bool) else stripped


def _kind(values: list[Any], cases: list[Case]) -> LabelKind:
    kinds = set()
    for value, case in zip(values, cases, strict=True):
        if isinstance(value, bool):
            kinds.add("bool")
        elif isinstance(value, int | float):
            kinds.add("number")
        elif isinstance(value, str):
            kinds.add("str")
        else:
            raise UserError(
                f"case {case.id}: `expected` must be a label (string, number or boolean), "
                f"got {type(value).__name__}"
            )
    if kinds == {"str"}:
        return "str"
    if kinds == {"bool"}:
        return "bool"
    if kinds == {"number"}:
        return "number"
    raise UserError(f"the expected labels mix types ({', '.join(sorted(kinds))})")


def coerce(value: Any, kind: LabelKind, where: str) -> Any:
    """`value` as a label of `kind`, or UserError saying which case and why."""
    if kind == "str":
        return value if isinstance(value, str) else to_text(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = to_text(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise UserError(f"{where}: {value!r} is not a boolean like the expected labels")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value.strip())
            except ValueError:
                continue
    raise UserError(f"{where}: {value!r} is not a number like the expected labels")


def labels(data: Data) -> tuple[list[Any], list[Any], LabelKind]:
    """(y_true, y_pred, label kind) with predictions converted to the expected type."""
    y_true = [_plain(c.expected) for c in data.cases]
    kind = _kind(y_true, data.cases)
    y_pred = [
        coerce(
            _plain(o.prediction) if o.prediction is not None else _from_text(o.text),
            kind,
            f"case {c.id}: prediction",
        )
        for o, c in zip(data.outputs, data.cases, strict=True)
    ]
    return y_true, y_pred, kind


def class_key(value: Any) -> str:
    """One spelling per class for probability keys and labels: ``True``/``true`` → "true",
    ``1``/``1.0``/``"1.0"`` → "1"."""
    text = value if isinstance(value, str) else to_text(value)
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def probabilities(
    name: str, data: Data, *, normalise: bool
) -> tuple[list[str], list[str], list[list[float]]]:
    """(classes, true class keys, probability rows in class order)."""
    classes: list[str] | None = None
    rows: list[list[float]] = []
    for output, case in zip(data.outputs, data.cases, strict=True):
        if not output.probabilities:
            raise UserError(f"scorer '{name}': case {case.id}: the output has no probabilities")
        probs = {class_key(k): float(v) for k, v in output.probabilities.items()}
        if classes is None:
            classes = sorted(probs)
            if len(classes) < 2:
                raise UserError(f"scorer '{name}': probabilities must cover at least two classes")
        elif sorted(probs) != classes:
            raise UserError(
                f"scorer '{name}': case {case.id}: probabilities are for classes "
                f"{sorted(probs)}, others are for {classes}"
            )
        row = [probs[c] for c in classes]
        if not all(math.isfinite(p) for p in row):
            raise UserError(f"scorer '{name}': case {case.id}: probabilities must be finite")
        if normalise:
            total = math.fsum(row)
            if abs(total - 1.0) > _SUM_TOLERANCE:
                raise UserError(
                    f"scorer '{name}': case {case.id}: probabilities sum to {total:g}, not 1"
                )
            row = [p / total for p in row]
        rows.append(row)
    assert classes is not None  # prepare never returns an empty Data
    truth = [class_key(c.expected) for c in data.cases]
    unknown = sorted(set(truth) - set(classes))
    if unknown:
        raise UserError(
            f"scorer '{name}': expected labels {unknown} are not among the probability "
            f"classes {classes}"
        )
    return classes, truth, rows
