"""Evaluation runner throughput against the scripted upstream.

Target (issue 4): 1,000 cases × 1 repeat, upstream latency 20 ms, concurrency 10, finish
within 1.3× the floor (1,000 × 20 ms / 10 = 2.0 s → ≤ 2.6 s), results stored.
For scale: promptfoo 0.123 took 4.1× the floor on 500 such cases on this kind of machine.

Run: ``python benchmarks/bench_eval.py [--cases 1000] [--latency-ms 20] [--concurrency 10]``.
Prints figures next to targets; never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from lockgate.config import load_settings
from lockgate.evals import RunStore, run_suite
from lockgate.registry import Registry
from lockgate.testing import upstream_process


async def bare_httpx(url: str, cases: int, concurrency: int) -> float:
    """The same traffic from a bare httpx client: what the upstream and HTTP stack cost."""
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "ticket"}]})
    async with httpx.AsyncClient(base_url=url + "/v1") as client:
        remaining = iter(range(cases))

        async def worker() -> None:
            for _ in remaining:
                response = await client.post(
                    "/chat/completions", content=body, headers={"content-type": "application/json"}
                )
                orjson.loads(response.content)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    floor = args.cases * args.latency_ms / 1000 / args.concurrency

    with (
        tempfile.TemporaryDirectory() as tmp,
        upstream_process(latency_ms=args.latency_ms, default_reply="billing") as url,
    ):
        home = Path(tmp)
        (home / "cases.jsonl").write_text(
            "".join(
                json.dumps({"id": f"c{i:05d}", "input": f"ticket {i}", "expected": "billing"})
                + "\n"
                for i in range(args.cases)
            )
        )
        (home / "prompt.yaml").write_text(
            "prompt_id: bench-v1\nmodel: up/gpt-4o-mini-2024-07-18\ntemperature: 0\n"
        )
        (home / "suite.yaml").write_text(
            "suite_id: bench-eval-v1\ntarget: bench@1\ndataset: cases.jsonl\n"
            f"concurrency: {args.concurrency}\n"
            "scorers: [{name: equals}, {name: contains, args: {value: bill}}]\n"
            "gate: {pass_rate: '>= 0.99'}\n"
        )
        settings = load_settings(
            home=home / "home",
            providers={"up": {"type": "openai", "base_url": url + "/v1", "max_retries": 0}},
        )
        registry = Registry.open(settings, actor="bench")
        registry.push([home / "prompt.yaml", home / "suite.yaml"])
        print(
            f"cases                 {args.cases} × 1 repeat, latency {args.latency_ms:g} ms, "
            f"concurrency {args.concurrency}; floor {floor:.2f} s; target ≤ 1.30× floor"
        )
        # The first run in a process also pays one-time imports (scorers, numpy, scipy);
        # the second is what a long-lived process (or a second suite in CI) sees.
        for label in ("cold process", "warm process"):
            started = time.perf_counter()
            report = run_suite("bench-eval@1", settings=settings, registry=registry, cache="off")
            elapsed = time.perf_counter() - started
            stored = len(RunStore(registry.store).attempts(report.run_id))
            ratio = elapsed / floor
            print(
                f"{label:<21} {elapsed:.2f} s = {ratio:.2f}× floor  "
                f"{'OK' if ratio <= 1.3 else 'MISSED'}; {stored} attempts stored, "
                f"{(elapsed - floor) / args.cases * 1000:.2f} ms/case beyond the floor"
            )
        bare = asyncio.run(bare_httpx(url, args.cases, args.concurrency))
        print(
            f"{'bare httpx baseline':<21} {bare:.2f} s = {bare / floor:.2f}× floor "
            "(same upstream, no lockgate: the HTTP stack and the scripted server's own cost)"
        )
        print(
            f"lockgate's share      {(elapsed - bare) / args.cases * 1000:+.2f} ms/case "
            "over the bare client (warm)"
        )
        registry.close()


if __name__ == "__main__":
    main()
