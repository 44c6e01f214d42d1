"""Sentence embeddings on a packaged sentence-transformers model (all-MiniLM-L6-v2).

The model is loaded lazily, once per process and embedder, from the directory its package
ships, with the Hugging Face libraries told to stay offline: nothing is fetched. Calls are
blocking and serialised; the provider runs them in a worker thread.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from lockgate.errors import MissingExtra
from lockgate.providers._local_models import LocalModel, ensure_model_file

__all__ = ["SentenceEmbedder"]

_FEATURE = "local embeddings"
_EXTRA = "embeddings"


class SentenceEmbedder:
    """One sentence-transformers model: `encode` returns unit-norm vectors."""

    def __init__(self, model: LocalModel, model_dir: Path) -> None:
        self.model = model
        self._model_dir = model_dir
        self._lock = threading.Lock()
        self._st: Any = None
        self._tokenizer: Any = None
        self.load_seconds: float | None = None

    def encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Embed `texts`; returns the vectors (normalised) and the number of tokens the model
        read (after its truncation to the model's window)."""
        with self._lock:
            st = self._load()
            # `preprocess` is the name since sentence-transformers 6; `tokenize` before.
            preprocess = getattr(st, "preprocess", None) or st.tokenize
            features = preprocess(texts)
            tokens = int(features["attention_mask"].sum())
            vectors = st.encode(
                texts,
                batch_size=32,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return [[float(x) for x in row] for row in vectors.tolist()], tokens

    def count(self, texts: list[str]) -> int:
        """Tokens in `texts` by the model's own tokenizer (special tokens included, no
        truncation), without loading the network."""
        with self._lock:
            if self._tokenizer is None:
                try:
                    tokenizers = importlib.import_module("tokenizers")
                except ImportError:
                    raise MissingExtra(_FEATURE, _EXTRA, "tokenizers") from None
                path = ensure_model_file(self.model, self._model_dir) / "tokenizer.json"
                tokenizer = tokenizers.Tokenizer.from_file(str(path))
                tokenizer.no_truncation()
                tokenizer.no_padding()
                self._tokenizer = tokenizer
            return sum(len(enc.ids) for enc in self._tokenizer.encode_batch(texts))

    def close(self) -> None:
        with self._lock:
            self._st = None
            self._tokenizer = None

    def _load(self) -> Any:
        if self._st is not None:
            return self._st
        path = ensure_model_file(self.model, self._model_dir)
        # huggingface_hub reads these once, at import: they must be set before it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        started = time.perf_counter()
        try:
            sentence_transformers = importlib.import_module("sentence_transformers")
            hf_logging = importlib.import_module("transformers.utils.logging")
        except ImportError as exc:
            raise MissingExtra(_FEATURE, _EXTRA, exc.name or "sentence_transformers") from None
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # its "Loading weights" bar would go to stderr
        try:
            self._st = sentence_transformers.SentenceTransformer(
                str(path), device="cpu", local_files_only=True
            )
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.load_seconds = time.perf_counter() - started
        return self._st
