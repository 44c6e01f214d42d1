"""Tokens and money: exact offline token counts, prices, context windows and cost.

Example:
    >>> from lockgate.accounting import PriceTable, cost, count_message_tokens
    >>> messages = [{"role": "user", "content": "Is my card blocked?"}]
    >>> count_message_tokens("openai", "gpt-4o-mini-2024-07-18", messages)
    TokenCount(tokens=12, exact=True, tokenizer='o200k_base')
    >>> price = PriceTable().lookup("openai", "gpt-4o-mini-2024-07-18")
    >>> price.input_per_mtok, price.output_per_mtok, price.context_window
    (Decimal('0.15'), Decimal('0.6'), 128000)

Counts that are estimates carry ``exact=False`` and ``tokenizer="estimate"``.
Importing this package loads neither a vocabulary nor the price data; each loads on
first use, once per process.
"""

from __future__ import annotations

from lockgate.accounting._cost import Cost, cost, format_usd
from lockgate.accounting._messages import count_message_tokens
from lockgate.accounting._prices import ModelPrice, PriceTable
from lockgate.accounting._tokens import (
    Tokenizer,
    count_text_tokens,
    estimate_tokens,
    tokenizer_for,
)

__all__ = [
    "Cost",
    "ModelPrice",
    "PriceTable",
    "Tokenizer",
    "cost",
    "count_message_tokens",
    "count_text_tokens",
    "estimate_tokens",
    "format_usd",
    "tokenizer_for",
]
