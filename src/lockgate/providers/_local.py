"""The ``local`` provider: chat with GGUF models in-process through llama.cpp, and sentence
embeddings, on models shipped in PyPI packages (see `lockgate.providers._local_models`).

Nothing downloads. Models load on first use, once; each model serves one call at a time
(an `asyncio.Lock` per model queues callers on the event loop, and the blocking llama.cpp
call runs in a worker thread). Streams come from a worker thread through an asyncio queue.

Options, under ``providers: {local: {options: …}}`` in lockgate.yaml::

    n_threads: 2            # CPU threads for llama.cpp (default: all cores)
    n_ctx: 4096             # context window in tokens; 0 = the model's trained window
    n_batch: 512            # prompt tokens evaluated per batch
    seed: 1234              # default sampling seed when a request sets none
    prompt_cache_mb: 0      # > 0 keeps past prompt states in RAM (llama.cpp LlamaRAMCache)

Without ``prompt_cache_mb`` llama.cpp still reuses the common prefix of consecutive
prompts, so a repeated system prompt is read once while calls alternate no other prompt.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from lockgate.config import ProviderConfig, Settings
from lockgate.errors import ConfigError, LockgateError, NotFound, Problem, UpstreamError
from lockgate.providers._embeddings import SentenceEmbedder
from lockgate.providers._llama import LlamaRunner, RunnerOptions, finish_reason
from lockgate.providers._local_models import CATALOGUE, LocalModel, get_model, model_status
from lockgate.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    Message,
    ModelInfo,
    TokenCount,
    Usage,
)

__all__ = ["LocalOptions", "LocalProvider", "create"]

# Sampling parameters a request may pass in `extra`, beyond the OpenAI ones it has fields for.
_EXTRA_SAMPLING = (
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
)


class LocalOptions(BaseModel):
    """The local provider's ``options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_threads: int | None = Field(default=None, ge=1)
    n_ctx: int = Field(default=4096, ge=0)
    n_batch: int = Field(default=512, ge=1)
    seed: int | None = None
    prompt_cache_mb: int = Field(default=0, ge=0)

    @classmethod
    def parse(cls, name: str, options: Mapping[str, Any]) -> LocalOptions:
        """Validate ``options`` of provider `name`.

        Raises:
            ConfigError: an option is unknown or has a bad value.
        """
        try:
            return cls.model_validate(dict(options))
        except pydantic.ValidationError as exc:
            raise ConfigError(
                [
                    Problem(
                        "unknown option" if err["type"] == "extra_forbidden" else err["msg"],
                        field=".".join(["providers", name, "options", *map(str, err["loc"])]),
                    )
                    for err in exc.errors(include_url=False)
                ]
            ) from None

    def runner_options(self) -> RunnerOptions:
        return RunnerOptions(
            n_threads=self.n_threads or os.cpu_count() or 1,
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            seed=self.seed,
            prompt_cache_mb=self.prompt_cache_mb,
        )


class LocalProvider:
    """In-process models: llama.cpp chat models and sentence-transformers embeddings.

    Example::

        provider = create("local", ProviderConfig(options={"n_threads": 2}), settings)
        reply = await provider.chat(ChatRequest(model="smollm2-135m-instruct", messages=[…]))
    """

    def __init__(self, name: str, model_dir: Path, options: LocalOptions | None = None) -> None:
        self.name = name
        self.model_dir = model_dir
        self.options = options or LocalOptions()
        self._runner_options = self.options.runner_options()
        self._guard = threading.Lock()
        self._runners: dict[str, LlamaRunner] = {}
        self._embedders: dict[str, SentenceEmbedder] = {}
        self._turns: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        runner = self._runner(request.model)
        messages, kwargs = _llama_call(request, self.options.seed)
        async with self._turn(request.model):
            raw = await asyncio.to_thread(runner.chat, messages, kwargs)
        choice = raw["choices"][0]
        message = choice.get("message") or {}
        usage = raw.get("usage") or {}
        return ChatResponse(
            model=request.model,
            content=message.get("content"),
            finish_reason=finish_reason(choice.get("finish_reason")),
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
            ),
            tool_calls=message.get("tool_calls") or None,
            provider=self.name,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        runner = self._runner(request.model)
        messages, kwargs = _llama_call(request, self.options.seed)
        async with self._turn(request.model):
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[ChatChunk | BaseException | None] = asyncio.Queue()
            cancelled = threading.Event()

            def post(item: ChatChunk | BaseException | None) -> None:
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                except RuntimeError:  # the event loop is closed: nobody is listening
                    cancelled.set()

            def produce() -> None:
                try:
                    for chunk in runner.stream(messages, kwargs, cancelled):
                        post(chunk)
                except BaseException as exc:  # handed over to the consumer, raised there
                    post(exc)
                else:
                    post(None)

            loop.run_in_executor(None, produce)
            try:
                while (item := await queue.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                # The worker sees this at its next token and releases the model; its own
                # lock keeps the next caller out until then, so there is no need to wait.
                cancelled.set()

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        embedder = self._embedder(model)
        if not inputs:
            return EmbeddingResponse(model=model, vectors=[], usage=Usage())
        async with self._turn(model):
            try:
                vectors, tokens = await asyncio.to_thread(embedder.encode, list(inputs))
            except LockgateError:
                raise
            except Exception as exc:
                raise UpstreamError(
                    f"embedding with '{model}' failed: {type(exc).__name__}: {exc}",
                    provider=self.name,
                ) from exc
        return EmbeddingResponse(model=model, vectors=vectors, usage=Usage(input_tokens=tokens))

    def count_tokens(self, model: str, messages: list[Message]) -> TokenCount:
        """Exact tokens of the prompt the model reads for `messages` (its chat template
        included); for an embedding model, the tokens of the messages' texts."""
        entry = get_model(model)
        if entry.kind == "embedding":
            texts = [_text(m.get("content")) for m in messages]
            return TokenCount(self._embedder(model).count(texts), True, f"hf:{model}")
        tokens = self._runner(model).count(_plain_messages(messages))
        return TokenCount(tokens=tokens, exact=True, tokenizer=f"gguf:{model}")

    def context_window(self, model: str) -> int | None:
        """The window requests must fit: the configured ``n_ctx`` capped at the model's
        trained context (for embeddings, the model's maximum sequence length)."""
        entry = CATALOGUE.get(model)
        if entry is None:
            return None
        if entry.kind == "embedding":
            return entry.context_window
        return self._runner(model).n_ctx

    def models(self) -> list[ModelInfo]:
        infos = []
        for entry in CATALOGUE.values():
            status = model_status(entry, self.model_dir)
            runtime, extra = (
                ("llama_cpp", "local")
                if entry.kind == "chat"
                else ("sentence_transformers", "embeddings")
            )
            note = status.note
            available = status.installed or status.ready  # parts may go once assembled
            if importlib.util.find_spec(runtime) is None:
                available = False
                note = f'{note}; needs {runtime}: pip install "lockgate[{extra}]"'
            window = entry.context_window
            if entry.kind == "chat":
                window = self._runner(entry.id).n_ctx
            infos.append(
                ModelInfo(
                    provider=self.name,
                    model=entry.id,
                    context_window=window,
                    description=entry.description,
                    available=available,
                    note=note,
                )
            )
        return infos

    async def aclose(self) -> None:
        with self._guard:
            runners = list(self._runners.values())
            embedders = list(self._embedders.values())
            self._runners.clear()
            self._embedders.clear()
        for runner in runners:
            await asyncio.to_thread(runner.close)
        for embedder in embedders:
            embedder.close()

    # -- internals ------------------------------------------------------------------------

    def _runner(self, model: str) -> LlamaRunner:
        entry = _entry(model, "chat")
        with self._guard:
            runner = self._runners.get(model)
            if runner is None:
                runner = LlamaRunner(entry, self.model_dir, self._runner_options, self.name)
                self._runners[model] = runner
            return runner

    def _embedder(self, model: str) -> SentenceEmbedder:
        entry = _entry(model, "embedding")
        with self._guard:
            embedder = self._embedders.get(model)
            if embedder is None:
                embedder = SentenceEmbedder(entry, self.model_dir)
                self._embedders[model] = embedder
            return embedder

    def _turn(self, model: str) -> asyncio.Lock:
        """This event loop's lock for `model`. (An asyncio.Lock belongs to one loop; the
        runners' thread locks are what guard the model across loops.)"""
        loop = asyncio.get_running_loop()
        with self._guard:
            locks = self._turns.setdefault(loop, {})
            return locks.setdefault(model, asyncio.Lock())


def create(name: str, config: ProviderConfig, settings: Settings) -> LocalProvider:
    """The factory registered for the ``local`` provider type."""
    return LocalProvider(name, settings.model_dir, LocalOptions.parse(name, config.options))


def _entry(model: str, kind: str) -> LocalModel:
    entry = get_model(model)
    if entry.kind != kind:
        others = ", ".join(m.id for m in CATALOGUE.values() if m.kind == kind)
        article = "an" if kind == "embedding" else "a"
        raise NotFound(
            f"'{model}' is a local {entry.kind} model, not {article} {kind} model: use {others}"
        )
    return entry


def _llama_call(
    request: ChatRequest, default_seed: int | None
) -> tuple[list[Message], dict[str, Any]]:
    """The messages and keyword arguments of llama-cpp-python's create_chat_completion."""
    kwargs: dict[str, Any] = {}
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.top_p is not None:
        kwargs["top_p"] = request.top_p
    if request.max_tokens is not None:
        kwargs["max_tokens"] = request.max_tokens
    if request.stop:
        kwargs["stop"] = list(request.stop)
    seed = request.seed if request.seed is not None else default_seed
    if seed is not None:
        kwargs["seed"] = seed
    response_format = _response_format(request.response_format)
    if response_format is not None:
        kwargs["response_format"] = response_format
    if request.tools:
        kwargs["tools"] = request.tools
        if request.tool_choice is not None:
            kwargs["tool_choice"] = request.tool_choice
    for key in _EXTRA_SAMPLING:
        if key in request.extra:
            kwargs[key] = request.extra[key]
    return _plain_messages(request.messages), kwargs


def _response_format(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI's response_format as llama-cpp-python's grammar-backed one."""
    if value is None or value.get("type") == "text":
        return None
    if value.get("type") == "json_object":
        schema = value.get("schema")
        return {"type": "json_object", **({"schema": schema} if schema else {})}
    if value.get("type") == "json_schema":
        spec = value.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise UpstreamError(
                "response_format json_schema needs json_schema.schema (an object)", status=400
            )
        return {"type": "json_object", "schema": schema}
    raise UpstreamError(f"unsupported response_format type {value.get('type')!r}", status=400)


def _plain_messages(messages: list[Message]) -> list[Message]:
    """Messages whose content is a string, as chat templates expect (text parts joined)."""
    return [{**m, "content": _text(m.get("content"))} for m in messages]


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)
