"""A suite end to end on the real local model (SmolLM2-135M, offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.config import load_settings
from lockgate.evals import RunStore, reproduce, run_suite
from lockgate.registry import Registry
from tests.helpers import write

pytestmark = pytest.mark.slow


def test_suite_runs_on_smollm2_and_replays_exactly(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path / "home", providers={"local": {"options": {"n_ctx": 1024}}}
    )
    write(
        tmp_path,
        "prompt.yaml",
        """\
        prompt_id: colour-v1
        model: local/smollm2-135m-instruct
        temperature: 0.7
        max_tokens: 24
        system: Answer with one colour word, in JSON.
        template: "Which colour is {{ thing }}?"
        response_format:
          type: object
          properties: {colour: {type: string}}
          required: [colour]
        """,
    )
    write(
        tmp_path,
        "suite.yaml",
        """\
        suite_id: colour-eval-v1
        target: colour@1
        repeats: 2
        concurrency: 2
        cases:
          - {id: grass, vars: {thing: grass}, expected: green}
          - {id: sky, vars: {thing: the sky}, expected: blue}
        scorers:
          - {name: json_valid}
          - {name: json_schema, args: {schema: {type: object, required: [colour]}}}
          - {name: latency_ms, args: {max: 120000}}
        gate: {pass_rate: ">= 1"}
        """,
    )
    registry = Registry.open(settings, actor="t")
    try:
        registry.push([tmp_path / "prompt.yaml", tmp_path / "suite.yaml"])
        report = run_suite("colour-eval@1", settings=settings, registry=registry)
        # JSON-schema-constrained decoding: every answer is valid JSON with a colour.
        assert report.errored == 0
        assert report.status == "passed", report.gate
        assert report.total_output_tokens > 0
        assert report.manifest["model"]["resolved"] == "local/smollm2-135m-instruct"
        attempts = RunStore(registry.store).attempts(report.run_id)
        assert {a.attempt for a in attempts} == {0, 1}
        assert all(a.output.text.strip().startswith("{") for a in attempts)
    finally:
        registry.close()
    # The recorded responses replay to the same scores without touching the model.
    replayed = reproduce(report.run_id, settings=settings)
    assert replayed.identical, replayed.differences
