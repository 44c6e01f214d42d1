"""The gateway end to end: the official openai SDK over a real uvicorn socket, against the
scripted upstream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from lockgate.config import PriceOverride, Settings, load_settings
from lockgate.gateway import create_app
from lockgate.governance._tenants import Limits, TenantStore
from lockgate.registry import Registry
from lockgate.store import Store
from lockgate.store._tables import traces
from lockgate.testing import Rule, ScriptedUpstream
from tests.gateway._server import serving
from tests.helpers import DESIGN_PROMPT, write

MODEL = "up/gpt-4o-mini-2024-07-18"
RULES = [
    Rule(match=r"refund", reply="billing", usage=(20, 1)),
    Rule(match=r"^Classify: ", reply='{"category": "billing"}', usage=(30, 6)),
    # Billed below the gateway's reservation (input estimate + max_tokens=1).
    Rule(match=r"^hi \d+$", reply="ok", usage=(5, 1)),
    Rule(match=None, reply="hello there friend", usage=(10, 3)),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(RULES) as up:
        yield up


@pytest.fixture(scope="module")
def broken() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream([Rule(match=None, status=500)]) as up:
        yield up


@pytest.fixture
def gw_settings(tmp_path: Path, upstream: ScriptedUpstream, broken: ScriptedUpstream) -> Settings:
    upstream.set_rules(RULES)
    return load_settings(
        home=tmp_path / "home",
        providers={
            "up": {"type": "openai", "base_url": upstream.url + "/v1", "max_retries": 0},
            "down": {"type": "openai", "base_url": broken.url + "/v1", "max_retries": 0},
        },
        routes={
            "fast": {"deployments": [MODEL]},
            "resilient": {"deployments": ["down/gpt-4o-mini-2024-07-18", MODEL]},
        },
        aliases={"gpt-class-foundation-model": MODEL},
        gateway={"config_poll_s": 0.05, "trace_flush_interval_s": 0.05},
    )


@pytest.fixture
def sdk() -> Iterator[Callable[[str, str], openai.OpenAI]]:
    """openai.OpenAI clients that are closed at the end of the test (no leaked sockets)."""
    clients: list[openai.OpenAI] = []

    def make(url: str, key: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def tenant_key(settings: Settings, name: str = "acme", **limits: object) -> str:
    store = Store.open(settings)
    try:
        tenants = TenantStore(store, actor="admin")
        tenants.create_tenant(name, Limits(**limits))  # type: ignore[arg-type]
        _, secret = tenants.create_key(name)
        return secret
    finally:
        store.close()


def trace_rows(settings: Settings) -> list[sa.Row]:  # type: ignore[type-arg]
    store = Store.open(settings)
    try:
        with store.read() as conn:
            return list(conn.execute(sa.select(traces).order_by(traces.c.at)))
    finally:
        store.close()


def test_openai_sdk_sync_with_cost_and_trace_headers(
    sdk: Callable[[str, str], openai.OpenAI], gw_settings: Settings
) -> None:
    secret = tenant_key(gw_settings)
    with serving(create_app(gw_settings)) as url:
        client = sdk(url, secret)
        raw = client.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": "I want a refund"}]
        )
        completion = raw.parse()
        assert completion.choices[0].message.content == "billing"
        assert completion.usage is not None and completion.usage.prompt_tokens == 20
        assert completion.model == "fast"
        assert raw.headers["x-lockgate-cache"] == "miss"
        # 20 x $0.15 + 1 x $0.60 per million tokens (bundled gpt-4o-mini price).
        assert Decimal(raw.headers["x-lockgate-cost-usd"]) == Decimal("0.0000036")
        assert float(raw.headers["x-lockgate-overhead-ms"]) >= 0
        trace_id = raw.headers["x-lockgate-trace-id"]
        again = client.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": "I want a refund"}]
        )
        assert again.headers["x-lockgate-cache"] == "hit"
        bypass = client.chat.completions.with_raw_response.create(
            model="fast",
            messages=[{"role": "user", "content": "I want a refund"}],
            extra_headers={"x-lockgate-cache": "bypass"},
        )
        assert bypass.headers["x-lockgate-cache"] == "bypass"
    rows = {row.id: row for row in trace_rows(gw_settings)}
    assert rows[trace_id].tenant == "acme"
    assert rows[trace_id].route == "fast"
    assert rows[trace_id].resolved_model == MODEL
    assert rows[trace_id].input_tokens == 20
    assert len(rows) == 3


def test_replicas_share_the_exact_cache_through_redis(
    sdk: Callable[[str, str], openai.OpenAI], gw_settings: Settings, upstream: ScriptedUpstream
) -> None:
    settings = gw_settings.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"})
    secret = tenant_key(settings, f"acme-{uuid.uuid4().hex[:8]}")  # keys of its own in Redis
    question = [{"role": "user", "content": f"refund {uuid.uuid4().hex}"}]
    upstream.reset()
    with serving(create_app(settings)) as one, serving(create_app(settings)) as two:
        first = sdk(one, secret).chat.completions.with_raw_response.create(
            model="fast", messages=question
        )
        second = sdk(two, secret).chat.completions.with_raw_response.create(
            model="fast", messages=question
        )
        assert first.headers["x-lockgate-cache"] == "miss"
        assert second.headers["x-lockgate-cache"] == "hit"
        assert second.parse().choices[0].message.content == "billing"
    assert len(upstream.requests) == 1


def test_openai_sdk_async_streaming_with_usage(gw_settings: Settings) -> None:
    secret = tenant_key(gw_settings)

    async def scenario(url: str) -> tuple[str, int | None, str | None]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, tokens, finish = "", None, None
        async for event in stream:
            if event.choices:
                text += event.choices[0].delta.content or ""
                finish = event.choices[0].finish_reason or finish
            if event.usage is not None:
                tokens = event.usage.total_tokens
        await client.close()
        return text, tokens, finish

    with serving(create_app(gw_settings)) as url:
        text, tokens, finish = asyncio.run(scenario(url))
        assert (text, tokens, finish) == ("hello there friend", 13, "stop")
        # The same request again is replayed from the cache, still as a stream.
        assert asyncio.run(scenario(url))[0] == "hello there friend"
    rows = trace_rows(gw_settings)
    assert [row.cache for row in rows] == ["miss", "hit"]
    assert all(row.stream for row in rows)
    assert rows[0].ttft_ms is not None


def test_unknown_paths_and_methods_are_answered_in_openai_shape(gw_settings: Settings) -> None:
    with serving(create_app(gw_settings)) as url:
        missing = httpx.post(url + "/v1/completions", json={})
        wrong = httpx.get(url + "/v1/chat/completions")
        head = httpx.head(url + "/healthz")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert "/v1/chat/completions" in missing.json()["error"]["message"]
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["message"] == (
        "GET is not allowed on /v1/chat/completions; use POST"
    )
    assert head.status_code == 200


def test_errors_have_openai_shapes(
    sdk: Callable[[str, str], openai.OpenAI], gw_settings: Settings
) -> None:
    secret = tenant_key(gw_settings)
    with serving(create_app(gw_settings)) as url:
        good = sdk(url, secret)
        with pytest.raises(openai.AuthenticationError):
            sdk(url, "lg-nope").chat.completions.create(
                model="fast", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.NotFoundError, match=r"unknown provider|names no provider"):
            good.chat.completions.create(
                model="nowhere", messages=[{"role": "user", "content": "hi"}]
            )
        headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
        malformed = httpx.post(url + "/v1/chat/completions", content=b"{not json", headers=headers)
        assert malformed.status_code == 400
        assert "not valid JSON" in malformed.json()["error"]["message"]
        huge = httpx.post(url + "/v1/chat/completions", content=b"x" * 3_000_000, headers=headers)
        assert huge.status_code == 413
        missing = httpx.post(url + "/v1/chat/completions", json={"model": "fast"}, headers=headers)
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        assert httpx.get(url + "/readyz").status_code == 200
        metrics = httpx.get(url + "/metrics").text
        assert "lockgate_requests_total" in metrics


def test_fallback_to_the_next_deployment(
    sdk: Callable[[str, str], openai.OpenAI], gw_settings: Settings, broken: ScriptedUpstream
) -> None:
    secret = tenant_key(gw_settings)
    with serving(create_app(gw_settings)) as url:
        client = sdk(url, secret)
        reply = client.chat.completions.create(
            model="resilient", messages=[{"role": "user", "content": "refund me"}]
        )
        assert reply.choices[0].message.content == "billing"
    [row] = trace_rows(gw_settings)
    assert row.resolved_model == MODEL
    assert "down/gpt-4o-mini-2024-07-18" in row.details


def test_prompt_targets_render_with_variables(
    sdk: Callable[[str, str], openai.OpenAI], gw_settings: Settings, tmp_path: Path
) -> None:
    secret = tenant_key(gw_settings)
    registry = Registry.open(gw_settings, actor="t")
    text = DESIGN_PROMPT + "template: 'Classify: {{ ticket }}'\n"
    registry.push([write(tmp_path, "p.yaml", text)])
    registry.set_label("support-triage@4", "production")
    registry.close()
    with serving(create_app(gw_settings)) as url:
        client = sdk(url, secret)
        reply = client.chat.completions.create(
            model="prompt:support-triage@production",
            messages=[],
            extra_body={"variables": {"ticket": "charged twice"}},
        )
        assert reply.choices[0].message.content == '{"category": "billing"}'
        with pytest.raises(openai.BadRequestError, match="'ticket' is undefined"):
            client.chat.completions.create(model="prompt:support-triage@production", messages=[])
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="prompt:nope@production", messages=[])
    row = next(r for r in trace_rows(gw_settings) if r.status == 200)
    assert row.prompt_ref == "support-triage@4"
    assert row.resolved_model == MODEL


def test_prompt_retrieval_applies_min_score_top_k_and_the_window(
    sdk: Callable[[str, str], openai.OpenAI],
    gw_settings: Settings,
    tmp_path: Path,
    upstream: ScriptedUpstream,
) -> None:
    settings = gw_settings.model_copy(
        update={"prices": {"up/gpt-4o-mini-2024-07-18": PriceOverride(context_window=700)}}
    )
    secret = tenant_key(settings)
    registry = Registry.open(settings, actor="t")
    text = DESIGN_PROMPT.replace("top_k: 5", "top_k: 3\n  min_score: 0.5")
    registry.push([write(tmp_path, "p.yaml", text + "template: 'Classify: {{ ticket }}'\n")])
    registry.set_label("support-triage@4", "production")
    registry.close()
    long = " ".join(["refund policy"] * 120)  # ~240 tokens: two of these overflow the room
    documents = [
        {"id": "kb-low", "text": "below the bar", "score": 0.2},
        {"id": "kb-best", "text": "Refunds take five days.", "score": 0.9},
        {"id": "kb-long-1", "text": long, "score": 0.8},
        {"id": "kb-long-2", "text": long + " again", "score": 0.7},
        {"id": "kb-fourth", "text": "Fourth best, past top_k.", "score": 0.6},
        "Unscored notes rank last.",
    ]
    upstream.reset()
    with serving(create_app(settings)) as url:
        client = sdk(url, secret)
        client.chat.completions.create(
            model="prompt:support-triage@production",
            messages=[],
            max_tokens=200,
            extra_body={"variables": {"ticket": "charged twice"}, "documents": documents},
            extra_headers={"x-lockgate-cache": "bypass"},
        )
        with pytest.raises(openai.BadRequestError, match=r"documents\[0\]\.text must be"):
            client.chat.completions.create(
                model="prompt:support-triage@production",
                messages=[],
                extra_body={"variables": {"ticket": "x"}, "documents": [{"score": 1}]},
            )
        with pytest.raises(openai.BadRequestError, match="model 'fast' has none"):
            client.chat.completions.create(
                model="fast",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"documents": ["a"]},
            )
    sent = upstream.requests[0].body
    assert sent is not None
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "system", "user"]
    sources = sent["messages"][1]["content"]
    assert sources.startswith("Sources retrieved from 'kb-support-2024q4'")
    assert "[1] (kb-best) Refunds take five days." in sources
    assert "[2] (kb-long-1)" in sources
    assert "kb-long-2" not in sources and "kb-low" not in sources and "Fourth" not in sources
    row = next(r for r in trace_rows(settings) if r.status == 200)
    assert json.loads(row.details)["retrieval"] == {
        "index": "kb-support-2024q4",
        "top_k": 3,
        "offered": 6,
        "used": 2,
        "below_min_score": 1,
        "beyond_top_k": 2,
        "over_budget": 1,
        "ids": ["kb-best", "kb-long-1"],
    }


def test_a_stream_the_client_leaves_is_settled_and_traced(
    gw_settings: Settings, upstream: ScriptedUpstream
) -> None:
    upstream.set_rules([Rule(reply=" ".join(["word"] * 200), chunks=200, chunk_interval=0.01)])
    # Room for one reservation (input + 1,000 max tokens), not two: a reservation left
    # behind by the abandoned stream would refuse the second request.
    secret = tenant_key(gw_settings, tokens_per_minute=1500)
    headers = {"authorization": f"Bearer {secret}"}
    body = {"model": "fast", "max_tokens": 1000, "messages": [{"role": "user", "content": "go"}]}
    with serving(create_app(gw_settings)) as url:
        with httpx.stream(
            "POST", url + "/v1/chat/completions", json={**body, "stream": True}, headers=headers
        ) as response:
            for seen, _ in enumerate(response.iter_lines()):
                if seen >= 5:
                    break  # hang up mid-stream
        time.sleep(0.3)
        again = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert again.status_code == 200, again.text
    rows = trace_rows(gw_settings)
    left = next(r for r in rows if r.stream)
    assert (left.status, left.error) == (499, "the client closed the connection mid-stream")


def test_revoked_key_is_refused_on_the_next_poll(
    sdk: Callable[[str, str], openai.OpenAI], gw_settings: Settings
) -> None:
    store = Store.open(gw_settings)
    tenants = TenantStore(store, actor="admin")
    tenants.create_tenant("acme", Limits())
    key, secret = tenants.create_key("acme")
    with serving(create_app(gw_settings)) as url:
        client = sdk(url, secret)
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        tenants.revoke_key(key.id)
        time.sleep(0.3)  # config_poll_s is 0.05 s in these settings
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": "hi"}]
            )
    store.close()


def test_budget_race_never_overshoots(gw_settings: Settings) -> None:
    # Each request reserves its maximum cost (counted input + max_tokens=1) before the
    # call and settles to the billed cost after; 200 at once must not overshoot.
    secret = tenant_key(gw_settings, usd_per_day=Decimal("0.0001"))

    async def scenario(url: str) -> tuple[int, int, list[str]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:

            async def one(n: int) -> httpx.Response:
                return await http.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer {secret}"},
                    json={
                        "model": "fast",
                        "max_tokens": 1,
                        "messages": [{"role": "user", "content": f"hi {n}"}],
                    },
                )

            responses = await asyncio.gather(*(one(n) for n in range(200)))
        ok = sum(r.status_code == 200 for r in responses)
        limited = [r for r in responses if r.status_code == 429]
        return ok, len(limited), [r.json()["error"]["message"] for r in limited[:1]]

    with serving(create_app(gw_settings)) as url:
        ok, limited, messages = asyncio.run(scenario(url))
    assert ok + limited == 200
    assert 0 < ok < 200
    assert "daily budget" in messages[0]
    spent = sum(
        (row.cost_usd or Decimal(0)) for row in trace_rows(gw_settings) if row.status == 200
    )
    assert spent <= Decimal("0.0001")


def test_stream_failure_after_first_chunk_ends_with_an_sse_error(
    gw_settings: Settings, upstream: ScriptedUpstream
) -> None:
    secret = tenant_key(gw_settings)
    upstream.set_rules([Rule(match=None, reply="one two three four five", drop_after_chunks=2)])
    with serving(create_app(gw_settings)) as url:
        lines = []
        with httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {secret}"},
            json={"model": "fast", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            timeout=30,
        ) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    contents = [line for line in lines if '"content"' in line]
    assert len(contents) >= 2  # the client got the first chunks…
    assert '"error"' in lines[-2] and lines[-1] == "data: [DONE]"  # …then an error event
    [row] = trace_rows(gw_settings)
    assert row.status == 502 and row.stream and "stream ended early" in row.error


def test_auto_route_trimming_tools_and_embeddings(
    sdk: Callable[[str, str], openai.OpenAI], gw_settings: Settings
) -> None:
    routes = {name: route.model_dump() for name, route in gw_settings.routes.items()}
    routes["tiny"] = {"deployments": [MODEL], "input_token_budget": 60}
    routes["auto"] = {"auto": {"easy": "fast", "hard": "resilient"}}
    settings = load_settings(
        home=gw_settings.home,
        providers={k: v.model_dump() for k, v in gw_settings.providers.items()},
        routes=routes,
        gateway={"config_poll_s": 0.05, "trace_flush_interval_s": 0.05},
    )
    secret = tenant_key(settings)
    history = []
    for n in range(30):
        history += [
            {"role": "user", "content": f"old question number {n} about invoices"},
            {"role": "assistant", "content": f"old answer number {n}"},
        ]
    with serving(create_app(settings)) as url:
        client = sdk(url, secret)
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Please analyze this refund contract"}],
        )
        client.chat.completions.create(
            model="tiny",
            messages=[
                {"role": "system", "content": "Be brief."},
                *history,
                {"role": "user", "content": "and now?"},
            ],
        )
        tool = {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
        }
        client.chat.completions.create(
            model="fast",
            messages=[{"role": "user", "content": "hi"}],
            tools=[tool],
            seed=7,
            user="u-1",
        )
        embedded = client.embeddings.create(model=MODEL, input=["a", "b"])
        assert len(embedded.data) == 2 and len(embedded.data[0].embedding) > 0
    rows = trace_rows(settings)
    auto, tiny, tools, embeddings = rows
    decision = json.loads(auto.details)["route_decision"]
    assert (decision["auto_route"], decision["verdict"]) == ("auto", "hard")
    assert auto.route == "resilient"  # the route that served it
    trimmed = json.loads(tiny.details)["trimmed"]
    assert trimmed["tokens_before"] > 60 >= trimmed["tokens_after"]
    dropped = trimmed["dropped"]  # the system message (0) and the last turn (61) stay
    assert 1 in dropped and 0 not in dropped and 61 not in dropped
    assert tools.user == "u-1"
    assert embeddings.endpoint == "embeddings"
