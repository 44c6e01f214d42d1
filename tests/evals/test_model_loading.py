"""Loading model binaries from the registry: formats, trust, hash pinning, feature checks."""

from __future__ import annotations

import operator
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from lockgate.config import load_settings
from lockgate.errors import BlobCorrupted, KindMismatch, MissingExtra, UserError
from lockgate.evals._model_loading import SKOPS_TRUSTED_TYPES, LoadedModel, load_model
from lockgate.registry import Registry
from tests.helpers import DESIGN_PROMPT, write

CATEGORIES = ["grocery", "travel", "electronics", "other"]
FEATURES: dict[str, Any] = {
    "amount": "float",
    "hour": "int",
    "merchant_category": {"type": "category", "values": CATEGORIES},
    "card_present": "bool",
}
NUMERIC = {"x1": "float", "x2": "float", "x3": "float"}
# Deliberately not alphabetical: the loader must follow it, not the mapping's key order.
NUMERIC_ORDER = ["x3", "x1", "x2"]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    opened = Registry.open(load_settings(home=tmp_path / "home"), actor="t")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    return [
        {
            "amount": round(float(rng.lognormal(3.5, 1.0)), 2),
            "hour": int(rng.integers(0, 24)),
            "merchant_category": CATEGORIES[int(rng.integers(0, 4))],
            "card_present": bool(rng.random() < 0.6),
        }
        for _ in range(300)
    ]


@pytest.fixture(scope="module")
def labels(rows: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
    return np.array(
        [int((r["amount"] > 60 and not r["card_present"]) or r["hour"] < 4) for r in rows]
    )


@pytest.fixture(scope="module")
def frame_model(rows: list[dict[str, Any]], labels: np.ndarray[Any, Any]) -> Pipeline:
    """Like the fraud example: fitted on a DataFrame, so it knows its column names."""
    encode = ColumnTransformer(
        [
            ("cat", OneHotEncoder(categories=[CATEGORIES]), ["merchant_category"]),
            ("num", "passthrough", ["amount", "hour", "card_present"]),
        ]
    )
    boost = HistGradientBoostingClassifier(max_iter=15, early_stopping=False, random_state=0)
    return Pipeline([("encode", encode), ("boost", boost)]).fit(frame(rows), labels)


@pytest.fixture(scope="module")
def numeric() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A matrix whose columns are x3, x1, x2 (in that order), and labels."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    return x, (x[:, 0] - 2 * x[:, 2] > 0).astype(int)


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame({name: [r[name] for r in rows] for name in FEATURES})


def numeric_rows(x: np.ndarray[Any, Any]) -> list[dict[str, Any]]:
    return [dict(zip(NUMERIC_ORDER, map(float, row), strict=True)) for row in x]


def push(
    registry: Registry,
    directory: Path,
    binary: bytes,
    *,
    fmt: str,
    name: str = "m",
    version: int = 1,
    features: dict[str, Any] | None = None,
    task: str = "classification",
    **extra: Any,
) -> str:
    """Write a descriptor and its binary under `directory`, push them, return the ref."""
    directory.mkdir(parents=True, exist_ok=True)
    filename = f"{name}-v{version}.{fmt}"
    (directory / filename).write_bytes(binary)
    descriptor = {
        "model_id": f"{name}-v{version}",
        "flavor": "onnx" if fmt == "onnx" else "sklearn",
        "format": fmt,
        "file": filename,
        "task": task,
        "features": features if features is not None else FEATURES,
        **extra,
    }
    path = directory / f"{name}-v{version}.yaml"
    path.write_text(yaml.safe_dump(descriptor, sort_keys=False), encoding="utf-8")
    registry.push([path])
    return f"{name}@{version}"


def load(registry: Registry, ref: str) -> LoadedModel:
    return load_model(registry.get(ref), registry.store.blobs)


def positives(probabilities: list[dict[str, float]] | None) -> np.ndarray[Any, Any]:
    assert probabilities is not None
    return np.array([p["1"] for p in probabilities])


# -- skops -------------------------------------------------------------------------------


def test_skops_round_trip_predicts_like_the_in_memory_model(
    registry: Registry, tmp_path: Path, rows: list[dict[str, Any]], frame_model: Pipeline
) -> None:
    binary = skops.io.dumps(frame_model)
    # Trees of a boosted model are a type skops does not trust by default; lockgate does.
    assert set(skops.io.get_untrusted_types(data=binary)) <= set(SKOPS_TRUSTED_TYPES)
    ref = push(registry, tmp_path / "src", binary, fmt="skops")

    model = load(registry, ref)

    assert model.predict(rows) == frame_model.predict(frame(rows)).tolist()
    expected = frame_model.predict_proba(frame(rows))
    probabilities = model.predict_proba(rows)
    assert probabilities is not None and set(probabilities[0]) == {"0", "1"}
    np.testing.assert_allclose(positives(probabilities), expected[:, 1])
    assert all(type(p) is int for p in model.predict(rows[:3]))


def test_skops_file_with_an_untrusted_type_is_refused(
    registry: Registry, tmp_path: Path, numeric: tuple[Any, Any]
) -> None:
    x, y = numeric
    # operator.neg is harmless, but a function reference is exactly what can name
    # something harmful (os.system), so it must be reviewed, not trusted by default.
    binary = skops.io.dumps(make_pipeline(FunctionTransformer(operator.neg), Ridge()).fit(x, y))
    ref = push(
        registry,
        tmp_path / "src",
        binary,
        fmt="skops",
        features=NUMERIC,
        metadata={"feature_order": NUMERIC_ORDER},
    )

    with pytest.raises(UserError, match=r"_operator\.neg") as caught:
        load(registry, ref)
    assert "get_untrusted_types" in str(caught.value)
    assert "trusted: true" in str(caught.value)


def test_trusted_true_accepts_every_type_of_that_skops_file(
    registry: Registry, tmp_path: Path, numeric: tuple[Any, Any]
) -> None:
    x, y = numeric
    fitted = make_pipeline(FunctionTransformer(operator.neg), Ridge()).fit(x, y)
    ref = push(
        registry,
        tmp_path / "src",
        skops.io.dumps(fitted),
        fmt="skops",
        task="regression",
        features=NUMERIC,
        metadata={"feature_order": NUMERIC_ORDER},
        trusted=True,
    )

    model = load(registry, ref)

    np.testing.assert_allclose(model.predict(numeric_rows(x)), fitted.predict(x))
    assert model.predict_proba(numeric_rows(x)) is None  # a regressor has no probabilities


def test_unnamed_columns_follow_feature_order_not_the_mapping_order(
    registry: Registry, tmp_path: Path, numeric: tuple[Any, Any]
) -> None:
    x, y = numeric
    fitted = LogisticRegression().fit(x, y)
    ref = push(
        registry,
        tmp_path / "src",
        skops.io.dumps(fitted),
        fmt="skops",
        features=NUMERIC,
        metadata={"feature_order": NUMERIC_ORDER},
    )

    model = load(registry, ref)

    assert model.predict(numeric_rows(x)) == fitted.predict(x).tolist()
    np.testing.assert_allclose(
        positives(model.predict_proba(numeric_rows(x))), fitted.predict_proba(x)[:, 1]
    )


def test_unnamed_columns_without_feature_order_are_refused(
    registry: Registry, tmp_path: Path, numeric: tuple[Any, Any]
) -> None:
    x, y = numeric
    binary = skops.io.dumps(LogisticRegression().fit(x, y))
    ref = push(registry, tmp_path / "src", binary, fmt="skops", features=NUMERIC)

    with pytest.raises(UserError, match="feature_order"):
        load(registry, ref)


def test_descriptor_features_must_match_the_columns_the_model_was_fitted_on(
    registry: Registry, tmp_path: Path, frame_model: Pipeline
) -> None:
    features = {**FEATURES, "country": "str"}
    del features["hour"]
    ref = push(
        registry, tmp_path / "src", skops.io.dumps(frame_model), fmt="skops", features=features
    )

    with pytest.raises(UserError, match=r"missing: hour; not in the model: country"):
        load(registry, ref)


def test_a_file_that_is_not_skops_is_a_user_error(registry: Registry, tmp_path: Path) -> None:
    ref = push(registry, tmp_path / "src", b"not a zip file", fmt="skops")

    with pytest.raises(UserError, match="not a readable skops file"):
        load(registry, ref)


# -- joblib and pickle -------------------------------------------------------------------


def joblib_bytes(obj: Any, directory: Path) -> bytes:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "dump.joblib"
    joblib.dump(obj, path)
    return path.read_bytes()


@pytest.mark.parametrize("fmt", ["joblib", "pickle"])
def test_pickle_formats_are_refused_unless_trusted(
    registry: Registry,
    tmp_path: Path,
    rows: list[dict[str, Any]],
    frame_model: Pipeline,
    fmt: str,
) -> None:
    binary = (
        joblib_bytes(frame_model, tmp_path / "dump")
        if fmt == "joblib"
        else pickle.dumps(frame_model)
    )
    refused = push(registry, tmp_path / "a", binary, fmt=fmt, name="untrusted")
    allowed = push(registry, tmp_path / "b", binary, fmt=fmt, name="trusted", trusted=True)

    with pytest.raises(UserError, match="can execute arbitrary code") as caught:
        load(registry, refused)
    assert "trusted: true" in str(caught.value)

    model = load(registry, allowed)
    assert model.predict(rows) == frame_model.predict(frame(rows)).tolist()


# -- hash pinning ------------------------------------------------------------------------


def test_a_tampered_blob_is_refused(
    registry: Registry, tmp_path: Path, frame_model: Pipeline
) -> None:
    ref = push(registry, tmp_path / "src", skops.io.dumps(frame_model), fmt="skops")
    blob = registry.store.blobs.path_for(registry.get(ref).files["file"].sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    with pytest.raises(BlobCorrupted, match="corrupted"):
        load(registry, ref)


def test_loads_the_registered_bytes_not_the_source_file(
    registry: Registry,
    tmp_path: Path,
    rows: list[dict[str, Any]],
    labels: np.ndarray[Any, Any],
    frame_model: Pipeline,
) -> None:
    source = tmp_path / "src"
    ref = push(registry, source, skops.io.dumps(frame_model), fmt="skops")
    # After the push, the file next to the descriptor is replaced by another model.
    inverted = clone(frame_model).fit(frame(rows), 1 - labels)
    (source / "m-v1.skops").write_bytes(skops.io.dumps(inverted))

    assert load(registry, ref).predict(rows) == frame_model.predict(frame(rows)).tolist()


# -- ONNX --------------------------------------------------------------------------------


def test_onnx_model_with_one_matrix_input(
    registry: Registry, tmp_path: Path, numeric: tuple[Any, Any]
) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    x, y = numeric
    fitted = LogisticRegression().fit(x, y)
    onx = convert_sklearn(fitted, initial_types=[("X", FloatTensorType([None, 3]))])
    ref = push(
        registry,
        tmp_path / "src",
        onx.SerializeToString(),
        fmt="onnx",
        features=NUMERIC,
        metadata={"feature_order": NUMERIC_ORDER},
    )

    model = load(registry, ref)

    predicted = np.array(model.predict(numeric_rows(x)))
    # float32 inside ONNX: allow a flip only where sklearn's probability is ~0.5.
    margin = np.abs(fitted.predict_proba(x)[:, 1] - 0.5)
    assert np.all((predicted == fitted.predict(x)) | (margin < 1e-5))
    probabilities = model.predict_proba(numeric_rows(x))  # ZipMap output: label -> p
    np.testing.assert_allclose(positives(probabilities), fitted.predict_proba(x)[:, 1], atol=1e-5)


def test_onnx_model_with_one_input_per_feature(
    registry: Registry, tmp_path: Path, rows: list[dict[str, Any]], labels: np.ndarray[Any, Any]
) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    features = {"amount": "float", "merchant_category": FEATURES["merchant_category"]}
    matrix = np.empty((len(rows), 2), dtype=object)
    matrix[:, 0] = [r["amount"] for r in rows]
    matrix[:, 1] = [r["merchant_category"] for r in rows]
    encode = ColumnTransformer(
        [("cat", OneHotEncoder(categories=[CATEGORIES]), [1]), ("num", "passthrough", [0])]
    )
    fitted = Pipeline([("encode", encode), ("lr", LogisticRegression())]).fit(matrix, labels)
    onx = convert_sklearn(
        fitted,
        initial_types=[
            ("amount", FloatTensorType([None, 1])),
            ("merchant_category", StringTensorType([None, 1])),
        ],
        options={"zipmap": False},
    )
    ref = push(registry, tmp_path / "src", onx.SerializeToString(), fmt="onnx", features=features)

    model = load(registry, ref)

    subset = [{k: r[k] for k in features} for r in rows]
    probabilities = model.predict_proba(subset)  # a plain matrix: columns are 0, 1
    np.testing.assert_allclose(
        positives(probabilities), fitted.predict_proba(matrix)[:, 1], atol=1e-5
    )
    assert set(model.predict(subset)) <= {0, 1}


def test_onnx_inputs_that_are_not_the_features_are_refused(
    registry: Registry, tmp_path: Path, numeric: tuple[Any, Any]
) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    x, y = numeric
    two_inputs = make_pipeline(
        ColumnTransformer([("num", "passthrough", [0, 1])]), LogisticRegression()
    ).fit(x[:, :2], y)
    onx = convert_sklearn(
        two_inputs,
        initial_types=[("a", FloatTensorType([None, 1])), ("b", FloatTensorType([None, 1]))],
    )
    ref = push(registry, tmp_path / "src", onx.SerializeToString(), fmt="onnx", features=NUMERIC)

    with pytest.raises(UserError, match=r"ONNX inputs \(a, b\) must be the descriptor's"):
        load(registry, ref)


def test_a_text_category_cannot_feed_a_numeric_onnx_matrix(
    registry: Registry, tmp_path: Path, numeric: tuple[Any, Any]
) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    x, y = numeric
    onx = convert_sklearn(
        LogisticRegression().fit(x, y), initial_types=[("X", FloatTensorType([None, 3]))]
    )
    features = {"x1": "float", "x2": "float", "colour": {"type": "category", "values": ["a"]}}
    ref = push(
        registry,
        tmp_path / "src",
        onx.SerializeToString(),
        fmt="onnx",
        features=features,
        metadata={"feature_order": ["x1", "x2", "colour"]},
    )

    with pytest.raises(UserError, match=r"feature 'colour' \(category\) cannot feed"):
        load(registry, ref)


def test_boolean_classes_are_keyed_true_and_false(
    registry: Registry, tmp_path: Path, numeric: tuple[Any, Any]
) -> None:
    x, y = numeric
    binary = skops.io.dumps(LogisticRegression().fit(x, y.astype(bool)))
    ref = push(
        registry,
        tmp_path / "src",
        binary,
        fmt="skops",
        features=NUMERIC,
        metadata={"feature_order": NUMERIC_ORDER},
    )

    model = load(registry, ref)

    probabilities = model.predict_proba(numeric_rows(x[:2]))
    assert probabilities is not None and set(probabilities[0]) == {"false", "true"}
    assert all(type(p) is bool for p in model.predict(numeric_rows(x[:2])))


def test_garbage_onnx_is_a_user_error(registry: Registry, tmp_path: Path) -> None:
    ref = push(registry, tmp_path / "src", b"\x00garbage", fmt="onnx", features=NUMERIC)

    with pytest.raises(UserError, match="not a loadable ONNX model"):
        load(registry, ref)


# -- features ----------------------------------------------------------------------------


@pytest.fixture
def fraudish(registry: Registry, tmp_path: Path, frame_model: Pipeline) -> LoadedModel:
    return load(
        registry, push(registry, tmp_path / "src", skops.io.dumps(frame_model), fmt="skops")
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"merchant_category": "crypto"}, "feature 'merchant_category': unknown category 'crypto'"),
        ({"amount": None}, "feature 'amount': is null"),
        ({"amount": "lots"}, "feature 'amount': expected a number, got 'lots'"),
        ({"amount": True}, "feature 'amount': expected a number, got True"),
        ({"hour": 3.5}, "feature 'hour': expected an integer, got 3.5"),
        ({"card_present": "maybe"}, "feature 'card_present': expected true or false"),
    ],
)
def test_bad_values_name_the_row_and_the_feature(
    fraudish: LoadedModel, rows: list[dict[str, Any]], change: dict[str, Any], message: str
) -> None:
    bad = [rows[0], {**rows[1], **change}]

    with pytest.raises(UserError, match="input does not match its features") as caught:
        fraudish.predict(bad, ids=["t-1", "t-2"])
    assert f"row 't-2': {message}" in str(caught.value)
    assert "t-1" not in str(caught.value)


def test_a_missing_feature_is_named(fraudish: LoadedModel, rows: list[dict[str, Any]]) -> None:
    row = {k: v for k, v in rows[0].items() if k != "hour"}

    with pytest.raises(UserError, match="row 1: missing feature 'hour'"):
        fraudish.predict_proba([row])


def test_many_problems_are_summarised(fraudish: LoadedModel) -> None:
    with pytest.raises(UserError, match=r"… and 15 more"):
        fraudish.predict([{}] * 5)


def test_text_values_from_csv_are_converted(
    fraudish: LoadedModel, rows: list[dict[str, Any]]
) -> None:
    as_text = [
        {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in r.items()} for r in rows
    ]

    assert fraudish.predict(as_text) == fraudish.predict(rows)
    assert fraudish.predict([]) == []


# -- misuse and missing extras -----------------------------------------------------------


def test_a_prompt_is_not_a_model(registry: Registry, tmp_path: Path) -> None:
    registry.push([write(tmp_path, "prompt.yaml", DESIGN_PROMPT)])

    with pytest.raises(KindMismatch, match="is a prompt, not a model"):
        load(registry, "support-triage@4")


@pytest.mark.parametrize(("fmt", "module"), [("skops", "skops.io"), ("onnx", "onnxruntime")])
def test_a_missing_library_names_the_models_extra(
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    module: str,
) -> None:
    ref = push(registry, tmp_path / "src", b"whatever", fmt=fmt, features=NUMERIC)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail

    with pytest.raises(MissingExtra, match=r'pip install "lockgate\[models\]"') as caught:
        load(registry, ref)
    assert caught.value.extra == "models"
