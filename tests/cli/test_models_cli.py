"""`lockgate models` and `lockgate chat` against the scripted upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.testing import Rule, ScriptedUpstream
from tests.helpers import run_cli, write

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def scripted_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedUpstream]:
    rules = [Rule(match=r"colours", reply="red green blue", usage=(12, 3))]
    with ScriptedUpstream(rules) as up:
        write(
            tmp_path,
            "lockgate.yaml",
            f"""\
            home: home
            providers:
              scripted: {{type: openai, base_url: "{up.url}/v1", max_retries: 0}}
            aliases:
              house-model: scripted/gpt-4o-mini-2024-07-18
            """,
        )
        monkeypatch.chdir(tmp_path)
        yield up


def test_models_list_shows_aliases_prices_and_local_models(
    capsys: Capsys, scripted_config: ScriptedUpstream
) -> None:
    result = run_cli(capsys, "models", "list", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["aliases"]["house-model"] == "scripted/gpt-4o-mini-2024-07-18"
    rows = {row["model"]: row for row in data["models"]}
    assert rows["scripted/gpt-4o-mini-2024-07-18"]["input_per_mtok"] == "0.15"
    assert rows["scripted/gpt-4o-mini-2024-07-18"]["context_window"] == 128000
    assert rows["local/smollm2-135m-instruct"]["available"] is True
    assert "no models named" in rows["openai/…"]["note"]
    table = run_cli(capsys, "models", "list")
    assert "house-model" in table.out and "local/smollm2-135m-instruct" in table.out


@pytest.mark.parametrize("stream", ["--stream", "--no-stream"])
def test_chat_prints_answer_then_tokens_cost_latency(
    capsys: Capsys, scripted_config: ScriptedUpstream, stream: str
) -> None:
    result = run_cli(capsys, "chat", "house-model", "three colours please", stream)
    assert result.code == 0, result.err
    assert result.out.strip() == "red green blue"
    assert "tokens 12 in / 3 out (reported)" in result.err
    assert "cost $0.000004" in result.err  # 12 x 0.15 + 3 x 0.60 per Mtok, shown to 6 places
    assert "cache miss" in result.err
    again = run_cli(capsys, "chat", "house-model", "three colours please", stream)
    assert "cache hit" in again.err


def test_chat_errors(capsys: Capsys, scripted_config: ScriptedUpstream, tmp_path: Path) -> None:
    bad_cache = run_cli(capsys, "chat", "house-model", "hi", "--cache", "sometimes")
    assert bad_cache.code == 2 and "--cache must be one of" in bad_cache.err
    no_provider = run_cli(capsys, "chat", "gpt-4o", "hi")
    assert no_provider.code == 2 and "names no provider" in no_provider.err
    (tmp_path / "schema.json").write_text("{not json")
    bad_schema = run_cli(capsys, "chat", "house-model", "hi", "--json-schema", "schema.json")
    assert bad_schema.code == 2 and "schema.json:1: not valid JSON" in bad_schema.err
    scripted_config.set_rules([Rule(status=500)])
    down = run_cli(capsys, "chat", "house-model", "hi", "--cache", "off")
    assert down.code == 3 and down.err.startswith("failed: ")


def test_models_prepare_verifies_installed_models(capsys: Capsys, tmp_path: Path) -> None:
    result = run_cli(capsys, "models", "prepare", "smollm2-135m-instruct")
    assert result.code == 0, result.err
    assert "ready smollm2-135m-instruct" in result.out
    unknown = run_cli(capsys, "models", "prepare", "gpt-5")
    assert unknown.code == 2 and "unknown local model 'gpt-5'" in unknown.err
