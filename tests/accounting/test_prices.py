"""Prices, context windows and cost: bundled data, overrides, local models, Decimal
arithmetic, and the guarantee that nothing is fetched."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import data_snapshot
from genai_prices.types import TieredPrices

from lockgate.accounting import Cost, ModelPrice, PriceTable, cost, format_usd
from lockgate.config import PriceOverride, load_settings
from lockgate.providers._types import Usage

GPT_4O_MINI = "gpt-4o-mini-2024-07-18"


def _genai_entry(provider_id: str, model: str) -> object:
    return data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)[1]


# --- bundled prices and context windows --------------------------------------------------


def test_pinned_gpt_4o_mini_price_comes_from_bundled_data() -> None:
    # OpenAI's published price for gpt-4o-mini: $0.15 in, $0.60 out, $0.075 cached.
    price = PriceTable().lookup("openai", GPT_4O_MINI)
    assert price == ModelPrice(
        input_per_mtok=Decimal("0.15"),
        output_per_mtok=Decimal("0.6"),
        cached_input_per_mtok=Decimal("0.075"),
        context_window=128_000,
        source="genai-prices",
        model_ref="openai/gpt-4o-mini",
    )


def test_anthropic_price() -> None:
    price = PriceTable().lookup("anthropic", "claude-3-5-haiku-latest")
    assert price is not None
    assert (price.input_per_mtok, price.output_per_mtok, price.cached_input_per_mtok) == (
        Decimal("0.8"),
        Decimal("4"),
        Decimal("0.08"),
    )


@pytest.mark.parametrize(
    ("provider_type", "model", "window"),
    [
        ("openai", "gpt-4o", 128_000),
        ("openai", GPT_4O_MINI, 128_000),
        ("openai", "gpt-4.1", 1_000_000),
        ("openai", "gpt-3.5-turbo", 16_385),
        ("openai", "o3-mini", 200_000),
        ("anthropic", "claude-3-5-sonnet-20241022", 200_000),
    ],
)
def test_context_windows(provider_type: str, model: str, window: int) -> None:
    assert PriceTable().context_window(provider_type, model) == window


def test_provider_prefixed_model_id_is_found() -> None:
    table = PriceTable()
    assert table.lookup("openai", "openai/gpt-4o") == table.lookup("openai", "gpt-4o")


def test_tiered_price_uses_the_base_tier() -> None:
    entry = _genai_entry("anthropic", "claude-sonnet-4-5")
    tiered = entry.prices.input_mtok  # type: ignore[attr-defined]
    assert isinstance(tiered, TieredPrices)  # the data really is tiered
    assert tiered.tiers[0].price > tiered.base
    price = PriceTable().lookup("anthropic", "claude-sonnet-4-5")
    assert price is not None
    assert price.input_per_mtok == tiered.base == Decimal("3")
    assert price.output_per_mtok == Decimal("15")


def test_date_dependent_price_is_the_one_in_force_at_the_time() -> None:
    # OpenAI cut o3 from $10 to $2 per million input tokens on 2025-06-10.
    table = PriceTable()
    before = table.lookup("openai", "o3", at=datetime(2025, 6, 1, tzinfo=UTC))
    after = table.lookup("openai", "o3", at=datetime(2025, 6, 11, tzinfo=UTC))
    assert before is not None
    assert after is not None
    assert (before.input_per_mtok, after.input_per_mtok) == (Decimal("10"), Decimal("2"))
    assert table.lookup("openai", "o3") == after


def test_openai_compatible_service_is_priced_by_its_base_url() -> None:
    table = PriceTable()
    groq = table.lookup("openai", "llama-3.1-8b-instant", base_url="https://api.groq.com/openai/v1")
    assert groq is not None
    assert groq.model_ref == "groq/llama-3.1-8b-instant"
    assert groq.input_per_mtok == Decimal("0.05")
    # A self-hosted server is not a priced service: an open model there has no price...
    assert table.lookup("openai", "llama-3.1-8b-instant", base_url="http://gpu-box:8000/v1") is None
    # ...but a proxy in front of OpenAI keeps OpenAI's price.
    proxied = table.lookup("openai", "gpt-4o", base_url="http://llm-proxy.internal/v1")
    assert proxied == table.lookup("openai", "gpt-4o")


def test_other_provider_types_match_by_model_name() -> None:
    price = PriceTable().lookup("replay", "claude-3-haiku-20240307")
    assert price is not None
    assert price.model_ref == "anthropic/claude-3-haiku"


@pytest.mark.parametrize(
    ("provider_type", "model"),
    [
        ("openai", "my-finetune-that-does-not-exist"),
        ("anthropic", "claude-nonexistent-9"),
        ("vllm", "totally-unknown-model"),
        ("openai", "meta-llama/Llama-3.1-8B-Instruct"),  # self-hosted via the openai type
    ],
)
def test_unknown_model_has_no_price_and_unknown_cost(provider_type: str, model: str) -> None:
    table = PriceTable()
    assert table.lookup(provider_type, model) is None
    assert table.context_window(provider_type, model) is None
    result = cost(Usage(input_tokens=10, output_tokens=10), table.lookup(provider_type, model))
    assert result == Cost(None, None, None, None, known=False)
    assert format_usd(result) == "unknown"


# --- local models ------------------------------------------------------------------------


def test_local_models_are_free() -> None:
    price = PriceTable().lookup("local", "qwen2.5-coder-1.5b-instruct")
    assert price is not None
    assert price.source == "local"
    assert price.input_per_mtok == price.output_per_mtok == price.cached_input_per_mtok == 0
    result = cost(Usage(input_tokens=5_000, output_tokens=700, cached_input_tokens=100), price)
    assert result.known
    assert result.usd == 0
    assert format_usd(result) == "$0.000000"


def test_local_context_window_comes_only_from_an_override() -> None:
    assert PriceTable().context_window("local", "qwen2.5-coder-1.5b-instruct") is None
    table = PriceTable({"local/qwen2.5-coder-1.5b-instruct": PriceOverride(context_window=32768)})
    price = table.lookup("local", "qwen2.5-coder-1.5b-instruct")
    assert price is not None
    assert price.context_window == 32768
    assert price.input_per_mtok == 0


# --- overrides ---------------------------------------------------------------------------


def test_full_override_wins_over_bundled_data() -> None:
    override = PriceOverride(
        input_per_mtok=0.1, output_per_mtok=0.4, cached_input_per_mtok=0.05, context_window=64000
    )
    price = PriceTable({f"openai/{GPT_4O_MINI}": override}).lookup("openai", GPT_4O_MINI)
    assert price == ModelPrice(
        Decimal("0.1"),
        Decimal("0.4"),
        Decimal("0.05"),
        64000,
        source="lockgate.yaml+genai-prices",
        model_ref="openai/gpt-4o-mini",
    )


def test_partial_override_keeps_the_other_fields() -> None:
    table = PriceTable({f"openai/{GPT_4O_MINI}": PriceOverride(input_per_mtok=0.12)})
    price = table.lookup("openai", GPT_4O_MINI)
    assert price is not None
    assert price.input_per_mtok == Decimal("0.12")  # exactly, not the float's expansion
    assert price.output_per_mtok == Decimal("0.6")
    assert price.cached_input_per_mtok == Decimal("0.075")
    assert price.context_window == 128_000


def test_override_prices_a_model_the_data_does_not_know() -> None:
    key = "vllm/meta-llama/Llama-3.1-8B-Instruct"
    table = PriceTable({key: PriceOverride(input_per_mtok=0.02, output_per_mtok=0.02)})
    price = table.lookup("openai", "meta-llama/Llama-3.1-8B-Instruct", instance="vllm")
    assert price == ModelPrice(Decimal("0.02"), Decimal("0.02"), None, None, "lockgate.yaml", key)
    # The same model under another instance is not overridden.
    assert table.lookup("openai", "meta-llama/Llama-3.1-8B-Instruct", instance="other") is None


def test_override_keys_match_the_provider_type_and_ignore_case() -> None:
    table = PriceTable({"OpenAI/GPT-4o": PriceOverride(output_per_mtok=1)})
    price = table.lookup("openai", "gpt-4o", instance="openai-eu")
    assert price is not None
    assert price.output_per_mtok == Decimal("1.0")
    assert price.input_per_mtok == Decimal("2.5")


def test_instance_override_beats_type_override() -> None:
    table = PriceTable(
        {
            "openai/gpt-4o": PriceOverride(input_per_mtok=1),
            "azure-eu/gpt-4o": PriceOverride(input_per_mtok=3),
        }
    )
    price = table.lookup("openai", "gpt-4o", instance="azure-eu")
    assert price is not None
    assert price.input_per_mtok == 3


def test_table_from_settings(tmp_path: Path) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "prices:\n  openai/gpt-4o-mini-2024-07-18:\n    input_per_mtok: 0.2\n", encoding="utf-8"
    )
    table = PriceTable.from_settings(load_settings(config, cwd=tmp_path))
    price = table.lookup("openai", GPT_4O_MINI)
    assert price is not None
    assert price.input_per_mtok == Decimal("0.2")
    assert price.output_per_mtok == Decimal("0.6")


# --- cost --------------------------------------------------------------------------------


def _mini() -> ModelPrice:
    price = PriceTable().lookup("openai", GPT_4O_MINI)
    assert price is not None
    return price


def test_cost_is_exact_decimal_arithmetic() -> None:
    usage = Usage(input_tokens=1_234_567, output_tokens=89_012, cached_input_tokens=234_567)
    result = cost(usage, _mini())
    # 1,000,000 uncached x 0.15 + 234,567 cached x 0.075 + 89,012 out x 0.60, per million
    assert result.input_usd == Decimal("0.15")
    assert result.cached_input_usd == Decimal("0.017592525")
    assert result.output_usd == Decimal("0.0534072")
    assert result.usd == Decimal("0.220999725")
    assert result.known
    assert format_usd(result) == "$0.221000"


def test_tiny_costs_are_not_rounded_away() -> None:
    result = cost(Usage(input_tokens=1), _mini())
    assert result.usd == Decimal("0.00000015")
    assert result.usd * 10**8 == 15


def test_cached_tokens_fall_back_to_the_input_rate() -> None:
    price = PriceTable().lookup("openai", "gpt-3.5-turbo")
    assert price is not None
    assert price.cached_input_per_mtok is None
    result = cost(Usage(input_tokens=2_000, cached_input_tokens=500), price)
    assert result.input_usd == Decimal("0.00075")  # 1,500 x $0.50 / 1M
    assert result.cached_input_usd == Decimal("0.00025")  # 500 x $0.50 / 1M
    assert result.usd == Decimal("0.001")


def test_cached_tokens_beyond_input_are_clamped() -> None:
    result = cost(Usage(input_tokens=100, cached_input_tokens=500), _mini())
    assert result.input_usd == 0
    assert result.cached_input_usd == Decimal("0.0000075")


def test_missing_rate_is_unknown_only_when_tokens_need_it() -> None:
    embedding = PriceTable().lookup("openai", "text-embedding-3-small")
    assert embedding is not None
    assert embedding.output_per_mtok is None
    assert cost(Usage(input_tokens=1_000_000), embedding) == Cost(
        Decimal("0.02"), Decimal("0.02"), Decimal(0), Decimal(0), known=True
    )
    with_output = cost(Usage(input_tokens=1_000_000, output_tokens=1), embedding)
    assert with_output.usd is None
    assert not with_output.known
    assert with_output.input_usd == Decimal("0.02")
    assert with_output.output_usd is None


def test_zero_usage_costs_zero() -> None:
    assert cost(Usage(), _mini()) == Cost(Decimal(0), Decimal(0), Decimal(0), Decimal(0), True)


def test_format_usd() -> None:
    assert format_usd(Decimal("0.000123")) == "$0.000123"
    assert format_usd(Decimal("12.5")) == "$12.500000"
    assert format_usd(None) == "unknown"
    assert format_usd(Cost.unknown()) == "unknown"


# --- offline -----------------------------------------------------------------------------


def test_lookups_never_touch_the_network() -> None:
    """A fresh process with sockets disabled and genai-prices' updater booby-trapped still
    looks up prices from the bundled snapshot, and starts no thread."""
    script = textwrap.dedent(
        """
        import socket, threading, urllib.request
        from decimal import Decimal

        def refuse(*args, **kwargs):
            raise AssertionError("network access attempted")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        urllib.request.urlopen = refuse

        import genai_prices.update_prices as update_prices
        import httpx2
        update_prices.UpdatePrices.__init__ = refuse
        update_prices.UpdatePrices.start = refuse
        httpx2.get = refuse
        httpx2.Client.send = refuse

        from genai_prices import data_snapshot
        from lockgate.accounting import PriceTable

        threads = threading.active_count()
        table = PriceTable()
        price = table.lookup("openai", "gpt-4o-mini-2024-07-18")
        assert price.input_per_mtok == Decimal("0.15"), price
        assert table.lookup("openai", "no-such-model") is None
        assert table.context_window("anthropic", "claude-3-5-sonnet-20241022") == 200000
        assert threading.active_count() == threads, "a thread was started"
        assert data_snapshot.get_snapshot().from_auto_update is False
        print("offline ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "offline ok"
