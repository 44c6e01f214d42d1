"""Token counting and price lookup speed of lockgate.accounting.

Run: ``python benchmarks/bench_tokens.py``. Prints figures next to the targets the
gateway needs (counting must cost far less than a model call); never fails on timing.
"""

from __future__ import annotations

import functools
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from lockgate.accounting import (
    ModelPrice,
    PriceTable,
    cost,
    count_message_tokens,
    count_text_tokens,
    format_usd,
    tokenizer_for,
)
from lockgate.providers._types import Usage

MODELS = {
    "cl100k_base": "gpt-4-0613",
    "o200k_base": "gpt-4o-mini-2024-07-18",
    "llama3": "meta-llama/Llama-3.1-8B-Instruct",
    "qwen3": "Qwen/Qwen2.5-Coder-1.5B-Instruct",
}
SNIPPETS = [
    "I was charged twice for my subscription this month, please refund one payment.",
    "def total(items):\n    return sum(i.price * i.qty for i in items)  # USD\n",
    "Die Rechnung vom 3. März ist doppelt abgebucht worden — bitte prüfen.",
    "請幫我查一下訂單 #48213 的配送狀態\uff0c謝謝\uff01",  # full-width punctuation
    '{"ticket": 1842, "category": "billing", "priority": "high", "tags": ["refund"]}',
    "Réinitialiser le mot de passe ne fonctionne pas depuis l'application mobile.",
]
CHAT = [
    {"role": "system", "content": "You are a support triage assistant. Return JSON only."},
    {"role": "user", "content": SNIPPETS[0]},
    {"role": "assistant", "content": SNIPPETS[4]},
    {"role": "user", "content": SNIPPETS[2]},
    {"role": "assistant", "content": '{"category": "billing"}'},
    {"role": "user", "content": "Thanks, and can you also check order #48213?"},
]


def corpus(size: int) -> str:
    """About `size` characters of real, non-repeating text: the standard library's own
    source (code, comments and English docstrings), plus the multilingual snippets."""
    parts = list(SNIPPETS)
    length = sum(map(len, parts))
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        length += len(text)
        if length >= size:
            break
    return "\n".join(parts)[:size]


def per_call_us(fn: Callable[[], object], *, repeat: int = 5, number: int = 2000) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def bench_counting() -> None:
    text = corpus(2_000_000)
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"Counting {megabytes:.1f} MB of stdlib source (best of 3), target > 5 MB/s:")
    for encoding, model in MODELS.items():
        tokenizer = tokenizer_for("openai", model)
        assert tokenizer is not None
        start = time.perf_counter()
        tokenizer.count("warm up")  # the first count loads the vocabulary
        load = time.perf_counter() - start
        best = float("inf")
        tokens = 0
        for _ in range(3):
            start = time.perf_counter()
            tokens = tokenizer.count(text)
            best = min(best, time.perf_counter() - start)
        print(
            f"  {encoding:<12} load {load * 1e3:6.1f} ms   {tokens / best / 1e6:6.2f} M tokens/s"
            f"   {megabytes / best:6.1f} MB/s   ({tokens:,} tokens)"
        )


def bench_messages() -> None:
    print("count_message_tokens, 6-message chat, target < 50 µs:")
    for encoding, model in MODELS.items():
        us = per_call_us(functools.partial(count_message_tokens, "openai", model, CHAT))
        print(f"  {encoding:<12} {us:7.1f} µs/call")
    us = per_call_us(lambda: count_message_tokens("anthropic", "claude-3-5-haiku-latest", CHAT))
    print(f"  {'estimate':<12} {us:7.1f} µs/call")
    us = per_call_us(lambda: count_text_tokens("openai", "gpt-4o", SNIPPETS[0]))
    print(f"count_text_tokens, one 80-char sentence: {us:.1f} µs/call")


def bench_prices() -> None:
    table = PriceTable()
    start = time.perf_counter()
    table.lookup("openai", "gpt-4o-mini-2024-07-18")
    first = time.perf_counter() - start
    print(
        f"Price lookup, target < 20 µs once warm (first lookup loads data: {first * 1e3:.0f} ms):"
    )
    cases = {
        "known (openai)": ("openai", "gpt-4o-mini-2024-07-18"),
        "known (anthropic)": ("anthropic", "claude-3-5-sonnet-20241022"),
        "unknown model": ("openai", "no-such-model"),
        "local": ("local", "qwen2.5-coder-1.5b-instruct"),
    }
    for label, (provider, model) in cases.items():
        table.lookup(provider, model)
        us = per_call_us(functools.partial(table.lookup, provider, model))
        print(f"  {label:<18} {us:7.2f} µs/lookup")
    price = table.lookup("openai", "gpt-4o-mini-2024-07-18")
    assert isinstance(price, ModelPrice)
    usage = Usage(input_tokens=1_234, output_tokens=567, cached_input_tokens=200)
    us = per_call_us(lambda: cost(usage, price), number=20_000)
    print(f"cost(): {us:.2f} µs/call (= {format_usd(cost(usage, price))})")


def main() -> None:
    bench_counting()
    bench_messages()
    bench_prices()


if __name__ == "__main__":
    main()
