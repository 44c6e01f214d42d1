"""Response-cache lookups with 100,000 entries stored.

Target (issue 3): a lookup under 1 ms at 100k entries. Measures `ResponseCache.get` (key
hashing, the indexed SELECT, decoding) for hits and misses on SQLite, and on PostgreSQL
when ``--postgres URL`` is given.

Run: ``python benchmarks/bench_cache.py [--entries 100000] [--postgres URL]``.
Prints figures next to targets; never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from lockgate.config import load_settings
from lockgate.providers import ChatRequest, ChatResponse, ResponseCache, Usage, cache_key
from lockgate.store import Store
from lockgate.store._tables import response_cache


def request(i: int) -> ChatRequest:
    return ChatRequest(
        model="gpt-4o-mini-2024-07-18",
        messages=[
            {"role": "system", "content": "You are a support triage assistant."},
            {"role": "user", "content": f"ticket number {i}: I was charged twice"},
        ],
        temperature=0.2,
        seed=i % 3,
    )


def fill(store: Store, entries: int) -> None:
    response = json.dumps(
        asdict(ChatResponse("gpt-4o-mini", '{"category": "billing"}', "stop", Usage(40, 8)))
    )
    now = datetime.now(UTC)
    rows = [
        {
            "key": cache_key("openai", request(i)),
            "provider": "openai",
            "model": "gpt-4o-mini-2024-07-18",
            "response": response,
            "created_at": now,
            "expires_at": None,
        }
        for i in range(entries)
    ]
    with store.write() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(response_cache), rows[start : start + 5000])


def measure(store: Store, entries: int, lookups: int) -> dict[str, list[float]]:
    cache = ResponseCache(store)
    timings: dict[str, list[float]] = {"hit": [], "miss": []}
    rng = random.Random(0)
    for _ in range(lookups):
        hit = rng.random() < 0.5
        req = request(rng.randrange(entries) if hit else entries + rng.randrange(entries))
        started = time.perf_counter()
        found = cache.get("openai", req)
        timings["hit" if hit else "miss"].append(time.perf_counter() - started)
        assert (found is not None) == hit
    return timings


def report(label: str, timings: dict[str, list[float]]) -> None:
    for kind, values in timings.items():
        values.sort()
        p50 = statistics.median(values) * 1000
        p99 = values[int(len(values) * 0.99)] * 1000
        verdict = "OK" if p99 < 1.0 else "MISSED"
        print(
            f"{label:<11} {kind:<5} p50 {p50:.3f} ms  p99 {p99:.3f} ms  (target < 1 ms)  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=5_000)
    parser.add_argument(
        "--postgres", default=None, help="a scratch PostgreSQL database URL to measure too"
    )
    args = parser.parse_args()
    backends = [("sqlite", None)] + ([("postgresql", args.postgres)] if args.postgres else [])
    for label, url in backends:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(home=Path(tmp), database_url=url)
            store = Store.open(settings)
            if url:
                with store.write() as conn:
                    conn.execute(sa.delete(response_cache))
            started = time.perf_counter()
            fill(store, args.entries)
            filled = time.perf_counter() - started
            print(f"{label:<11} filled {args.entries:,} entries in {filled:.1f} s")
            measure(store, args.entries, 200)  # warm the connection pool and page cache
            report(label, measure(store, args.entries, args.lookups))
            if url:
                with store.write() as conn:
                    conn.execute(sa.delete(response_cache))
            store.close()


if __name__ == "__main__":
    main()
