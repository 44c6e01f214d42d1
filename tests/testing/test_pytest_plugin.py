"""The pytest plugin: a suite gating inside a user's own test run."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import EXAMPLES

from lockgate.config import load_settings
from lockgate.registry import Registry


@pytest.fixture
def fraud_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "fraud-eval-v9.yaml").write_text(
        (EXAMPLES / "fraud" / "fraud-eval-v3.yaml")
        .read_text()
        .replace("fraud-eval-v3", "fraud-eval-v9")
        .replace("{min: 0.5}", "{min: 0.99}")
        .replace("dataset: holdout.jsonl", f"dataset: {EXAMPLES / 'fraud' / 'holdout.jsonl'}")
    )
    registry = Registry.open(load_settings(home=home), actor="t")
    registry.push([EXAMPLES / "fraud", strict])
    registry.close()
    monkeypatch.setenv("LOCKGATE_HOME", str(home))
    return home


def test_lockgate_suite_fixture_passes_and_fails_tests_by_gate(
    pytester: pytest.Pytester, fraud_home: Path
) -> None:
    pytester.makepyfile(
        """
        def test_model_gate(lockgate_suite):
            report = lockgate_suite("fraud-eval@3")
            assert report.gate_passed

        def test_strict_gate(lockgate_suite):
            lockgate_suite("fraud-eval@9")

        def test_report_without_check(lockgate_suite):
            report = lockgate_suite("fraud-eval@9", check=False)
            assert not report.gate_passed
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*lockgate gate failed: fraud-eval@9 on fraud@3*", "*✗ f1 0.6279 < min 0.99*"]
    )
