"""The trace writer (batching, draining, overflow, database failures) and trace queries,
on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lockgate.errors import NotFound, StoreError, UserError
from lockgate.gateway._traces import (
    TraceRecord,
    TraceWriter,
    UsageRow,
    get_trace,
    list_traces,
    usage,
)
from lockgate.store import Store
from lockgate.store._tables import traces

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(traces)) or 0)


def rec(**overrides: Any) -> TraceRecord:
    values: dict[str, Any] = {"endpoint": "chat.completions", "status": 200, "latency_ms": 5.0}
    values.update(overrides)
    return TraceRecord(**values)


def writer(store: Store, tmp_path: Path, **overrides: Any) -> TraceWriter:
    options: dict[str, Any] = {
        "queue_size": 10_000,
        "batch_size": 500,
        "flush_interval_s": 0.05,
        "spill_dir": tmp_path / "trace-spill",
        "retry_delays": (0.01, 0.02, 0.04),
    }
    options.update(overrides)
    return TraceWriter(store, **options)


@contextmanager
def failing_writes(
    store: Store, monkeypatch: pytest.MonkeyPatch, should_fail: Callable[[int], bool]
) -> Iterator[list[int]]:
    """Make `store.write()` raise StoreError on the calls `should_fail(n)` picks."""
    real = store.write
    calls: list[int] = []

    @contextmanager
    def write() -> Iterator[sa.Connection]:
        calls.append(len(calls))
        if should_fail(len(calls)):
            raise StoreError("database error: connection refused")
        with real() as conn:
            yield conn

    monkeypatch.setattr(store, "write", write)
    yield calls
    monkeypatch.setattr(store, "write", real)


# --- the writer ----------------------------------------------------------------------------


async def test_record_round_trips_every_field(store: Store, tmp_path: Path) -> None:
    original = rec(
        at=datetime(2025, 3, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        tenant="acme",
        key_id="k" * 32,
        endpoint="embeddings",
        route="fast",
        prompt_ref="support-triage@4",
        requested_model="fast",
        resolved_model="openai/gpt-4o-mini-2024-07-18",
        status=502,
        error="upstream 500",
        input_tokens=120,
        output_tokens=7,
        cached_tokens=64,
        tokens_estimated=True,
        cost_usd=Decimal("0.000123456"),
        latency_ms=812.5,
        ttft_ms=90.25,
        overhead_ms=0.4,
        cache="miss",
        stream=True,
        user="end-user-7",
        details={"fallbacks": ["openai/a", "local/b"], "auto": {"hard": True}},
    )
    w = writer(store, tmp_path)
    await w.start()
    assert w.submit(original)
    await w.stop()

    stored = get_trace(store, original.id[:10])
    assert stored == original
    assert stored.at == datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert stored.at.tzinfo is not None
    assert TraceRecord.from_json(json.loads(json.dumps(original.to_json()))) == original


async def test_overlong_strings_are_cut_not_fatal(store: Store, tmp_path: Path) -> None:
    w = writer(store, tmp_path)
    await w.start()
    w.submit(rec(route="r" * 500, user="u" * 500))
    await w.stop()
    [stored] = list_traces(store)
    assert stored.route is not None and len(stored.route) == 100 and stored.route.endswith("…")
    assert w.dropped == 0


@pytest.mark.slow
async def test_ten_thousand_from_many_tasks_all_written_in_batches(
    store: Store, tmp_path: Path
) -> None:
    w = writer(store, tmp_path)
    await w.start()

    async def produce(task: int) -> None:
        for i in range(100):
            assert w.submit(rec(tenant=f"t{task % 7}", input_tokens=i))
            if i % 10 == 0:
                await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*(produce(t) for t in range(100)))
    await w.stop()
    elapsed = time.perf_counter() - started

    assert count(store) == 10_000
    assert w.written == 10_000
    assert (w.dropped, w.lost) == (0, 0)
    # 500-row batches: 20 transactions at best; a per-record writer would need 10,000.
    assert w.flushes <= 60, w.flushes
    print(
        f"\n{store.dialect}: 10,000 traces in {elapsed:.2f}s ({10_000 / elapsed:,.0f}/s), "
        f"{w.flushes} transactions"
    )


async def test_submit_never_waits_for_the_database(store: Store, tmp_path: Path) -> None:
    w = writer(store, tmp_path, queue_size=100_000)
    await w.start()
    started = time.perf_counter()
    for _ in range(20_000):
        w.submit(rec())
    per_submit = (time.perf_counter() - started) / 20_000
    await w.stop()
    assert per_submit < 0.000_2  # far below one database round trip
    assert count(store) == 20_000


async def test_a_partial_batch_is_flushed_after_the_interval(store: Store, tmp_path: Path) -> None:
    w = writer(store, tmp_path, flush_interval_s=0.05)
    await w.start()
    w.submit(rec())
    for _ in range(100):
        if count(store) == 1:
            break
        await asyncio.sleep(0.02)
    assert count(store) == 1  # written without stop()
    await w.stop()


async def test_full_queue_spills_and_nothing_is_lost(store: Store, tmp_path: Path) -> None:
    reported: list[int] = []
    w = writer(store, tmp_path, queue_size=10, batch_size=5, on_drop=reported.append)
    await w.start()
    accepted = [w.submit(rec(input_tokens=i)) for i in range(1_000)]  # no await: a burst

    assert accepted.count(False) == 990
    assert w.dropped == 990 == sum(reported)
    assert (w.spilled, w.lost) == (990, 0)
    await w.stop()

    assert count(store) == 1_000
    with store.read() as conn:
        tokens = set(conn.scalars(sa.select(traces.c.input_tokens)))
    assert tokens == set(range(1_000))
    assert list((tmp_path / "trace-spill").iterdir()) == []


async def test_full_queue_without_spill_dir_counts_and_logs_the_loss(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = writer(store, tmp_path, queue_size=10, batch_size=5, spill_dir=None)
    await w.start()
    with caplog.at_level(logging.ERROR, logger="lockgate.gateway._traces"):
        for _ in range(50):
            w.submit(rec())
    await w.stop()
    assert w.dropped == w.lost == 40
    assert count(store) == 10
    assert sum("traces lost" in m for m in caplog.messages) == 40


async def test_submit_after_stop_is_spilled_for_the_next_start(
    store: Store, tmp_path: Path
) -> None:
    w = writer(store, tmp_path)
    await w.start()
    await w.stop()
    assert w.submit(rec(tenant="late")) is False
    assert (w.dropped, w.spilled) == (1, 1)
    await w.start()
    await w.stop()
    assert [r.tenant for r in list_traces(store)] == ["late"]


async def test_stop_without_start_still_writes_what_was_queued(
    store: Store, tmp_path: Path
) -> None:
    w = writer(store, tmp_path)
    for _ in range(3):
        assert w.submit(rec())
    await w.stop()
    assert count(store) == 3


async def test_database_error_during_a_flush_is_retried(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    w = writer(store, tmp_path)
    await w.start()
    with (
        caplog.at_level(logging.WARNING, logger="lockgate.gateway._traces"),
        failing_writes(store, monkeypatch, lambda n: n <= 2) as calls,
    ):
        for _ in range(25):
            w.submit(rec())
        await w.stop()
    assert len(calls) == 3  # two failures, then one transaction with all 25
    assert count(store) == 25
    assert (w.dropped, w.flushes) == (0, 1)
    assert "retrying" in caplog.text


async def test_database_down_spills_and_the_next_start_imports(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill = tmp_path / "trace-spill"
    w = writer(store, tmp_path, batch_size=10)
    with failing_writes(store, monkeypatch, lambda n: True):
        await w.start()
        for i in range(30):
            w.submit(rec(input_tokens=i))
        await w.stop()
        assert (w.dropped, w.spilled, w.lost) == (30, 30, 0)
        assert count(store) == 0
        assert len(list(spill.glob("*.jsonl"))) == 1  # kept: the import failed too

    again = writer(store, tmp_path, batch_size=10)
    await again.start()
    assert count(store) == 30
    assert list(spill.glob("*.jsonl")) == []
    await again.stop()
    with store.read() as conn:
        assert set(conn.scalars(sa.select(traces.c.input_tokens))) == set(range(30))


async def test_reimport_is_idempotent_and_skips_a_torn_line(store: Store, tmp_path: Path) -> None:
    spill = tmp_path / "trace-spill"
    spill.mkdir()
    already = rec(tenant="a")
    fresh = rec(tenant="b")
    w = writer(store, tmp_path)
    await w.start()
    w.submit(already)
    await w.stop()
    lines = [json.dumps(already.to_json()), json.dumps(fresh.to_json()), '{"id": "cut sh']
    (spill / "spill-crashed.jsonl").write_text("\n".join(lines), encoding="utf-8")

    again = writer(store, tmp_path)
    await again.start()
    await again.stop()
    assert sorted(r.tenant or "" for r in list_traces(store)) == ["a", "b"]
    assert again.written == 1


async def test_a_live_writers_spill_file_is_left_alone(store: Store, tmp_path: Path) -> None:
    first = writer(store, tmp_path, queue_size=1)
    first.submit(rec())
    first.submit(rec())  # spilled, and the spill file stays open and locked
    second = writer(store, tmp_path)
    await second.start()
    await second.stop()
    assert count(store) == 0
    await first.stop()
    assert count(store) == 2


# --- queries -------------------------------------------------------------------------------


async def write_all(store: Store, tmp_path: Path, records: list[TraceRecord]) -> None:
    w = writer(store, tmp_path)
    await w.start()
    for r in records:
        w.submit(r)
    await w.stop()


async def test_list_filters_and_orders_newest_first(store: Store, tmp_path: Path) -> None:
    records = [
        rec(at=T0, tenant="acme", route="fast", resolved_model="openai/mini", status=200),
        rec(at=T0 + timedelta(minutes=1), tenant="acme", route="smart", status=429),
        rec(
            at=T0 + timedelta(minutes=2),
            tenant="beta",
            requested_model="openai/mini",
            status=200,
        ),
        rec(at=T0 + timedelta(minutes=3), tenant="acme", route="fast", status=500),
    ]
    await write_all(store, tmp_path, records)

    def ids(found: list[TraceRecord]) -> list[str]:
        return [r.id for r in found]

    a, b, c, d = (r.id for r in records)
    assert ids(list_traces(store)) == [d, c, b, a]
    assert ids(list_traces(store, tenant="acme")) == [d, b, a]
    assert ids(list_traces(store, route="fast")) == [d, a]
    assert ids(list_traces(store, model="openai/mini")) == [c, a]
    assert ids(list_traces(store, status=429)) == [b]
    assert ids(list_traces(store, limit=2)) == [d, c]
    local = timezone(timedelta(hours=-5))
    assert ids(list_traces(store, since=(T0 + timedelta(minutes=2)).astimezone(local))) == [d, c]
    assert ids(list_traces(store, since=datetime(2025, 3, 1, 12, 1))) == [d, c, b]  # naive = UTC


async def test_get_trace_by_prefix_and_helpful_errors(store: Store, tmp_path: Path) -> None:
    one, two = rec(id="abcdef" + "0" * 26), rec(id="abcdef" + "1" * 26)
    await write_all(store, tmp_path, [one, two])
    assert get_trace(store, "abcdef1").id == two.id
    with pytest.raises(NotFound, match="lockgate traces list"):
        get_trace(store, "ffff")
    with pytest.raises(UserError, match="ambiguous"):
        get_trace(store, "abcdef")
    with pytest.raises(NotFound):
        get_trace(store, "abc")  # short and not unique


async def test_usage_grouped_by_day_model_route_prompt(store: Store, tmp_path: Path) -> None:
    plus2 = timezone(timedelta(hours=2))
    records = [
        # 1 March UTC (the first at 00:30 on 2 March in UTC+2 is still 1 March in UTC)
        rec(
            at=datetime(2025, 3, 2, 0, 30, tzinfo=plus2),
            tenant="acme",
            route="fast",
            prompt_ref="triage@4",
            resolved_model="openai/mini",
            input_tokens=100,
            output_tokens=10,
            cost_usd=Decimal("0.000100001"),
        ),
        rec(
            at=datetime(2025, 3, 1, 23, 59, tzinfo=UTC),
            tenant="acme",
            route="fast",
            prompt_ref="triage@4",
            resolved_model="openai/mini",
            input_tokens=200,
            output_tokens=20,
            cost_usd=Decimal("0.000200002"),
        ),
        # 2 March UTC
        rec(
            at=datetime(2025, 3, 2, 0, 1, tzinfo=UTC),
            tenant="acme",
            route="smart",
            resolved_model="local/qwen",
            input_tokens=300,
            output_tokens=30,
            cost_usd=None,
        ),
        rec(
            at=datetime(2025, 3, 2, 8, 0, tzinfo=UTC),
            tenant="acme",
            route="smart",
            requested_model="anthropic/claude",
            status=503,
            input_tokens=0,
            output_tokens=0,
            cost_usd=Decimal("0.1"),
        ),
        # another tenant: never counted
        rec(at=T0, tenant="other", route="fast", input_tokens=999, cost_usd=Decimal(9)),
    ]
    await write_all(store, tmp_path, records)
    d = Decimal

    assert usage(store, tenant="acme", by="day") == [
        UsageRow("2025-03-01", 2, 0, 300, 30, d("0.000300003"), 0),
        UsageRow("2025-03-02", 2, 1, 300, 30, d("0.1"), 1),
    ]
    assert usage(store, tenant="acme", by="model") == [
        UsageRow("openai/mini", 2, 0, 300, 30, d("0.000300003"), 0),
        UsageRow("anthropic/claude", 1, 1, 0, 0, d("0.1"), 0),
        UsageRow("local/qwen", 1, 0, 300, 30, d(0), 1),
    ]
    assert usage(store, tenant="acme", by="route") == [
        UsageRow("fast", 2, 0, 300, 30, d("0.000300003"), 0),
        UsageRow("smart", 2, 1, 300, 30, d("0.1"), 1),
    ]
    assert usage(store, tenant="acme", by="prompt") == [
        UsageRow(None, 2, 1, 300, 30, d("0.1"), 1),
        UsageRow("triage@4", 2, 0, 300, 30, d("0.000300003"), 0),
    ]
    since = datetime(2025, 3, 2, tzinfo=UTC)
    assert usage(store, tenant="acme", by="day", since=since) == [
        UsageRow("2025-03-02", 2, 1, 300, 30, d("0.1"), 1),
    ]
    assert usage(store, tenant="nobody", by="day") == []


async def test_usage_cost_sums_exactly(store: Store, tmp_path: Path) -> None:
    # 3,000 × $0.000000001 + 3,000 × $0.1: floats would drift; the sum must not.
    records = [rec(tenant="acme", cost_usd=Decimal("0.000000001")) for _ in range(3_000)]
    records += [rec(tenant="acme", cost_usd=Decimal("0.1")) for _ in range(3_000)]
    await write_all(store, tmp_path, records)
    [row] = usage(store, tenant="acme", by="route")
    assert row.cost_usd == Decimal("300.000003")
    assert row.requests == 6_000


async def test_an_unstorable_record_is_counted_and_the_batch_still_written(
    store: Store, tmp_path: Path
) -> None:
    w = writer(store, tmp_path)
    loop: dict[str, object] = {}
    loop["self"] = loop  # a circular reference has no JSON form
    w.submit(rec(tenant="ok"))
    w.submit(rec(details=loop))
    w.submit(rec(tenant="ok"))
    await w.stop()
    assert (w.dropped, w.lost) == (1, 1)
    assert count(store) == 2
