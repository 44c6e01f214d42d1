"""`lockgate traces list|show` and `lockgate usage` over traces written by the TraceWriter."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lockgate.cli._traces import parse_since, traces_app, usage_command
from lockgate.config import Settings
from lockgate.errors import NotFound, UserError
from lockgate.gateway._traces import TraceRecord, TraceWriter
from lockgate.store import Store

NOW = datetime.now(UTC).replace(microsecond=0)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(traces_app, name="traces")
    app.command("usage")(usage_command)
    return app


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli(), list(args))


def rec(**values: Any) -> TraceRecord:
    base: dict[str, Any] = {"endpoint": "chat.completions", "status": 200, "latency_ms": 42.0}
    return TraceRecord(**(base | values))


RECORDS = [
    rec(
        id="aaaaaaaa" + "0" * 24,
        at=NOW - timedelta(days=3),
        tenant="acme",
        route="fast",
        resolved_model="openai/gpt-4o-mini-2024-07-18",
        input_tokens=1000,
        output_tokens=100,
        cost_usd=Decimal("0.00021"),
        cache="miss",
    ),
    rec(
        id="bbbbbbbb" + "0" * 24,
        at=NOW - timedelta(minutes=10),
        tenant="acme",
        route="fast",
        prompt_ref="support-triage@4",
        resolved_model="local/qwen2.5-coder-1.5b-instruct",
        input_tokens=500,
        output_tokens=50,
        tokens_estimated=True,
        cost_usd=None,
        cache="hit",
        details={"fallbacks": ["openai/gpt-4o-mini-2024-07-18"], "trimmed": {"messages": 2}},
    ),
    rec(
        id="cccccccc" + "0" * 24,
        at=NOW - timedelta(minutes=5),
        tenant="acme",
        route="smart",
        requested_model="smart",
        status=502,
        error="upstream returned 500",
        cost_usd=None,
    ),
    rec(id="dddddddd" + "0" * 24, at=NOW, tenant="other", cost_usd=Decimal(1)),
]


@pytest.fixture
def traced(cli_env: Settings, store: Store, tmp_path: Path) -> Settings:
    async def write() -> None:
        writer = TraceWriter(store, queue_size=100, batch_size=10, flush_interval_s=0.01)
        await writer.start()
        for record in RECORDS:
            writer.submit(record)
        await writer.stop()

    asyncio.run(write())
    return cli_env


def test_list_is_a_readable_table_newest_first(traced: Settings) -> None:
    result = invoke("traces", "list", "--tenant", "acme")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = [line for line in lines if line.strip("│ ").startswith(("aaaa", "bbbb", "cccc"))]
    assert [r.strip("│ ")[:4] for r in rows] == ["cccc", "bbbb", "aaaa"]
    assert "dddd" not in result.output
    smart, local, mini = rows
    assert "smart → smart" in smart and "502" in smart and "unknown" in smart
    assert "support-triage@4 → local/qwen2.5" in local and "~500→50" in local
    assert "hit" in local
    assert "$0.000210" in mini and "1,000→100" in mini and "42 ms" in mini


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--route", "fast"], {"aaaaaaaa", "bbbbbbbb"}),
        (["--status", "502"], {"cccccccc"}),
        (["--model", "openai/gpt-4o-mini-2024-07-18"], {"aaaaaaaa"}),
        (["--since", "1h"], {"bbbbbbbb", "cccccccc", "dddddddd"}),
        (["--since", "7m"], {"cccccccc", "dddddddd"}),
        (["--limit", "1"], {"dddddddd"}),
    ],
)
def test_list_filters_as_json(traced: Settings, args: list[str], expected: set[str]) -> None:
    result = invoke("traces", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert {r["id"][:8] for r in found} == expected


def test_list_json_keeps_unknown_cost_as_null(traced: Settings) -> None:
    found = json.loads(invoke("traces", "list", "--json", "--tenant", "acme").output)
    costs = {r["id"][:8]: r["cost_usd"] for r in found}
    assert costs == {"aaaaaaaa": "0.000210000", "bbbbbbbb": None, "cccccccc": None}


def test_list_with_no_match_says_so(traced: Settings) -> None:
    result = invoke("traces", "list", "--tenant", "nobody")
    assert result.exit_code == 0
    assert "No traces match" in result.output


def test_show_prints_every_field_and_details(traced: Settings) -> None:
    result = invoke("traces", "show", "bbbbbbbb")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"trace {'bbbbbbbb' + '0' * 24}" in out
    for name in ("tenant", "route", "prompt_ref", "resolved_model", "latency_ms", "cache"):
        assert name in out
    assert "cost_usd" in out and "unknown" in out
    assert '"fallbacks": [' in out and '"messages": 2' in out

    data = json.loads(invoke("traces", "show", "bbbbbbbb", "--json").output)
    assert data["details"]["trimmed"] == {"messages": 2}


def test_show_unknown_id_is_a_user_error(traced: Settings) -> None:
    result = invoke("traces", "show", "ffffffff")
    assert isinstance(result.exception, NotFound)
    assert "lockgate traces list" in str(result.exception)


def test_usage_by_route_with_totals_and_unknown_cost(traced: Settings) -> None:
    result = invoke("usage", "--tenant", "acme", "--by", "route")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    fast = next(line for line in lines if "│ fast" in line)
    smart = next(line for line in lines if "│ smart" in line)
    total = next(line for line in lines if "│ total" in line)
    assert "2 │" in fast and "1,500" in fast and "$0.000210 + unknown (+1 request)" in fast
    assert "unknown (+1 request)" in smart and "$" not in smart and "1 │" in smart
    assert "$0.000210 + unknown (+2 requests)" in total and "3 │" in total
    assert "$0.000000" not in result.output  # unknown is never shown as free


def test_usage_json_by_day(traced: Settings) -> None:
    result = invoke("usage", "--tenant", "acme", "--by", "day", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    days = [row["group"] for row in data["rows"]]
    assert days == sorted(days) and len(days) in (2, 3)  # today may straddle UTC midnight
    assert data["total"] == {
        "group": "total",
        "requests": 3,
        "errors": 1,
        "input_tokens": 1500,
        "output_tokens": 150,
        "cost_usd": "0.000210000",
        "unknown_cost_requests": 2,
    }


def test_usage_since_and_bad_options(traced: Settings) -> None:
    data = json.loads(
        invoke("usage", "--tenant", "acme", "--by", "model", "--since", "1d", "--json").output
    )
    assert {r["group"] for r in data["rows"]} == {"local/qwen2.5-coder-1.5b-instruct", "smart"}
    bad_by = invoke("usage", "--tenant", "acme", "--by", "week")
    assert bad_by.exit_code == 2 and "week" in bad_by.output
    bad_since = invoke("usage", "--tenant", "acme", "--since", "yesterday")
    assert isinstance(bad_since.exception, UserError)
    assert invoke("usage", "--by", "day").exit_code == 2  # --tenant is required


def test_parse_since() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since(None) is None
    assert parse_since("30m", now=now) == datetime(2025, 3, 1, 11, 30, tzinfo=UTC)
    assert parse_since("2d", now=now) == datetime(2025, 2, 27, 12, 0, tzinfo=UTC)
    assert parse_since("1w", now=now) == datetime(2025, 2, 22, 12, 0, tzinfo=UTC)
    assert parse_since("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_since("2025-01-31T08:00+02:00") == datetime(2025, 1, 31, 6, tzinfo=UTC)
    with pytest.raises(UserError, match="--since"):
        parse_since("soon")
