"""Loading registered model binaries safely, and predicting with them.

A model version's binary is read through the blob store, which re-hashes it, and loaded
from those verified bytes, never from the file it was pushed from: what runs is exactly
what the registry recorded. How much a binary is trusted depends on its format:

- ``skops`` loads without running code, but only for types it knows. lockgate accepts
  skops' default-trusted types plus `SKOPS_TRUSTED_TYPES` (scikit-learn's internal
  tree and neighbour structures); any other type is refused unless the descriptor says
  ``trusted: true``, which then trusts every type in that exact (hash-pinned) file.
- ``onnx`` runs in onnxruntime on the CPU; an ONNX graph cannot run Python code.
- ``joblib`` and ``pickle`` can run arbitrary code while loading, so they load only when
  the descriptor says ``trusted: true``.

Inputs are built from the descriptor's ``features``: types are checked and converted,
category values must be among the declared ones, and a bad row is a `UserError` naming
the row and the feature. Columns are matched by name wherever the model knows its column
names (scikit-learn fitted on a DataFrame, ONNX with one input per feature). A model that
takes an unnamed matrix needs ``metadata: {feature_order: [...]}`` in its descriptor: the
order of the ``features`` mapping is not kept (a version's digest is over key-sorted
canonical JSON), so it cannot say which column is which.

Example:
    >>> model = load_model(registry.get("fraud@3"), registry.store.blobs)
    >>> model.predict([{"amount": 12.5, "hour": 3, "merchant_category": "travel", ...}])
    [0]
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from lockgate.errors import KindMismatch, MissingExtra, UserError
from lockgate.registry._kinds import Feature, ModelSpec
from lockgate.registry._registry import ArtifactVersion
from lockgate.store import BlobStore

__all__ = ["SKOPS_TRUSTED_TYPES", "LoadedModel", "load_model"]

SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
)
"""Types lockgate trusts in a skops file on top of skops' own defaults.

They are scikit-learn's fitted-state containers (trees, neighbour indexes, calibrators)
and numpy dtypes: plain data, with no way to name a function to call. skops refuses them
only because it reviews types one by one. Anything else needs ``trusted: true`` in the
model descriptor after a review with ``skops.io.get_untrusted_types``.
"""

_MAX_PROBLEMS = 5
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class Column:
    """One feature as the model receives it."""

    name: str
    type: str
    values: Mapping[str, str | int] | None = None  # category: str(value) -> declared value

    @classmethod
    def of(cls, name: str, declared: str | Feature) -> Column:
        if isinstance(declared, str):
            return cls(name, declared)
        values = None
        if declared.values is not None:
            values = {str(value): value for value in declared.values}
        return cls(name, declared.type, values)

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "int", "bool")

    def convert(self, value: Any) -> Any:
        """The value as this feature's type; ValueError says what is wrong."""
        if value is None:
            raise ValueError("is null")
        if self.type == "category":
            return self._category(value)
        return _CONVERTERS[self.type](value)

    def _category(self, value: Any) -> str | int:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"expected a category (string), got {_show(value)}")
        if self.values is None:
            return value
        try:
            return self.values[str(value)]
        except KeyError:
            allowed = ", ".join(map(str, self.values.values()))
            raise ValueError(f"unknown category {_show(value)}; allowed: {allowed}") from None


class LoadedModel(ABC):
    """A model ready to predict on rows of feature values.

    Attributes:
        ref: the version it was loaded from (``fraud@3``).
        spec: the validated descriptor.
        columns: the features in input order.
    """

    def __init__(self, ref: str, spec: ModelSpec) -> None:
        self.ref = ref
        self.spec = spec
        self.columns = [Column.of(name, declared) for name, declared in spec.features.items()]

    def predict(
        self, rows: Sequence[Mapping[str, Any]], ids: Sequence[str] | None = None
    ) -> list[Any]:
        """One prediction per row: a class label (classification) or a number.

        Args:
            rows: feature name -> value; keys that are not features are ignored.
            ids: row identifiers for error messages (default: the 1-based position).

        Raises:
            UserError: a row misses a feature or has a value of the wrong type or an
                unknown category.
        """
        if not rows:
            return []
        return self._predict(self._validate(rows, ids))

    def predict_proba(
        self, rows: Sequence[Mapping[str, Any]], ids: Sequence[str] | None = None
    ) -> list[dict[str, float]] | None:
        """Class label -> probability per row; None when the model has none.

        Labels are strings: ``str(label)``, and ``true``/``false`` for booleans.
        """
        if not self.has_probabilities:
            return None
        if not rows:
            return []
        return self._predict_proba(self._validate(rows, ids))

    @property
    @abstractmethod
    def has_probabilities(self) -> bool:
        """Whether `predict_proba` gives probabilities (classifiers that compute them)."""

    @abstractmethod
    def _predict(self, columns: list[list[Any]]) -> list[Any]: ...

    @abstractmethod
    def _predict_proba(self, columns: list[list[Any]]) -> list[dict[str, float]]: ...

    def _order_columns(self, what: str) -> None:
        """Put the columns in the order of ``metadata.feature_order`` (unnamed input)."""
        names = sorted(c.name for c in self.columns)
        order = self.spec.metadata.get("feature_order")
        if order is None and len(names) == 1:
            return
        if not isinstance(order, list) or sorted(map(str, order)) != names:
            raise UserError(
                f"model {self.ref}: {what} takes the features as unnamed columns, so the "
                "descriptor must give their order: add 'metadata: {feature_order: [...]}' "
                f"listing {', '.join(names)} in the column order the model was trained "
                "with (the order of the 'features' mapping is not kept)"
            )
        by_name = {c.name: c for c in self.columns}
        self.columns = [by_name[str(name)] for name in order]

    def _validate(
        self, rows: Sequence[Mapping[str, Any]], ids: Sequence[str] | None
    ) -> list[list[Any]]:
        """Feature values column by column, converted; every problem reported at once."""
        if ids is not None and len(ids) != len(rows):
            raise ValueError(f"{len(ids)} ids for {len(rows)} rows")
        out: list[list[Any]] = [[] for _ in self.columns]
        problems: list[str] = []
        for index, row in enumerate(rows):
            where = f"row '{ids[index]}'" if ids is not None else f"row {index + 1}"
            for column, values in zip(self.columns, out, strict=True):
                if column.name not in row:
                    problems.append(f"{where}: missing feature '{column.name}'")
                    continue
                try:
                    values.append(column.convert(row[column.name]))
                except ValueError as exc:
                    problems.append(f"{where}: feature '{column.name}': {exc}")
        if problems:
            more = len(problems) - _MAX_PROBLEMS
            lines = problems[:_MAX_PROBLEMS] + ([f"… and {more} more"] if more > 0 else [])
            raise UserError(
                f"model {self.ref}: input does not match its features:\n  " + "\n  ".join(lines)
            )
        return out


def load_model(version: ArtifactVersion, blobs: BlobStore) -> LoadedModel:
    """Load a model version's binary from the blob store, verified, in a safe way.

    Raises:
        KindMismatch: `version` is not a model.
        UserError: the binary is refused (untrusted types, pickle without ``trusted``) or
            does not match its descriptor.
        MissingExtra: the format's library (skops, onnxruntime, joblib) is missing.
        BlobCorrupted: the stored bytes no longer match the registered sha256.
    """
    if version.kind != "model":
        raise KindMismatch(f"{version.ref} is a {version.kind}, not a model")
    spec = ModelSpec.model_validate(version.spec)
    data = blobs.read_bytes(version.files["file"].sha256)
    name = f"model {version.ref} ({spec.file})"
    if spec.format == "onnx":
        return _OnnxModel(version.ref, spec, _onnx_session(data, name))
    if spec.format == "skops":
        estimator = _load_skops(data, name, trusted_all=spec.trusted)
    else:
        estimator = _load_pickle(data, name, spec)
    return _SklearnModel(version.ref, spec, estimator)


# -- formats -----------------------------------------------------------------------------


def _load_skops(data: bytes, name: str, *, trusted_all: bool) -> Any:
    try:
        import skops.io
    except ImportError:
        raise MissingExtra("loading a skops model", "models", "skops") from None
    try:
        found = skops.io.get_untrusted_types(data=data)
        refused = [t for t in found if t not in SKOPS_TRUSTED_TYPES]
        if refused and not trusted_all:
            raise UserError(
                f"{name}: the skops file contains types lockgate does not trust: "
                f'{", ".join(refused)}. Review them (python -c "import skops.io; '
                "print(skops.io.get_untrusted_types(file='MODEL.skops'))\") and, if you "
                "trust this file, set 'trusted: true' in the model descriptor and push it "
                "as a new version"
            )
        return skops.io.loads(data, trusted=found)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UserError(f"{name}: not a readable skops file: {exc}") from None


def _load_pickle(data: bytes, name: str, spec: ModelSpec) -> Any:
    if not spec.trusted:
        raise UserError(
            f"{name}: refusing to load a {spec.format} file: unpickling can execute "
            "arbitrary code. Prefer skops or ONNX; if you made this file yourself and "
            "trust it, set 'trusted: true' in the model descriptor and push a new version "
            "(its sha256 pins the exact bytes you trusted)"
        )
    try:
        if spec.format == "joblib":
            try:
                import joblib
            except ImportError:
                raise MissingExtra("loading a joblib model", "models", "joblib") from None
            return joblib.load(io.BytesIO(data))
        return pickle.loads(data)  # opted in with trusted: true; the sha256 pins the bytes
    except (pickle.UnpicklingError, EOFError, ImportError, AttributeError, ValueError) as exc:
        raise UserError(f"{name}: cannot load the {spec.format} file: {exc}") from None


def _onnx_session(data: bytes, name: str) -> Any:
    try:
        import onnxruntime
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
    except ImportError:
        raise MissingExtra("loading an ONNX model", "models", "onnxruntime") from None
    try:
        return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.Fail) as exc:
        raise UserError(f"{name}: not a loadable ONNX model: {exc}") from None


# -- scikit-learn (skops, joblib, pickle) --------------------------------------------------


class _SklearnModel(LoadedModel):
    """Any object with scikit-learn's ``predict`` / ``predict_proba`` / ``classes_``."""

    def __init__(self, ref: str, spec: ModelSpec, estimator: Any) -> None:
        super().__init__(ref, spec)
        if not callable(getattr(estimator, "predict", None)):
            raise UserError(f"model {ref}: the loaded {type(estimator).__name__} has no predict")
        self.estimator = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self._frame_columns = [str(n) for n in names] if names is not None else None
        if self._frame_columns is None:
            self._order_columns(f"the {type(estimator).__name__}")
        self._check_features(getattr(estimator, "n_features_in_", None))

    @property
    def has_probabilities(self) -> bool:
        return self.spec.task == "classification" and hasattr(self.estimator, "predict_proba")

    def _predict(self, columns: list[list[Any]]) -> list[Any]:
        return list(np.asarray(self.estimator.predict(self._input(columns))).tolist())

    def _predict_proba(self, columns: list[list[Any]]) -> list[dict[str, float]]:
        matrix = np.asarray(self.estimator.predict_proba(self._input(columns)), dtype=float)
        labels = [_class_key(label) for label in np.asarray(self.estimator.classes_).tolist()]
        return [dict(zip(labels, map(float, row), strict=True)) for row in matrix]

    def _check_features(self, n_features: int | None) -> None:
        declared = [c.name for c in self.columns]
        if self._frame_columns is not None:
            missing = sorted(set(self._frame_columns) - set(declared))
            extra = sorted(set(declared) - set(self._frame_columns))
            if missing or extra:
                raise UserError(
                    f"model {self.ref}: the descriptor's features do not match the columns "
                    f"the model was trained on (missing: {', '.join(missing) or '-'}; "
                    f"not in the model: {', '.join(extra) or '-'})"
                )
        elif n_features is not None and int(n_features) != len(declared):
            raise UserError(
                f"model {self.ref}: the model takes {n_features} features but the "
                f"descriptor lists {len(declared)}; list them in the model's column order"
            )

    def _input(self, columns: list[list[Any]]) -> Any:
        if self._frame_columns is not None:
            # Trained on a DataFrame: give it one, or scikit-learn warns about names.
            try:
                import pandas as pd
            except ImportError:
                raise MissingExtra("a model trained on a DataFrame", "models", "pandas") from None
            by_name = {c.name: values for c, values in zip(self.columns, columns, strict=True)}
            return pd.DataFrame({name: by_name[name] for name in self._frame_columns})
        if all(column.numeric for column in self.columns):
            return np.array(columns, dtype=np.float64).T
        matrix = np.empty((len(columns[0]), len(columns)), dtype=object)
        for index, values in enumerate(columns):
            matrix[:, index] = values
        return matrix


# -- ONNX ----------------------------------------------------------------------------------

_ONNX_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}
_LABEL_OUTPUTS = ("label", "output_label")
_PROBABILITY_OUTPUTS = ("probabilities", "output_probability")


class _OnnxModel(LoadedModel):
    """An onnxruntime session fed either one matrix or one input per feature.

    With a single input, it gets every feature as a column, in the order of the
    descriptor's ``metadata.feature_order``. With several, their names must be the
    feature names (skl2onnx's ``initial_types``), each fed one column. Class
    probabilities come from a ZipMap output (label -> probability) or a plain matrix whose
    columns are ``metadata.classes`` of the descriptor (default ``0, 1, …``).
    """

    def __init__(self, ref: str, spec: ModelSpec, session: Any) -> None:
        super().__init__(ref, spec)
        self.session = session
        self._inputs = [(i.name, i.type, list(i.shape)) for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        self._label = next((o for o in outputs if o in _LABEL_OUTPUTS), outputs[0])
        rest = [o for o in outputs if o != self._label]
        self._proba = next((o for o in rest if o in _PROBABILITY_OUTPUTS), None)
        if self._proba is None and rest and spec.task == "classification":
            self._proba = rest[0]
        self._matrix = self._check_inputs()
        if self._matrix:
            self._order_columns(f"the ONNX input '{self._inputs[0][0]}'")

    @property
    def has_probabilities(self) -> bool:
        return self.spec.task == "classification" and self._proba is not None

    def _predict(self, columns: list[list[Any]]) -> list[Any]:
        (labels,) = self.session.run([self._label], self._feed(columns))
        return list(np.asarray(labels).reshape(len(columns[0]), -1)[:, 0].tolist())

    def _predict_proba(self, columns: list[list[Any]]) -> list[dict[str, float]]:
        (probabilities,) = self.session.run([self._proba], self._feed(columns))
        if isinstance(probabilities, list):  # ZipMap: one {label: probability} per row
            return [{_class_key(k): float(v) for k, v in row.items()} for row in probabilities]
        matrix = np.asarray(probabilities, dtype=float)
        classes = [str(c) for c in self.spec.metadata.get("classes", range(matrix.shape[1]))]
        return [dict(zip(classes, map(float, row), strict=True)) for row in matrix]

    def _check_inputs(self) -> bool:
        """Whether the model takes one matrix (else one input per feature); refuse inputs
        the features cannot feed."""
        for name, onnx_type, _ in self._inputs:
            if onnx_type not in _ONNX_DTYPES:
                raise UserError(
                    f"model {self.ref}: input '{name}' has unsupported type {onnx_type}"
                )
        names = [c.name for c in self.columns]
        if len(self._inputs) == 1 and [self._inputs[0][0]] != names:
            name, onnx_type, shape = self._inputs[0]
            width = shape[-1] if len(shape) == 2 else None
            if isinstance(width, int) and width != len(names):
                raise UserError(
                    f"model {self.ref}: input '{name}' takes {width} columns but the "
                    f"descriptor lists {len(names)} features"
                )
            if onnx_type != "tensor(string)":
                for column in self.columns:
                    self._check_numeric(column, name)
            return True
        types = {name: onnx_type for name, onnx_type, _ in self._inputs}
        if set(types) != set(names):
            raise UserError(
                f"model {self.ref}: the ONNX inputs ({', '.join(sorted(types))}) must be "
                f"the descriptor's features ({', '.join(names)}), or a single matrix input"
            )
        for column in self.columns:
            if types[column.name] != "tensor(string)":
                self._check_numeric(column, column.name)
        return False

    def _check_numeric(self, column: Column, input_name: str) -> None:
        integer_codes = column.values is not None and all(
            isinstance(v, int) for v in column.values.values()
        )
        if not (column.numeric or (column.type == "category" and integer_codes)):
            raise UserError(
                f"model {self.ref}: feature '{column.name}' ({column.type}) cannot feed the "
                f"numeric ONNX input '{input_name}'; encode it inside the model or give it "
                "a string input"
            )

    def _feed(self, columns: list[list[Any]]) -> dict[str, Any]:
        if self._matrix:
            name, onnx_type, _ = self._inputs[0]
            return {name: _tensor(columns, onnx_type).T}
        by_name = {c.name: values for c, values in zip(self.columns, columns, strict=True)}
        return {
            name: _tensor([by_name[name]], onnx_type).reshape((-1, 1) if len(shape) == 2 else -1)
            for name, onnx_type, shape in self._inputs
        }


def _tensor(columns: list[list[Any]], onnx_type: str) -> Any:
    dtype = _ONNX_DTYPES[onnx_type]
    if dtype is np.object_:
        return np.array([[str(v) for v in values] for values in columns], dtype=object)
    return np.array(columns, dtype=dtype)


# -- value conversion ----------------------------------------------------------------------


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {_show(value)}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {_show(value)}") from None


def _to_int(value: Any) -> int:
    number = _to_float(value)
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"expected an integer, got {_show(value)}")
    return int(number)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {_show(value)}")


def _to_str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a string, got {_show(value)}")
    return str(value)


def _to_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise ValueError(f"expected an ISO 8601 date-time, got {_show(value)}")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "float": _to_float,
    "int": _to_int,
    "bool": _to_bool,
    "str": _to_str,
    "datetime": _to_datetime,
}


def _class_key(label: Any) -> str:
    """A class label as a probability key, spelled as in JSON for booleans."""
    if isinstance(label, bool | np.bool_):
        return "true" if label else "false"
    return str(label)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
