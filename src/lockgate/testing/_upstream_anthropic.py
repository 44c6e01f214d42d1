"""Anthropic-shaped endpoints of the scripted upstream: ``/v1/messages`` and token counting.

Rules are written once, OpenAI-style (`finish_reason`, `tool_calls`); this module
translates them to Anthropic's wire format, the way a provider adapter would the other way.
"""

from __future__ import annotations

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

__all__ = ["count_tokens", "messages"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """An Anthropic error body."""
    if error_type is None:
        error_type = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": error_type, "message": message}}


async def _reject(out: Responder, message: str) -> None:
    await out.json(400, error_body(400, message))


def _validated(request: Request) -> tuple[dict[str, Any], list[Any]] | str:
    """The body and its messages, or why the request is invalid."""
    body = request.body
    if body is None:
        return request.invalid or "A JSON request body is required."
    messages = body.get("messages")
    if not isinstance(messages, list):
        return "messages: Field required (a list of messages)."
    return body, messages


def _input_tokens(body: dict[str, Any], messages: list[Any]) -> int:
    texts = [content_text(body.get("system"))]
    texts += [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
    return count_words(*texts)


def _tool_blocks(rule: Rule) -> list[dict[str, Any]]:
    blocks = []
    for i, call in enumerate(rule.tool_calls or ()):
        function = call.get("function", {})
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                arguments = {}  # Anthropic cannot carry broken JSON; an empty input is closest
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", f"toolu_{i}"),
                "name": function.get("name", ""),
                "input": arguments,
            }
        )
    return blocks


async def count_tokens(app: UpstreamApp, request: Request, out: Responder) -> None:
    """``POST /v1/messages/count_tokens``: the same word count `messages` reports."""
    checked = _validated(request)
    if isinstance(checked, str):
        await _reject(out, checked)
        return
    await out.json(200, {"input_tokens": _input_tokens(*checked)})


async def messages(app: UpstreamApp, request: Request, out: Responder) -> None:
    """``POST /v1/messages``, whole or streamed."""
    checked = _validated(request)
    if isinstance(checked, str):
        await _reject(out, checked)
        return
    body, history = checked
    if not isinstance(body.get("max_tokens"), int):
        await _reject(out, "max_tokens: Field required (an integer).")
        return
    rule = app.script.pick(last_user_text(history))
    await app.before_reply(rule)
    if await answer_verbatim(app, rule, out):
        return
    if rule.status != 200:
        reason = rule.error_message or f"Scripted upstream error (HTTP {rule.status})."
        error = error_body(rule.status, reason, rule.error_type)
        await out.json(rule.status, error, [*retry_headers(rule), *rule_headers(rule)])
        return
    stream = body.get("stream") is True
    if rule.drop_after_chunks is not None and not stream:
        raise DropConnection
    text = rule.reply_text(app.options.default_reply)
    tools = _tool_blocks(rule)
    if rule.usage is not None:
        input_tokens, output_tokens = rule.usage
    else:
        input_tokens = _input_tokens(body, history)
        output_tokens = count_words(text or "", *(orjson.dumps(t["input"]).decode() for t in tools))
    finish = rule.effective_finish_reason()
    stop_reason = _STOP_REASONS.get(finish, finish)
    stop_sequence = None
    if stop_reason == "stop_sequence":
        sequences = body.get("stop_sequences") or [None]
        stop_sequence = sequences[0]
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text is not None else []
    content += tools
    message = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": app.model(body),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    if not stream:
        await out.json(200, message)
        return
    await _stream(app, out, rule, message)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


async def _stream(app: UpstreamApp, out: Responder, rule: Rule, message: dict[str, Any]) -> None:
    usage = message["usage"]
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
    }
    await out.start_stream()
    await out.write(_event("message_start", {"message": start}))
    sent = 0
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [
                {"type": "text_delta", "text": piece}
                for piece in split_chunks(block["text"], rule.chunks)
            ]
        else:
            opening = {**block, "input": {}}
            partial = orjson.dumps(block["input"]).decode()
            deltas = [{"type": "input_json_delta", "partial_json": partial}]
        await out.write(_event("content_block_start", {"index": index, "content_block": opening}))
        for delta in deltas:
            if sent == rule.drop_after_chunks:
                raise DropConnection
            if sent:
                await app.between_chunks(rule.chunk_interval)
            await out.write(_event("content_block_delta", {"index": index, "delta": delta}))
            sent += 1
        await out.write(_event("content_block_stop", {"index": index}))
    if rule.drop_after_chunks is not None:
        raise DropConnection
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    tail = _event(
        "message_delta", {"delta": delta, "usage": {"output_tokens": usage["output_tokens"]}}
    )
    await out.end(tail + _event("message_stop", {}))
