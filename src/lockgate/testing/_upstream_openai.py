"""OpenAI-shaped endpoints of the scripted upstream: chat completions, embeddings, models."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import time
import uuid
from typing import Any

import orjson

from lockgate.testing._upstream_app import (
    DropConnection,
    Request,
    Responder,
    UpstreamApp,
    answer_verbatim,
    retry_headers,
    rule_headers,
)
from lockgate.testing._upstream_script import (
    Rule,
    content_text,
    count_words,
    last_user_text,
    split_chunks,
)

__all__ = ["chat_completions", "embeddings", "list_models", "not_found"]

# What OpenAI answers for each status; `type` is what clients branch on.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ERROR_CODES = {429: "rate_limit_exceeded"}


def error_body(
    status: int, message: str, error_type: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An OpenAI error body."""
    if error_type is None:
        error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    return {
        "error": {
            "message": message,
            "type": error_type,
            "param": None,
            "code": code if code is not None else _ERROR_CODES.get(status),
        }
    }


async def _reject(out: Responder, message: str) -> None:
    await out.json(400, error_body(400, message))


async def _rule_error(out: Responder, rule: Rule) -> None:
    message = rule.error_message or f"Scripted upstream error (HTTP {rule.status})."
    body = error_body(rule.status, message, rule.error_type, rule.error_code)
    await out.json(rule.status, body, [*retry_headers(rule), *rule_headers(rule)])


async def not_found(app: UpstreamApp, request: Request, out: Responder) -> None:
    """Any route the upstream does not serve."""
    message = f"Unknown request URL: {request.method} {request.path}."
    await out.json(404, error_body(404, message, code="unknown_url"))


async def chat_completions(app: UpstreamApp, request: Request, out: Responder) -> None:
    """``POST /v1/chat/completions``, whole or streamed."""
    body = request.body
    if body is None:
        await _reject(out, request.invalid or "A JSON request body is required.")
        return
    messages = body.get("messages")
    if not isinstance(messages, list):
        await _reject(out, "'messages' must be a list of messages.")
        return
    rule = app.script.pick(last_user_text(messages))
    await app.before_reply(rule)
    if await answer_verbatim(app, rule, out):
        return
    if rule.status != 200:
        await _rule_error(out, rule)
        return
    stream = body.get("stream") is True
    if rule.drop_after_chunks is not None and not stream:
        raise DropConnection
    content = rule.reply_text(app.options.default_reply)
    tool_calls = rule.openai_tool_calls()
    if rule.usage is not None:
        prompt_tokens, completion_tokens = rule.usage
    else:
        prompt_tokens = count_words(*(_message_text(m) for m in messages))
        calls_text = orjson.dumps(tool_calls).decode() if tool_calls else ""
        completion_tokens = count_words(content or "", calls_text)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": app.model(body),
        "system_fingerprint": None,
    }
    finish_reason = rule.effective_finish_reason()
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        await out.json(
            200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
        return
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    await _stream(app, out, rule, head, content, tool_calls, usage if include_usage else None)


async def _stream(
    app: UpstreamApp,
    out: Responder,
    rule: Rule,
    head: dict[str, Any],
    content: str | None,
    tool_calls: list[dict[str, Any]] | None,
    usage: dict[str, int] | None,
) -> None:
    head = {**head, "object": "chat.completion.chunk"}
    if usage is not None:
        head["usage"] = None  # OpenAI marks every chunk but the last when usage is asked for

    def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    deltas: list[dict[str, Any]] = []
    if content is not None:
        deltas.extend({"content": piece} for piece in split_chunks(content, rule.chunks))
    for i, call in enumerate(tool_calls or ()):
        deltas.append({"tool_calls": [{"index": i, **call}]})

    await out.start_stream()
    await out.write(event({"role": "assistant", "content": "" if content is not None else None}))
    for i, delta in enumerate(deltas):
        if i == rule.drop_after_chunks:
            raise DropConnection
        if i:
            await app.between_chunks(rule.chunk_interval)
        await out.write(event(delta))
    if rule.drop_after_chunks is not None:
        raise DropConnection
    tail = event({}, rule.effective_finish_reason())
    if usage is not None:
        tail += b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n"
    await out.end(tail + b"data: [DONE]\n\n")


def _message_text(message: Any) -> str:
    return content_text(message.get("content")) if isinstance(message, dict) else ""


async def embeddings(app: UpstreamApp, request: Request, out: Responder) -> None:
    """``POST /v1/embeddings``: deterministic unit vectors (hashed bag of words).

    Texts that share words get close vectors, so similarity thresholds (semantic cache,
    retrieval) behave sensibly; equal texts always get equal vectors.
    """
    body = request.body
    if body is None:
        await _reject(out, request.invalid or "A JSON request body is required.")
        return
    inputs = _embedding_inputs(body.get("input"))
    if inputs is None:
        await _reject(out, "'input' must be a string, a list of strings, or token arrays.")
        return
    dims = body.get("dimensions", app.options.embedding_dims)
    if not isinstance(dims, int) or dims < 1:
        await _reject(out, "'dimensions' must be a positive integer.")
        return
    rule = app.script.pick("\n".join(inputs))
    await app.before_reply(rule)
    if await answer_verbatim(app, rule, out):
        return
    if rule.status != 200:
        await _rule_error(out, rule)
        return
    if rule.drop_after_chunks is not None:
        raise DropConnection
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(inputs):
        vector = embed_text(text, dims)
        value: list[float] | str = vector
        if as_base64:
            value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = rule.usage[0] if rule.usage is not None else count_words(*inputs)
    await out.json(
        200,
        {
            "object": "list",
            "data": data,
            "model": app.model(body),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )


def _embedding_inputs(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, int) for v in value):
        return [str(value)]  # one input given as token ids
    if all(isinstance(v, list) for v in value):
        return [str(v) for v in value]
    return None


def embed_text(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for `text`: each lower-cased word adds ±1 to a slot
    chosen by its sha256 (feature hashing); a text without words hashes as a whole."""
    vector = [0.0] * dims
    words = re.findall(r"\w+", text.lower()) or [text]
    for word in words:
        digest = hashlib.sha256(word.encode()).digest()
        slot = int.from_bytes(digest[:4], "big") % dims
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:  # words cancelled out; fall back to the whole text's digest
        digest = hashlib.sha256(text.encode()).digest()
        vector = [float(digest[i % len(digest)]) - 127.5 for i in range(dims)]
        norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "lockgate-testing"}


async def list_models(app: UpstreamApp, request: Request, out: Responder) -> None:
    """``GET /v1/models``."""
    data = [_model_entry(name) for name in app.options.models]
    await out.json(200, {"object": "list", "data": data})
