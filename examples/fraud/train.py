"""Train the fraud example model and write its registry descriptor.

Regenerates the data with `make_data` (same seed, same rows), fits a gradient-boosted
classifier on the training split, measures it on the held-out split, and writes:

- ``model.skops``: the fitted pipeline, saved with skops (loads without running code);
- ``fraud-v3.yaml``: the model descriptor, with the training-data hash and the holdout
  metrics, ready for ``lockgate push examples/fraud``;
- ``holdout.jsonl``: the held-out split the suite ``fraud-eval-v3`` scores.

Deterministic: the same inputs give byte-identical files, so re-running it does not
create a new registry version.

    .venv/bin/python examples/fraud/train.py
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_data  # lives next to this script, not in a package

HERE = make_data.HERE
MODEL_PATH = HERE / "model.skops"
DESCRIPTOR_PATH = HERE / "fraud-v3.yaml"

_NUMERIC = [name for name in make_data.FEATURES if name != "merchant_category"]

DESCRIPTOR = """\
model_id: fraud-v3
flavor: sklearn
format: skops
file: model.skops
task: classification
label: is_fraud
features:
  amount: float
  hour: int
  merchant_category: {{type: category, values: [{categories}]}}
  card_present: bool
  distance_from_home_km: float
  n_tx_last_24h: int
training_data_hash: {training_data_hash}
metrics: {{f1: {f1:.4f}, roc_auc: {roc_auc:.4f}}}
description: >-
  Card-transaction fraud classifier (HistGradientBoosting, one-hot merchant category),
  trained on synthetic data by examples/fraud/train.py.
"""


def build_pipeline() -> Pipeline:
    """One-hot merchant category, numeric columns as they are, then boosted trees.

    Columns are addressed by name: the model is fitted on a DataFrame, so it records its
    column names (``feature_names_in_``) and lockgate feeds it by name, not by position.
    """
    encode = ColumnTransformer(
        [
            (
                "merchant",
                OneHotEncoder(categories=[list(make_data.CATEGORIES)], sparse_output=False),
                ["merchant_category"],
            ),
            ("numeric", "passthrough", _NUMERIC),
        ]
    )
    # Small and fixed-size (no early stopping) so the file stays small and runs repeat.
    boost = HistGradientBoostingClassifier(
        max_iter=120,
        max_leaf_nodes=15,
        learning_rate=0.1,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    )
    return Pipeline([("encode", encode), ("boost", boost)])


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows' features as a DataFrame, built the way lockgate builds one to predict."""
    return pd.DataFrame({name: [row[name] for row in rows] for name in make_data.FEATURES})


def labels(rows: list[dict[str, Any]]) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.array([row[make_data.LABEL] for row in rows], dtype=np.int64)


def dump_deterministic(model: Pipeline, path: Path) -> None:
    """`skops.io.dump`, made reproducible: the bytes (and so the registry digest) depend on
    the model only.

    skops names each node and array file after the Python ``id()`` of the object, which
    changes from run to run, and stamps the zip entries with the current time. Renumber
    the ids in order of first appearance (a consistent renaming, so shared references
    stay shared) and write the entries with a fixed timestamp.
    """
    buffer = io.BytesIO()
    skops.io.dump(model, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source:
        schema = json.loads(source.read("schema.json"))
        ids: dict[int, int] = {}
        _renumber(schema, ids)
        entries = {"schema.json": json.dumps(schema, indent=1).encode("utf-8")}
        for name in source.namelist():
            if name != "schema.json":
                entries[_renamed(name, ids)] = source.read(name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, entries[name])
    path.write_bytes(out.getvalue())


def _renumber(node: Any, ids: dict[int, int]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("__id__"), int):
            node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
        if isinstance(node.get("file"), str):
            node["file"] = _renamed(node["file"], ids)
        for value in node.values():
            _renumber(value, ids)
    elif isinstance(node, list):
        for value in node:
            _renumber(value, ids)


def _renamed(name: str, ids: dict[int, int]) -> str:
    stem, dot, suffix = name.partition(".")
    if not stem.isdigit():
        return name
    return f"{ids.setdefault(int(stem), len(ids) + 1)}{dot}{suffix}"


def main() -> None:
    started = time.perf_counter()
    train, holdout = make_data.split(make_data.generate())
    make_data.write_holdout(holdout)

    model = build_pipeline().fit(to_frame(train), labels(train))
    x_holdout, y_holdout = to_frame(holdout), labels(holdout)
    f1 = float(f1_score(y_holdout, model.predict(x_holdout)))
    roc_auc = float(roc_auc_score(y_holdout, model.predict_proba(x_holdout)[:, 1]))

    dump_deterministic(model, MODEL_PATH)
    DESCRIPTOR_PATH.write_text(
        DESCRIPTOR.format(
            categories=", ".join(make_data.CATEGORIES),
            training_data_hash=make_data.data_hash(train),
            f1=f1,
            roc_auc=roc_auc,
        ),
        encoding="utf-8",
    )
    print(
        f"trained on {len(train)} rows in {time.perf_counter() - started:.1f}s; "
        f"holdout ({len(holdout)} rows, {int(y_holdout.sum())} fraud): "
        f"F1 {f1:.4f}, ROC AUC {roc_auc:.4f}; "
        f"{MODEL_PATH.name} {MODEL_PATH.stat().st_size / 1024:.0f} KiB"
    )


if __name__ == "__main__":
    main()
