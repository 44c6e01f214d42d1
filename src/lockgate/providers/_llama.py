"""One GGUF chat model in llama.cpp (through llama-cpp-python), used from worker threads.

A `LlamaRunner` loads its model once, on first use, and lets one call at a time reach
it: a llama.cpp context is not safe to use from two threads at once. Everything here
blocks; `lockgate.providers._local` runs it off the event loop.

Prompts are built with the model's own chat template (read from the GGUF file) by one
formatter object that both the generation and `count` use, so a token count is exactly
what the model reads. Counting uses a second, vocabulary-only instance, so it never
waits behind a generation.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.errors import ContextWindowExceeded, LockgateError, MissingExtra, UpstreamError
from lockgate.providers._local_models import LocalModel, ensure_model_file
from lockgate.providers._types import ChatChunk, FinishReason, Message, Usage

__all__ = ["LlamaRunner", "RunnerOptions", "import_llama_cpp"]

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


@dataclass(frozen=True)
class RunnerOptions:
    """llama.cpp settings shared by every model of one provider instance."""

    n_threads: int
    n_ctx: int
    n_batch: int
    seed: int | None
    prompt_cache_mb: int


def import_llama_cpp() -> Any:
    """The llama_cpp module (untyped; Any at this boundary).

    Raises:
        MissingExtra: llama-cpp-python is not installed.
    """
    try:
        return importlib.import_module("llama_cpp")
    except ModuleNotFoundError:
        raise MissingExtra("the local provider", "local", "llama_cpp") from None


def finish_reason(value: object) -> FinishReason:
    """llama-cpp-python's finish reason in the protocol's vocabulary."""
    return _FINISH.get(str(value), "stop") if value is not None else "stop"


class LlamaRunner:
    """A lazily loaded GGUF model; `chat`, `stream` and `count` are blocking and thread-safe."""

    def __init__(
        self, model: LocalModel, model_dir: Path, options: RunnerOptions, provider: str
    ) -> None:
        self.model = model
        self.provider = provider
        self._model_dir = model_dir
        self._options = options
        self._load_lock = threading.Lock()
        self._call_lock = threading.Lock()
        self._vocab_lock = threading.Lock()
        self._llm: Any = None
        self._vocab: Any = None
        self._formatter: Any = None
        self.trained_context = model.context_window
        self.load_seconds: float | None = None

    @property
    def n_ctx(self) -> int:
        """The context window in force: the configured one, capped at the trained one."""
        wanted = self._options.n_ctx
        return self.trained_context if wanted == 0 else min(wanted, self.trained_context)

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def count(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> int:
        """Tokens of the prompt llama.cpp builds from `messages` (chat template included)."""
        return len(self._prompt_tokens(messages, tools))

    def load(self) -> Any:
        """The loaded `Llama`, loading it on first call (once, whichever thread asks)."""
        with self._load_lock:
            if self._llm is not None:
                return self._llm
            llama_cpp = import_llama_cpp()
            path = ensure_model_file(self.model, self._model_dir)
            _, formatter = self._tokenizer()
            started = time.perf_counter()
            try:
                llm = _counting_llama(llama_cpp)(
                    model_path=str(path),
                    n_ctx=self.n_ctx,
                    n_batch=min(self._options.n_batch, self.n_ctx),
                    n_threads=self._options.n_threads,
                    n_threads_batch=self._options.n_threads,
                    verbose=False,
                    **({"seed": self._options.seed} if self._options.seed is not None else {}),
                )
            except (ValueError, RuntimeError) as exc:
                raise UpstreamError(
                    f"llama.cpp could not load {path}: {exc}", provider=self.provider
                ) from exc
            llm.chat_handler = formatter.to_chat_handler()
            if self._options.prompt_cache_mb > 0:
                llm.set_cache(llama_cpp.LlamaRAMCache(self._options.prompt_cache_mb << 20))
            self.load_seconds = time.perf_counter() - started
            self._llm = llm
            return llm

    def chat(self, messages: list[Message], kwargs: dict[str, Any]) -> dict[str, Any]:
        """One whole completion: llama-cpp-python's ``chat.completion`` dict."""
        with self._call_lock:
            llm = self.load()
            self._check_fits(len(self._prompt_tokens(messages, kwargs.get("tools"))))
            try:
                result: dict[str, Any] = llm.create_chat_completion(messages=messages, **kwargs)
            except Exception as exc:
                raise self._failure(exc) from exc
            return result

    def stream(
        self, messages: list[Message], kwargs: dict[str, Any], cancelled: threading.Event
    ) -> Iterator[ChatChunk]:
        """Chunks of one completion; the last carries the finish reason and exact usage.
        Stops early, freeing the model, once `cancelled` is set."""
        with self._call_lock:
            llm = self.load()
            n_prompt = len(self._prompt_tokens(messages, kwargs.get("tools")))
            self._check_fits(n_prompt)
            llm.sampled = []
            started = False
            reason: object = None
            pieces: Any = None
            try:
                pieces = llm.create_chat_completion(messages=messages, stream=True, **kwargs)
                for piece in pieces:
                    if cancelled.is_set():
                        return
                    choice = piece["choices"][0]
                    delta = choice.get("delta") or {}
                    content = delta.get("content") or ""
                    tool_calls = delta.get("tool_calls")
                    if content or tool_calls:
                        started = True
                        yield ChatChunk(delta=content, tool_calls=tool_calls, model=self.model.id)
                    if choice.get("finish_reason") is not None:
                        reason = choice["finish_reason"]
                usage = Usage(input_tokens=n_prompt, output_tokens=self._completion_tokens(llm))
            except Exception as exc:
                failure = self._failure(exc)
                if started and not isinstance(failure, UpstreamError):
                    failure = UpstreamError(f"stream broke: {failure}", provider=self.provider)
                raise failure from exc
            finally:
                llm.sampled = None
                if pieces is not None:
                    pieces.close()
            yield ChatChunk(finish_reason=finish_reason(reason), usage=usage, model=self.model.id)

    def close(self) -> None:
        """Free the model and vocabulary (waits for a call in progress)."""
        with self._call_lock, self._load_lock, self._vocab_lock:
            for llm in (self._llm, self._vocab):
                if llm is not None:
                    llm.close()
            self._llm = self._vocab = self._formatter = None

    # -- internals ------------------------------------------------------------------------

    def _tokenizer(self) -> tuple[Any, Any]:
        """The vocabulary-only `Llama` and the chat formatter, loaded once."""
        with self._vocab_lock:
            if self._vocab is None:
                llama_cpp = import_llama_cpp()
                path = ensure_model_file(self.model, self._model_dir)
                utils = importlib.import_module("llama_cpp._utils")
                # A vocabulary-only context logs a spurious "n_ctx_seq > n_ctx_train (0)"
                # line; llama-cpp-python's own silencer keeps it off stderr.
                with utils.suppress_stdout_stderr(disable=False):
                    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
                self._formatter = _formatter(vocab)
                self.trained_context = _trained_context(vocab, self.model.context_window)
                self._vocab = vocab
            return self._vocab, self._formatter

    def _prompt_tokens(self, messages: list[Message], tools: Any) -> list[int]:
        vocab, formatter = self._tokenizer()
        try:
            result = formatter(messages=messages, tools=tools)
        except Exception as exc:
            raise UpstreamError(
                f"the chat template of '{self.model.id}' rejected these messages: {exc}",
                provider=self.provider,
            ) from exc
        with self._vocab_lock:
            tokens: list[int] = vocab.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
        return tokens

    def _check_fits(self, n_prompt: int) -> None:
        if n_prompt >= self.n_ctx:
            raise ContextWindowExceeded(
                f"the prompt has {n_prompt} tokens; local model '{self.model.id}' is run with "
                f"a context window of {self.n_ctx} tokens (provider option n_ctx)",
                provider=self.provider,
                status=400,
            )

    def _completion_tokens(self, llm: Any) -> int:
        """Output tokens of the stream that just ended, counted as llama.cpp counts them
        for a whole completion: every sampled token but a final end-of-generation one."""
        sampled: list[int] = llm.sampled
        llama_cpp = import_llama_cpp()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        if sampled and llama_cpp.llama_vocab_is_eog(vocab, sampled[-1]):
            return len(sampled) - 1
        return len(sampled)

    def _failure(self, exc: Exception) -> LockgateError:
        if isinstance(exc, LockgateError):
            return exc
        message = str(exc)
        if isinstance(exc, ValueError) and "context window" in message:
            return ContextWindowExceeded(message, provider=self.provider, status=400)
        return UpstreamError(
            f"llama.cpp failed on '{self.model.id}': {type(exc).__name__}: {message}",
            provider=self.provider,
        )


def _counting_llama(llama_cpp: Any) -> Any:
    """`Llama` that records the tokens it samples while `sampled` is a list, so a stream's
    output tokens are counted exactly (llama-cpp-python reports usage only for whole
    completions)."""

    class CountingLlama(llama_cpp.Llama):  # type: ignore[misc]
        sampled: list[int] | None = None

        def sample(self, *args: Any, **kwargs: Any) -> int:
            token: int = super().sample(*args, **kwargs)
            if self.sampled is not None:
                self.sampled.append(token)
            return token

    return CountingLlama


def _formatter(vocab: Any) -> Any:
    """The model's Jinja chat template as llama-cpp-python would build it."""
    chat_format = importlib.import_module("llama_cpp.llama_chat_format")
    template = vocab.metadata.get("tokenizer.chat_template")
    if not template:
        raise UpstreamError(f"{vocab.model_path} has no chat template")
    eos_id, bos_id = vocab.token_eos(), vocab.token_bos()
    eos = vocab.detokenize([eos_id], special=True).decode("utf-8") if eos_id != -1 else ""
    bos = vocab.detokenize([bos_id], special=True).decode("utf-8") if bos_id != -1 else ""
    return chat_format.Jinja2ChatFormatter(
        template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id]
    )


def _trained_context(vocab: Any, default: int) -> int:
    architecture = vocab.metadata.get("general.architecture")
    value = vocab.metadata.get(f"{architecture}.context_length")
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
