"""Translation between lockgate's OpenAI-shaped chat contract and Anthropic's Messages API.

Pure functions and one small state machine, no I/O: `lockgate.providers._anthropic` does
the HTTP. Kept apart so each module reads in one sitting.

How an OpenAI-shaped request is translated:

- ``system`` (and ``developer``) messages, wherever they are, are joined with blank lines
  into Anthropic's top-level ``system``;
- consecutive messages of the same role are merged into one (Anthropic wants turns to
  alternate); ``tool`` messages become ``tool_result`` blocks of a user turn, assistant
  ``tool_calls`` become ``tool_use`` blocks; ``image_url`` parts become image blocks;
- ``max_tokens`` is required by Anthropic: when the request leaves it unset, the
  provider's default (``options.default_max_tokens``, 1024 unless configured) is sent;
- ``stop`` → ``stop_sequences``; ``user`` → ``metadata.user_id``; ``seed`` has no
  equivalent and is dropped; ``tools`` / ``tool_choice`` are converted (``required`` →
  ``any``); ``extra`` is merged into the body as is;
- ``response_format``: a ``json_schema`` with an object schema, on a request without its
  own tools, is enforced by offering one tool (`RESPONSE_TOOL`) whose input schema is that
  schema and forcing the model to call it; its input comes back as the message content
  (finish reason ``stop``), whole or streamed. Otherwise (``json_object``, a non-object
  schema, or tools present) an instruction to answer with JSON only (matching the schema,
  if any) is appended to ``system``: best effort, not enforced.

And the answer: text blocks → ``content``; ``tool_use`` → OpenAI ``tool_calls`` with
``arguments`` as a JSON string; ``stop_reason`` ``end_turn``/``stop_sequence`` → ``stop``,
``max_tokens`` → ``length``, ``tool_use`` → ``tool_calls``, ``refusal`` →
``content_filter``. Anthropic's ``input_tokens`` excludes cache reads and writes; lockgate's
``Usage.input_tokens`` is the whole prompt (input + cache read + cache creation) and
``cached_input_tokens`` the cache reads.
"""

from __future__ import annotations

from typing import Any

import orjson

from lockgate.errors import UpstreamError
from lockgate.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    Usage,
)
from lockgate.providers._wire import one_line

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "RESPONSE_TOOL",
    "StreamTranslator",
    "response_from",
    "to_messages_body",
    "usage_from",
    "uses_response_tool",
]

DEFAULT_MAX_TOKENS = 1024
RESPONSE_TOOL = "json_response"

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# -- request ----------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = str(image.get("url", "") if isinstance(image, dict) else image or "")
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Anthropic content blocks for OpenAI message content (a string or a part list)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_image_block(part))
        elif isinstance(part, dict):
            blocks.append(part)  # already an Anthropic block (image, document, …)
    return blocks


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str | bytes) else arguments
    except orjson.JSONDecodeError:
        raise ValueError(
            f"assistant tool call {call.get('id')!r} has arguments that are not JSON; "
            "Anthropic needs an object"
        ) from None
    if not isinstance(parsed, dict):
        parsed = {"value": parsed}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed}


def _turns(messages: list[Message]) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, alternating Anthropic turns) for OpenAI-shaped messages."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = _text_of(content)
            if text:
                system.append(text)
            continue
        if role == "tool":
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": content if isinstance(content, str) else _blocks(content),
            }
            role, blocks = "user", [result]
        elif role == "assistant":
            blocks = _blocks(content) + [_tool_use(c) for c in message.get("tool_calls") or ()]
        else:
            role, blocks = "user", _blocks(content)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            turn["content"] = blocks[0]["text"]
    return system, turns


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    converted = []
    for tool in tools:
        function = tool.get("function")
        if tool.get("type") == "function" and isinstance(function, dict):
            entry: dict[str, Any] = {
                "name": function.get("name"),
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            }
            if function.get("description"):
                entry["description"] = function["description"]
            converted.append(entry)
        else:
            converted.append(tool)  # already Anthropic-shaped (or a server tool)
    return converted


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and function.get("name"):
            return {"type": "tool", "name": function["name"]}
        return choice
    return None


def uses_response_tool(request: ChatRequest) -> bool:
    """Whether `request`'s ``json_schema`` response format is enforced with `RESPONSE_TOOL`."""
    spec = request.response_format
    if not spec or spec.get("type") != "json_schema" or request.tools:
        return False
    schema = (spec.get("json_schema") or {}).get("schema")
    return isinstance(schema, dict) and schema.get("type") == "object"


def _json_instruction(spec: dict[str, Any]) -> str | None:
    if spec.get("type") not in ("json_object", "json_schema"):
        return None
    text = "Answer with one JSON value only: no prose, no code fences."
    schema = (spec.get("json_schema") or {}).get("schema")
    if schema is not None:
        text += " It must validate against this JSON schema: " + orjson.dumps(schema).decode()
    return text


def to_messages_body(
    request: ChatRequest, *, default_max_tokens: int = DEFAULT_MAX_TOKENS, stream: bool = False
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/messages`` for an OpenAI-shaped `request`.

    Raises:
        ValueError: an assistant tool call's arguments are not JSON.
    """
    system, turns = _turns(request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": turns,
        "max_tokens": request.max_tokens or default_max_tokens,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if request.tools:
        body["tools"] = _tools(request.tools)
    choice = _tool_choice(request.tool_choice)
    if choice is not None:
        body["tool_choice"] = choice
    if request.response_format:
        if uses_response_tool(request):
            spec = request.response_format["json_schema"]
            body["tools"] = [
                {
                    "name": RESPONSE_TOOL,
                    "description": "Give the final answer as this JSON object.",
                    "input_schema": spec["schema"],
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": RESPONSE_TOOL}
        else:
            instruction = _json_instruction(request.response_format)
            if instruction:
                system.append(instruction)
    if system:
        body["system"] = "\n\n".join(system)
    body.update(request.extra)
    if stream:
        body["stream"] = True
    return body


# -- response ---------------------------------------------------------------------------


def _finish(stop_reason: object, *, structured: bool) -> FinishReason:
    if structured and stop_reason == "tool_use":
        return "stop"
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _usage(input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> Usage:
    return Usage(
        input_tokens=input_tokens + cache_read + cache_write,
        output_tokens=output_tokens,
        cached_input_tokens=cache_read,
    )


def usage_from(data: object) -> Usage:
    """lockgate `Usage` from an Anthropic ``usage`` object (see the module docstring)."""
    if not isinstance(data, dict):
        return Usage()
    return _usage(
        int(data.get("input_tokens") or 0),
        int(data.get("output_tokens") or 0),
        int(data.get("cache_read_input_tokens") or 0),
        int(data.get("cache_creation_input_tokens") or 0),
    )


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


def response_from(
    data: dict[str, Any], *, model: str, provider: str, structured: bool = False
) -> ChatResponse:
    """An OpenAI-shaped `ChatResponse` for an Anthropic ``message`` body.

    Raises:
        KeyError, TypeError: the body has no ``content`` list.
    """
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in data["content"]:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            if structured and block.get("name") == RESPONSE_TOOL:
                texts.append(orjson.dumps(block.get("input") or {}).decode())
            else:
                tool_calls.append(_tool_call(block))
    fields: dict[str, Any] = {"id": data["id"]} if isinstance(data.get("id"), str) else {}
    return ChatResponse(
        model=str(data.get("model") or model),
        content="".join(texts) if texts or not tool_calls else None,
        finish_reason=_finish(data.get("stop_reason"), structured=structured),
        usage=usage_from(data.get("usage")),
        tool_calls=tool_calls or None,
        provider=provider,
        **fields,
    )


class StreamTranslator:
    """Turns Anthropic stream events into `ChatChunk`s, one event at a time.

    `feed` returns the chunk an event produces (or None); `done` is set by
    ``message_stop``, whose chunk carries the finish reason and the usage.
    """

    def __init__(
        self, *, where: str, provider: str | None = None, structured: bool = False
    ) -> None:
        self.where = where
        self.provider = provider
        self.structured = structured
        self.done = False
        self.model: str | None = None
        self._blocks: dict[int, tuple[str, int]] = {}
        self._tools = 0
        self._stop_reason: object = None
        self._counts: dict[str, int] = {}

    def _count(self, usage: object) -> None:
        if isinstance(usage, dict):
            for key, value in usage.items():
                if isinstance(value, int):
                    self._counts[key] = value

    def _start(self, index: int, block: dict[str, Any]) -> ChatChunk | None:
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = ("text", 0)
            text = block.get("text") or ""
            return ChatChunk(delta=text, model=self.model) if text else None
        if kind != "tool_use":
            self._blocks[index] = ("other", 0)
            return None
        if self.structured and block.get("name") == RESPONSE_TOOL:
            self._blocks[index] = ("response", 0)
            return None
        self._blocks[index] = ("tool", self._tools)
        call = {
            "index": self._tools,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        self._tools += 1
        return ChatChunk(tool_calls=[call], model=self.model)

    def _delta(self, index: int, delta: dict[str, Any]) -> ChatChunk | None:
        kind, tool_index = self._blocks.get(index, ("text", 0))
        if delta.get("type") == "text_delta":
            text = delta.get("text") or ""
            return ChatChunk(delta=text, model=self.model) if text else None
        if delta.get("type") != "input_json_delta" or not delta.get("partial_json"):
            return None
        partial = str(delta["partial_json"])
        if kind == "response":
            return ChatChunk(delta=partial, model=self.model)
        call = {"index": tool_index, "function": {"arguments": partial}}
        return ChatChunk(tool_calls=[call], model=self.model)

    def _final(self) -> ChatChunk:
        counts = self._counts
        usage = None
        if counts:
            usage = _usage(
                counts.get("input_tokens", 0),
                counts.get("output_tokens", 0),
                counts.get("cache_read_input_tokens", 0),
                counts.get("cache_creation_input_tokens", 0),
            )
        finish = _finish(self._stop_reason, structured=self.structured)
        return ChatChunk(finish_reason=finish, usage=usage, model=self.model)

    def feed(self, data: dict[str, Any]) -> ChatChunk | None:
        """The chunk for one decoded event, if it makes one.

        Raises:
            UpstreamError: an ``error`` event.
        """
        kind = data.get("type")
        if kind == "content_block_delta":
            return self._delta(int(data.get("index", 0)), data.get("delta") or {})
        if kind == "content_block_start":
            return self._start(int(data.get("index", 0)), data.get("content_block") or {})
        if kind == "message_start":
            message = data.get("message") or {}
            self.model = message.get("model") or self.model
            self._count(message.get("usage"))
        elif kind == "message_delta":
            self._stop_reason = (data.get("delta") or {}).get("stop_reason") or self._stop_reason
            self._count(data.get("usage"))
        elif kind == "message_stop":
            self.done = True
            return self._final()
        elif kind == "error":
            error = data.get("error") or {}
            detail = f"{error.get('type', 'error')}: {error.get('message', '')}"
            message = f"{self.where}: error event in stream: {one_line(detail)}"
            raise UpstreamError(message, provider=self.provider)
        return None
