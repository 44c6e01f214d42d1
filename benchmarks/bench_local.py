"""Benchmark the local provider: load time, prompt and output tokens per second, time to
first token with a cold and a warm prompt prefix, and embedding throughput.

Prints numbers next to their targets and never fails on timing. Run:

    python benchmarks/bench_local.py                      # SmolLM2, then Qwen if installed
    python benchmarks/bench_local.py --model smollm2-135m-instruct --threads 2

"Warm" is the same long system prompt followed by a different question: llama.cpp reuses
the evaluated prefix, so only the new tokens are read. "Interleaved" alternates two
system prompts, which defeats that reuse unless ``prompt_cache_mb`` keeps past states.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from lockgate.config import load_settings
from lockgate.providers._local import LocalOptions, LocalProvider
from lockgate.providers._local_models import CATALOGUE, model_status
from lockgate.providers._types import ChatRequest, Usage

RULES = " ".join(
    f"Rule {i}: a ticket that mentions product line {i} belongs to team {i % 4}." for i in range(40)
)
SYSTEM_A = "You are a support triage assistant. Classify tickets. " + RULES
SYSTEM_B = "You are a release-notes writer for a database company. " + RULES.replace(
    "team", "squad"
)
QUESTIONS = [
    "My invoice shows a double charge.",
    "The API returns 500 since this morning.",
    "I cannot reset my password.",
    "How do I export my data?",
]


@dataclass
class Run:
    ttft: float
    total: float
    usage: Usage

    @property
    def output_rate(self) -> float:
        generating = self.total - self.ttft
        return (self.usage.output_tokens - 1) / generating if generating > 0 else 0.0


async def timed(provider: LocalProvider, model: str, system: str, question: str, n: int) -> Run:
    request = ChatRequest(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        temperature=0,
        max_tokens=n,
    )
    started = time.perf_counter()
    ttft: float | None = None
    usage = Usage()
    async for chunk in provider.stream(request):
        if ttft is None and chunk.delta:
            ttft = time.perf_counter() - started
        if chunk.usage is not None:
            usage = chunk.usage
    total = time.perf_counter() - started
    return Run(ttft if ttft is not None else total, total, usage)


async def bench_chat(model: str, threads: int, max_tokens: int, model_dir: Path) -> None:
    print(f"\n== {model} (n_threads={threads}, n_ctx=4096)")
    plain = LocalProvider("local", model_dir, LocalOptions(n_threads=threads, n_ctx=4096))
    started = time.perf_counter()
    runner = plain._runner(model)
    await asyncio.to_thread(runner.load)
    print(f"load (incl. verify/assemble):  {time.perf_counter() - started:6.2f} s")
    print(f"  of which llama.cpp load:     {runner.load_seconds or 0:6.2f} s   target < 5 s")

    cold = await timed(plain, model, SYSTEM_A, QUESTIONS[0], max_tokens)
    warm = [await timed(plain, model, SYSTEM_A, q, max_tokens) for q in QUESTIONS[1:]]
    prompt_rate = cold.usage.input_tokens / cold.ttft
    warm_ttft = statistics.median(r.ttft for r in warm)
    print(f"prompt tokens:                 {cold.usage.input_tokens}")
    print(f"TTFT cold prefix:              {cold.ttft:6.2f} s   ({prompt_rate:5.0f} prompt tok/s)")
    print(
        f"TTFT warm prefix (median):     {warm_ttft:6.2f} s   "
        f"target < 25% of cold: {warm_ttft / cold.ttft:5.1%}"
    )
    rates = [r.output_rate for r in [cold, *warm] if r.usage.output_tokens > 1]
    if rates:
        print(f"output tokens/s (median):      {statistics.median(rates):6.1f}")

    interleaved = [
        await timed(plain, model, system, q, 4)
        for system, q in [(SYSTEM_B, QUESTIONS[0]), (SYSTEM_A, QUESTIONS[1])]
    ]
    print(f"TTFT interleaved, no RAM cache:{interleaved[1].ttft:6.2f} s")
    await plain.aclose()

    cached = LocalProvider(
        "local", model_dir, LocalOptions(n_threads=threads, n_ctx=4096, prompt_cache_mb=2048)
    )
    for system, q in [(SYSTEM_A, QUESTIONS[0]), (SYSTEM_B, QUESTIONS[1])]:
        await timed(cached, model, system, q, 4)
    back = await timed(cached, model, SYSTEM_A, QUESTIONS[2], 4)
    print(f"TTFT interleaved, RAM cache:   {back.ttft:6.2f} s   (prompt_cache_mb=2048)")
    with_cache = [await timed(cached, model, SYSTEM_A, q, max_tokens) for q in QUESTIONS[1:]]
    print(
        f"warm call total, RAM cache:    {statistics.median(r.total for r in with_cache):6.2f} s"
        f"   vs {statistics.median(r.total for r in warm):.2f} s without (cost of saving states)"
    )
    await cached.aclose()


async def bench_embeddings(model_dir: Path) -> None:
    if importlib.util.find_spec("sentence_transformers") is None:
        print("\n== all-minilm-l6-v2: skipped (sentence-transformers not installed)")
        return
    provider = LocalProvider("local", model_dir)
    print("\n== all-minilm-l6-v2")
    started = time.perf_counter()
    await provider.embed("all-minilm-l6-v2", ["warm up"])
    print(f"load (import + model):         {time.perf_counter() - started:6.2f} s")
    texts = [f"{q} (variant {i})" for i in range(64) for q in QUESTIONS][:256]
    started = time.perf_counter()
    result = await provider.embed("all-minilm-l6-v2", texts)
    elapsed = time.perf_counter() - started
    print(
        f"embeddings/s:                  {len(texts) / elapsed:6.0f}   "
        f"({result.usage.input_tokens / elapsed:.0f} tokens/s)   target > 100/s"
    )
    await provider.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="chat model id (repeatable)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    model_dir = load_settings().model_dir  # the assembled Qwen file is reused across runs
    for model in args.model or ["smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"]:
        status = model_status(CATALOGUE[model], model_dir)
        if not status.installed:
            print(f"\n== {model}: skipped ({status.note})")
            continue
        asyncio.run(bench_chat(model, args.threads, args.max_tokens, model_dir))
    asyncio.run(bench_embeddings(model_dir))


if __name__ == "__main__":
    main()
