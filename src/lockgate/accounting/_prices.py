"""Model prices and context windows: ``lockgate.yaml`` overrides over genai-prices data.

Prices come from the data bundled in the ``genai-prices`` wheel. Only its offline
snapshot is read: its ``UpdatePrices`` updater, which downloads fresh data in a
background thread, is never created, so a lookup never touches the network.

Where genai-prices has more than one price for a model, lockgate takes the standard
price in force at the time of the lookup (the ``at`` argument, now by default):

- date-dependent prices: the one whose start date has passed;
- time-of-day prices (off-peak discounts): the one for the current time;
- token tiers (a higher rate once a prompt passes e.g. 200k tokens): the base tier;
- request variants (batch, flex, priority tiers): none, the standard price.

So a prompt above a tier threshold costs more than lockgate reports; add an override
if that matters for a model you use.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, Provider, TieredPrices

    from lockgate.config import PriceOverride, Settings

__all__ = ["ModelPrice", "PriceTable"]

_GENAI_PRICES = "genai-prices"
_OVERRIDE = "lockgate.yaml"
_LOCAL = "local"
# lockgate provider types whose models genai-prices lists under a provider of its own.
_PROVIDER_IDS: Mapping[str, str] = {"openai": "openai", "anthropic": "anthropic"}
_CACHE_SIZE = 4096
_CURRENT_TTL_S = 60.0
_ZERO = Decimal(0)


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens and the context window of one model.

    A rate of None means the source does not say (the cost of tokens billed at it is
    unknown); ``Decimal(0)`` means free.

    Attributes:
        input_per_mtok: uncached input tokens.
        output_per_mtok: output tokens (reasoning tokens included).
        cached_input_per_mtok: input tokens served from the provider's prompt cache.
        context_window: the most tokens (input + output) a request may use.
        source: where the numbers come from: ``genai-prices``, ``lockgate.yaml``,
            ``lockgate.yaml+genai-prices`` (a partial override) or ``local``.
        model_ref: the entry the numbers come from (``openai/gpt-4o-mini``).
    """

    input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    cached_input_per_mtok: Decimal | None
    context_window: int | None
    source: str
    model_ref: str


class PriceTable:
    """Prices and context windows by provider and model, overrides first.

    Example:
        >>> table = PriceTable()
        >>> table.lookup("openai", "gpt-4o-mini-2024-07-18").input_per_mtok
        Decimal('0.15')

    Args:
        overrides: ``lockgate.yaml``'s ``prices:`` keyed ``PROVIDER/MODEL``. A key's
            provider is matched against both the provider instance name and the
            provider type; the model must match exactly (case aside). Fields an
            override leaves unset come from genai-prices.
    """

    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None) -> None:
        self._overrides = {key.strip().lower(): (key, o) for key, o in (overrides or {}).items()}
        # Bounded: model names come from requests, so an unbounded cache could grow
        # without limit. lru_cache is thread-safe.
        self._find = functools.lru_cache(maxsize=_CACHE_SIZE)(_find_model)
        # Current prices, memoised for a minute (prices change on dates, not per call;
        # the gateway looks one up twice per request). Bounded like `_find`.
        self._current: dict[tuple[str, str, str | None, str | None], tuple[float, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        """The table for `settings` (its ``prices:`` overrides)."""
        return cls(settings.prices)

    def lookup(
        self,
        provider_type: str,
        model: str,
        *,
        instance: str | None = None,
        base_url: str | None = None,
        at: datetime | None = None,
    ) -> ModelPrice | None:
        """The price of `model`, or None when no source knows it.

        Args:
            provider_type: the provider implementation (``openai``, ``anthropic``,
                ``local``). ``local`` models are free by definition.
            model: the provider's model id (``gpt-4o-mini-2024-07-18``).
            instance: the provider's instance name in ``lockgate.yaml`` (``vllm``), when
                it differs from the type; overrides may be keyed by either.
            base_url: the provider's API URL; an OpenAI-compatible hosted service
                (Groq, Together, OpenRouter, …) is recognised by it and priced as that
                service. An unrecognised URL (a self-hosted server) adds nothing.
            at: the moment whose prices apply; now when None.
        """
        if at is None:
            memo_key = (provider_type, model, instance, base_url)
            now = time.monotonic()
            memo = self._current.get(memo_key)
            if memo is not None and memo[0] > now:
                found: ModelPrice | None = memo[1]
                return found
            found = self._lookup(provider_type, model, instance, base_url, None)
            if len(self._current) >= _CACHE_SIZE:
                self._current.clear()
            self._current[memo_key] = (now + _CURRENT_TTL_S, found)
            return found
        return self._lookup(provider_type, model, instance, base_url, at)

    def _lookup(
        self,
        provider_type: str,
        model: str,
        instance: str | None,
        base_url: str | None,
        at: datetime | None,
    ) -> ModelPrice | None:
        key, override = self._override(provider_type, instance, model)
        base = self._base(provider_type, model, base_url, at)
        if override is None:
            return base
        return _apply(override, key, base)

    def context_window(
        self,
        provider_type: str,
        model: str,
        *,
        instance: str | None = None,
        base_url: str | None = None,
    ) -> int | None:
        """The model's context window in tokens, or None when unknown."""
        price = self.lookup(provider_type, model, instance=instance, base_url=base_url)
        return None if price is None else price.context_window

    def _override(
        self, provider_type: str, instance: str | None, model: str
    ) -> tuple[str, PriceOverride | None]:
        for provider in (instance, provider_type):
            if provider:
                found = self._overrides.get(f"{provider}/{model}".strip().lower())
                if found is not None:
                    return found
        return "", None

    def _base(
        self, provider_type: str, model: str, base_url: str | None, at: datetime | None
    ) -> ModelPrice | None:
        kind = provider_type.strip().lower()
        if kind == _LOCAL:
            return ModelPrice(_ZERO, _ZERO, _ZERO, None, _LOCAL, f"{_LOCAL}/{model}")
        found = self._find(_PROVIDER_IDS.get(kind), base_url, model)
        if found is None:
            return None
        provider, info = found
        return _from_genai(provider, info, at or datetime.now(tz=UTC))


def _apply(override: PriceOverride, key: str, base: ModelPrice | None) -> ModelPrice:
    """`base` with the fields `override` sets replaced; the override alone if no base."""
    if base is None:
        base = ModelPrice(None, None, None, None, _OVERRIDE, key)
        source = _OVERRIDE
    else:
        source = f"{_OVERRIDE}+{base.source}"
    return ModelPrice(
        input_per_mtok=_pick(override.input_per_mtok, base.input_per_mtok),
        output_per_mtok=_pick(override.output_per_mtok, base.output_per_mtok),
        cached_input_per_mtok=_pick(override.cached_input_per_mtok, base.cached_input_per_mtok),
        context_window=override.context_window or base.context_window,
        source=source,
        model_ref=base.model_ref,
    )


def _pick(value: float | None, fallback: Decimal | None) -> Decimal | None:
    return fallback if value is None else _decimal(value)


def _decimal(value: float) -> Decimal:
    # repr() is the shortest string that round-trips, so 0.15 becomes Decimal("0.15"),
    # not the binary expansion Decimal(0.15) would give.
    return Decimal(repr(value))


def _snapshot() -> DataSnapshot:
    # Imported on first lookup: genai-prices takes ~0.25 s to import and load.
    from genai_prices import data_snapshot

    # get_snapshot() returns the bundled data unless someone installed a custom
    # snapshot (which only UpdatePrices or set_custom_snapshot do); it never fetches.
    return data_snapshot.get_snapshot()


def _find_model(
    provider_id: str | None, base_url: str | None, model: str
) -> tuple[Provider, ModelInfo] | None:
    """genai-prices' entry for `model`: at the service `base_url` points to if it
    knows it, else under `provider_id`, else under whichever provider claims the name."""
    snapshot = _snapshot()
    provider: Provider | None = None
    if base_url:
        try:
            provider = snapshot.find_provider(None, None, base_url)
        except LookupError:
            provider = None
    refs = [model]
    if "/" in model:
        refs.append(model.rsplit("/", 1)[1])  # "openai/gpt-4o" -> "gpt-4o"
    for ref in refs:
        try:
            return snapshot.find_provider_model(
                ref, provider, None if provider else provider_id, None
            )
        except LookupError:
            continue
    return None


def _from_genai(provider: Provider, info: ModelInfo, at: datetime) -> ModelPrice:
    prices = info.get_prices(at)
    return ModelPrice(
        input_per_mtok=_base_rate(prices.input_mtok),
        output_per_mtok=_base_rate(prices.output_mtok),
        cached_input_per_mtok=_base_rate(prices.cache_read_mtok),
        context_window=info.context_window,
        source=_GENAI_PRICES,
        model_ref=f"{provider.id}/{info.id}",
    )


def _base_rate(price: Decimal | TieredPrices | None) -> Decimal | None:
    """A flat rate as is; a tiered one as its base tier (see the module docstring)."""
    from genai_prices.types import TieredPrices

    return price.base if isinstance(price, TieredPrices) else price
