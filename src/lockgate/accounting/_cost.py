"""The USD cost of a call's token usage, exact in `Decimal`, and never guessed.

An unknown price gives an unknown cost (``usd=None``), never 0: a missing price must
show up as "unknown" in reports and budgets rather than as free traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from lockgate.accounting._prices import ModelPrice

if TYPE_CHECKING:
    # Not at run time: lockgate.providers imports this package.
    from lockgate.providers._types import Usage

__all__ = ["Cost", "cost", "format_usd"]

_PER_MTOK_EXPONENT = -6  # rates are per million tokens
_UNKNOWN = "unknown"


@dataclass(frozen=True)
class Cost:
    """What one call cost, in USD; None wherever it is unknown.

    Attributes:
        usd: the total, or None when any part of it is unknown.
        input_usd: the uncached input tokens.
        output_usd: the output tokens.
        cached_input_usd: the input tokens served from the prompt cache.
        known: whether `usd` is known.
    """

    usd: Decimal | None
    input_usd: Decimal | None
    output_usd: Decimal | None
    cached_input_usd: Decimal | None
    known: bool

    @classmethod
    def unknown(cls) -> Cost:
        """A cost nobody can tell."""
        return cls(None, None, None, None, known=False)


def cost(usage: Usage, price: ModelPrice | None) -> Cost:
    """The cost of `usage` at `price`.

    Cached input tokens are part of ``usage.input_tokens``: they are billed at the
    cached rate (the input rate when the model has no cached rate) and the rest of
    the input at the input rate. A part with tokens but no rate is unknown, which
    makes the total unknown; a part with no tokens costs 0 whatever its rate.

    Example:
        >>> from lockgate.providers import Usage
        >>> price = ModelPrice(Decimal("0.15"), Decimal("0.6"), None, None, "x", "m")
        >>> cost(Usage(input_tokens=1000, output_tokens=100), price).usd
        Decimal('0.00021000')
    """
    if price is None:
        return Cost.unknown()
    cached = min(max(usage.cached_input_tokens, 0), max(usage.input_tokens, 0))
    uncached = max(usage.input_tokens, 0) - cached
    cached_rate = (
        price.cached_input_per_mtok
        if price.cached_input_per_mtok is not None
        else price.input_per_mtok
    )
    input_usd = _part(uncached, price.input_per_mtok)
    cached_usd = _part(cached, cached_rate)
    output_usd = _part(max(usage.output_tokens, 0), price.output_per_mtok)
    if input_usd is None or output_usd is None or cached_usd is None:
        return Cost(None, input_usd, output_usd, cached_usd, known=False)
    total = input_usd + output_usd + cached_usd
    return Cost(total, input_usd, output_usd, cached_usd, known=True)


def _part(tokens: int, rate: Decimal | None) -> Decimal | None:
    if tokens == 0:
        return Decimal(0)
    if rate is None:
        return None
    # scaleb shifts the exponent: exact, unlike a division.
    return (Decimal(tokens) * rate).scaleb(_PER_MTOK_EXPONENT)


def format_usd(amount: Cost | Decimal | None) -> str:
    """``$0.000123`` for a known amount (six decimals), ``unknown`` otherwise.

    Example:
        >>> format_usd(Decimal("0.000123"))
        '$0.000123'
        >>> format_usd(Cost.unknown())
        'unknown'
    """
    usd = amount.usd if isinstance(amount, Cost) else amount
    if usd is None:
        return _UNKNOWN
    return f"${usd:.6f}"
