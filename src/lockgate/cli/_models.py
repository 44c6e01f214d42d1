"""`lockgate models` and `lockgate chat`: what can be called, and calling it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Column, Table

from lockgate.accounting import format_usd
from lockgate.cli._common import JSON_OPTION, err, out, print_json, state
from lockgate.errors import ConfigError, LockgateError, UserError
from lockgate.providers import CACHE_MODES, ChatResult, Client, ModelInfo, StreamResult

app = typer.Typer(help="Model providers, local models, aliases, prices.", no_args_is_help=True)


@app.command("list")
def list_models(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Providers and their models with context windows and prices, plus aliases.

    Local models show whether their package is installed; OpenAI-compatible and
    Anthropic providers list the models named in lockgate.yaml (aliases, or
    options.models) since listing them would need the network.
    """
    settings = state(ctx).settings
    client = Client(settings, cache_mode="off")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name in sorted(client.provider_configs()):
        try:
            infos = client.provider(name).models()
        except LockgateError as exc:
            rows.append(
                {"model": f"{name}/*", "provider": name, "note": str(exc), "available": False}
            )
            continue
        targets = [client.resolve(a) for a in settings.aliases]
        infos += [
            ModelInfo(provider=name, model=t.model, note="named by an alias")
            for t in targets
            if t.provider == name and all(i.model != t.model for i in infos)
        ]
        if not infos:
            note = "no models named: add an alias or options.models in lockgate.yaml"
            rows.append(
                {
                    "model": f"{name}/…",
                    "provider": client.provider_configs()[name].type or name,
                    "note": note,
                    "available": True,
                }
            )
        for info in infos:
            ref = f"{name}/{info.model}"
            if ref in seen:
                continue
            seen.add(ref)
            provider_type = client.provider_configs()[name].type or name
            price = client.price(client.resolve(ref))
            rows.append(
                {
                    "model": ref,
                    "provider": provider_type,
                    "context_window": info.context_window or client.context_window(ref),
                    "input_per_mtok": str(price.input_per_mtok)
                    if price and price.input_per_mtok is not None
                    else None,
                    "output_per_mtok": str(price.output_per_mtok)
                    if price and price.output_per_mtok is not None
                    else None,
                    "available": info.available,
                    "note": info.note or info.description,
                }
            )
    aliases = {alias: client.resolve(alias).ref for alias in sorted(settings.aliases)}
    asyncio.run(client.aclose())
    if as_json:
        print_json({"models": rows, "aliases": aliases})
        return
    table = Table(
        Column("model", no_wrap=True),
        Column("type", no_wrap=True),
        Column("context", justify="right", no_wrap=True),
        Column("$/Mtok in", justify="right", no_wrap=True),
        Column("$/Mtok out", justify="right", no_wrap=True),
        Column("status", ratio=1, min_width=20),
    )
    for row in rows:
        note = row.get("note") or ""
        status = note if row["available"] else f"[yellow]unavailable: {note}[/]"
        window = row.get("context_window")
        unknown = "-" if row["model"].endswith("/…") else "unknown"
        table.add_row(
            row["model"],
            row["provider"],
            f"{window:,}" if window else unknown,
            row.get("input_per_mtok") or unknown,
            row.get("output_per_mtok") or unknown,
            status,
        )
    out.print(table)
    if aliases:
        alias_table = Table("alias (use in prompts)", "resolves to")
        for alias, target in aliases.items():
            alias_table.add_row(alias, target)
        out.print(alias_table)


@app.command("prepare")
def prepare(
    ctx: typer.Context,
    models: list[str] = typer.Argument(
        None, help="Local model ids (default: every installed local model).", show_default=False
    ),
) -> None:
    """Verify local model files, and assemble split ones (the 1.1 GB Qwen) once.

    Runs on first use anyway; this does it up front, with progress, so the first call
    is not slow.
    """
    from lockgate.providers._local_models import CATALOGUE, ensure_model_file, get_model

    model_dir = state(ctx).settings.model_dir
    wanted = [get_model(m) for m in models] if models else list(CATALOGUE.values())
    for model in wanted:
        with err.status(f"verifying {model.id} (sha256 of {model.size / 1e6:,.0f} MB)…"):
            path = ensure_model_file(model, model_dir)
        out.print(f"[green]ready[/] {model.id}: {path}")


def chat(
    ctx: typer.Context,
    model: str = typer.Argument(
        ...,
        help="PROVIDER/MODEL or an alias, e.g. local/smollm2-135m-instruct.",
        show_default=False,
    ),
    message: str = typer.Argument(..., help="The user message.", show_default=False),
    system: str | None = typer.Option(None, "--system", "-s", help="A system message."),
    temperature: float | None = typer.Option(None, "--temperature", "-t", min=0, max=2),
    max_tokens: int | None = typer.Option(None, "--max-tokens", "-m", min=1),
    seed: int | None = typer.Option(None, "--seed"),
    json_schema: Path | None = typer.Option(
        None, "--json-schema", help="A JSON schema file: constrain the answer to it."
    ),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they come."),
    cache: str | None = typer.Option(
        None,
        "--cache",
        help=f"Response cache mode: {', '.join(CACHE_MODES)} (default: lockgate.yaml's cache).",
    ),
) -> None:
    """Send one message to a model; stream the answer, then tokens, cost and latency.

    Example: lockgate chat local/smollm2-135m-instruct "Name three colours" --max-tokens 40
    """
    if cache is not None and cache not in CACHE_MODES:
        raise ConfigError(f"--cache must be one of {', '.join(CACHE_MODES)}, not '{cache}'")
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": message}
    ]
    params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    if json_schema is not None:
        params["response_format"] = _schema_format(json_schema)
    client = Client(state(ctx).settings, cache_mode=cache)
    result = asyncio.run(_chat(client, model, messages, params, stream))
    _print_stats(result)


async def _chat(
    client: Client, model: str, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
) -> ChatResult:
    try:
        if not stream:
            result = await client.chat(model, messages, **params)
            out.print(result.text, markup=False, highlight=False)
            return result
        sink = StreamResult(client.resolve(model))
        async for chunk in client.stream(model, messages, into=sink, **params):
            if chunk.delta:
                out.print(chunk.delta, end="", markup=False, highlight=False)
        out.print()
        assert sink.result is not None  # set when the stream is exhausted
        return sink.result
    finally:
        await client.aclose()


def _schema_format(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    return {"type": "json_schema", "json_schema": {"name": path.stem, "schema": schema}}


def _print_stats(result: ChatResult) -> None:
    usage = result.usage
    exact = "estimated" if usage.estimated else "reported"
    parts = [
        f"{result.resolved.ref}",
        f"tokens {usage.input_tokens} in / {usage.output_tokens} out ({exact})",
        f"cost {format_usd(result.cost)}",
        f"latency {result.latency_s:.2f} s",
    ]
    if result.time_to_first_token_s is not None:
        parts.append(f"first token {result.time_to_first_token_s:.2f} s")
        generating = result.latency_s - result.time_to_first_token_s
        if generating > 0 and usage.output_tokens > 1:
            parts.append(f"{(usage.output_tokens - 1) / generating:.1f} tokens/s")
    parts.append(f"cache {result.cache}")
    err.print("[dim]" + " · ".join(parts) + "[/]")
