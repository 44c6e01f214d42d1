"""A worse classical model is caught by no_regression_vs, row by row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import skops.io
from sklearn.dummy import DummyClassifier

from lockgate.config import load_settings
from lockgate.evals import run_suite
from lockgate.registry import Registry
from tests.conftest import EXAMPLES


def test_always_legit_model_is_a_significant_regression(tmp_path: Path) -> None:
    lines = (EXAMPLES / "fraud" / "holdout.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    frame = pd.DataFrame([row["vars"] for row in rows])
    lazy = DummyClassifier(strategy="most_frequent").fit(frame, [row["expected"] for row in rows])
    work = tmp_path / "fraud"
    shutil.copytree(EXAMPLES / "fraud", work, ignore=shutil.ignore_patterns("*.py", ".*"))
    skops.io.dump(lazy, work / "lazy.skops")
    (work / "fraud-v4.yaml").write_text(
        (work / "fraud-v3.yaml")
        .read_text()
        .replace("model_id: fraud-v3", "model_id: fraud-v4")
        .replace("file: model.skops", "file: lazy.skops")
    )
    settings = load_settings(home=tmp_path / "home")
    registry = Registry.open(settings, actor="t")
    try:
        registry.push([work])
        registry.set_label("fraud@3", "production")
        baseline = run_suite("fraud-eval@3", settings=settings, registry=registry)
        assert baseline.gate_passed
        assert baseline.pass_rate == baseline.metrics["accuracy"]  # each row is a case

        worse = run_suite("fraud-eval@3", target="fraud@4", settings=settings, registry=registry)
    finally:
        registry.close()
    assert worse.comparison is not None
    # Every fraud the real model caught is now missed; a few false alarms are now right.
    assert len(worse.comparison.newly_failing) > 3 * len(worse.comparison.newly_passing)
    assert worse.comparison.significant_regression
    failing = {check.name for check in worse.gate if not check.passed}
    assert failing >= {"f1", "roc_auc", "no_regression_vs production"}
    assert worse.status == "failed"
